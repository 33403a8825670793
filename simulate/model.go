package simulate

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/presenced/presenced/presence"
)

// The names agents' ids are drawn from.
var (
	groupNames   = []string{"sales", "support", "billing", "onboarding", "retention", "technical", "vip", "returns"}
	projectNames = []string{"retail", "business", "partners"}
	routingNames = []string{"chat-en", "chat-fr", "chat-es", "chat-de"}
)

// The pace of the simulation, in ticks (1s by default), chosen so that 200
// agents move the indicators every second: about 5 status changes, tens of
// conversations starting and ending, a logout every two seconds.
const (
	warmUp         = 5         // the first logins spread over the first ticks
	pStayOut       = 0.1       // share of agents not in the warm-up
	pLogin         = 1.0 / 60  // per tick, an agent out comes back (after the warm-up)
	pLogout        = 1.0 / 300 // per tick, an agent in leaves
	pStatus        = 1.0 / 40  // per tick, an agent changes status
	pStart         = 1.0 / 8   // per tick, an available agent gets a conversation
	pEnd           = 1.0 / 20  // per tick, a conversation ends
	heartbeatEvery = 30        // ticks of silence before a heartbeat
)

// agent is the model of one agent: its profile, fixed for the run, and what
// its events last said.
type agent struct {
	id       string
	role     presence.Role
	groups   []string // shared by the events: never modified
	projects []string
	routing  []string
	maxSlots uint16
	// loginRound is the round of the agent's first login, -1 for those
	// who stay out of the warm-up.
	loginRound int

	online bool
	mode   presence.Status // the availabilityStatus the agent chose
	slots  uint16          // conversations in progress
	quiet  int             // rounds since the agent's last event
}

// chat is the chat availability the agent's state implies: off with the
// agent, BUSY when chosen or full.
func (a *agent) chat() presence.Status {
	switch {
	case !a.online || a.mode == presence.ToggleOff:
		return presence.ToggleOff
	case a.mode == presence.Busy || a.slots >= a.maxSlots:
		return presence.Busy
	}
	return presence.Available
}

// newAgents draws the profiles of n agents.
func newAgents(n int, r *rand.Rand) []agent {
	bots := 0 // a bot or two
	switch {
	case n >= 100:
		bots = 2
	case n >= 10:
		bots = 1
	}
	agents := make([]agent, n)
	for i := range agents {
		a := &agents[i]
		a.id = fmt.Sprintf("agent-%04d", i+1)
		a.role = pick(r, []presence.Role{presence.Operator, presence.Expert, presence.Manager, presence.Admin}, []int{80, 10, 7, 3})
		if i >= n-bots {
			a.role = presence.Bot
		}
		a.groups = sample(r, groupNames, 1+r.IntN(3))
		a.projects = sample(r, projectNames, 1)
		a.routing = sample(r, routingNames, 1+r.IntN(2))
		a.maxSlots = uint16(2 + r.IntN(4))
		a.loginRound = r.IntN(warmUp)
		if r.Float64() < pStayOut {
			a.loginRound = -1
		}
	}
	return agents
}

// step moves every agent by one round and appends their events, all at ts,
// to evs. An agent has at most one event per round, so that no two events of
// one agent share a ts and a field.
func step(agents []agent, round int, ts int64, r *rand.Rand, evs []presence.Event) []presence.Event {
	for i := range agents {
		a := &agents[i]
		ev, ok := a.act(round, r)
		if !ok {
			a.quiet++
			continue
		}
		a.quiet = 0
		ev.UserID = a.id
		ev.TS = ts
		ev.Fields |= presence.HasTS
		evs = append(evs, ev)
	}
	return evs
}

// act moves the agent by one round and returns the event that says so.
func (a *agent) act(round int, r *rand.Rand) (presence.Event, bool) {
	if !a.online {
		if round == a.loginRound || round >= warmUp && r.Float64() < pLogin {
			return a.login(r), true
		}
		if round == 0 {
			// Marks the agent out in the engine, which may have it in from
			// an earlier run on the same stream.
			return a.logout(), true
		}
		return presence.Event{}, false
	}
	switch {
	case r.Float64() < pLogout:
		return a.logout(), true
	case r.Float64() < pStatus:
		c := modeChanges[a.mode]
		a.mode = pick(r, c.to, c.weights)
		return presence.Event{
			Type:         presence.StatusChange,
			Fields:       presence.HasAvailability | presence.HasChat,
			Availability: a.mode, Chat: a.chat(),
		}, true
	case a.slots > 0 && r.Float64() < float64(a.slots)*pEnd:
		a.slots--
		return a.slotsEvent(), true
	case a.chat() == presence.Available && r.Float64() < pStart:
		a.slots++
		return a.slotsEvent(), true
	case a.quiet >= heartbeatEvery:
		return presence.Event{Type: presence.Heartbeat}, true
	}
	return presence.Event{}, false
}

// login connects the agent with its whole profile and no conversation.
func (a *agent) login(r *rand.Rand) presence.Event {
	a.online = true
	a.mode = pick(r, []presence.Status{presence.Available, presence.Busy, presence.ToggleOff}, []int{85, 10, 5})
	a.slots = 0
	return presence.Event{
		Type: presence.Login,
		Fields: presence.HasRole | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups |
			presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots,
		Role:     a.role,
		GroupIDs: a.groups, ProjectIDs: a.projects, RoutingGroupIDs: a.routing,
		Availability: a.mode, Chat: a.chat(), MaxSlots: a.maxSlots, CurrentSlots: 0,
	}
}

// logout disconnects the agent; its conversations go to others.
func (a *agent) logout() presence.Event {
	a.online = false
	a.mode = presence.ToggleOff
	a.slots = 0
	return presence.Event{
		Type:         presence.Logout,
		Fields:       presence.HasAvailability | presence.HasChat | presence.HasCurrentSlots,
		Availability: a.mode, Chat: a.chat(), CurrentSlots: 0,
	}
}

// slotsEvent says the agent's conversations and the chat availability they
// imply.
func (a *agent) slotsEvent() presence.Event {
	return presence.Event{
		Type:   presence.Slots,
		Fields: presence.HasChat | presence.HasCurrentSlots,
		Chat:   a.chat(), CurrentSlots: a.slots,
	}
}

// modeChanges gives, for each status, the statuses an agent changes to and
// their weights: mostly back to work.
var modeChanges = [presence.NumStatuses]struct {
	to      []presence.Status
	weights []int
}{
	presence.ToggleOff: {[]presence.Status{presence.Available, presence.Busy}, []int{3, 1}},
	presence.Available: {[]presence.Status{presence.Busy, presence.ToggleOff}, []int{2, 1}},
	presence.Busy:      {[]presence.Status{presence.Available, presence.ToggleOff}, []int{3, 1}},
}

// pick returns one of vals, drawn with the given weights.
func pick[T any](r *rand.Rand, vals []T, weights []int) T {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return vals[i]
		}
		n -= w
	}
	panic("simulate: pick: weights do not sum up") // unreachable
}

// sample returns k distinct names, in the order of names.
func sample(r *rand.Rand, names []string, k int) []string {
	idx := r.Perm(len(names))[:k]
	slices.Sort(idx)
	out := make([]string, k)
	for i, j := range idx {
		out[i] = names[j]
	}
	return out
}
