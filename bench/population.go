package bench

import (
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Tenant is the one tenant every scenario publishes and asks for: a query is
// always answered for one tenant, so one large tenant is the hard case.
const Tenant = "acme"

// baseTS is the ts of the first generated event; later events are 1µs apart,
// so that every user's events have distinct, increasing times.
const baseTS = int64(1_780_000_000_000_000_000)

// Population is a contact centre of Users agents whose id pools grow with it,
// so that a group keeps the size of a real team (about 50 agents, each in 1 to
// 3 groups) whatever Users is.
type Population struct {
	Users    int
	Groups   int
	Projects int
	Routing  int
	// Offline is the percentage of users that the first logins leave out
	// (15 from NewPopulation): they log in later, in the day's traffic.
	Offline int
	seed    uint64
}

// NewPopulation returns a population of users agents; seed fixes every random
// choice, so that each system is fed and asked exactly the same.
func NewPopulation(users int, seed uint64) *Population {
	return &Population{
		Users:    users,
		Groups:   max(8, users/50),
		Projects: max(4, users/500),
		Routing:  max(6, users/200),
		Offline:  15,
		seed:     seed,
	}
}

// UserID names user i.
func UserID(i int) string { return "u" + strconv.Itoa(i) }

func groupID(i int) string   { return "g" + strconv.Itoa(i) }
func projectID(i int) string { return "p" + strconv.Itoa(i) }
func routingID(i int) string { return "r" + strconv.Itoa(i) }

// profile is what a user's login carries, its ids as indexes into the
// pools: a long run keeps one per user, and its strings are made only for
// the events.
type profile struct {
	role     presence.Role
	maxSlots uint16
	groups   idList
	projects idList
	routing  idList
}

// idList is up to 3 distinct indexes into an id pool.
type idList struct {
	n uint8
	v [3]int32
}

func (l *idList) names(name func(int) string) []string {
	out := make([]string, l.n)
	for i := range out {
		out[i] = name(int(l.v[i]))
	}
	return out
}

func (p *Population) profile(r *rand.Rand) profile {
	var pr profile
	switch x := r.IntN(100); {
	case x < 75:
		pr.role = presence.Operator
	case x < 85:
		pr.role = presence.Expert
	case x < 93:
		pr.role = presence.Manager
	case x < 97:
		pr.role = presence.Admin
	default:
		pr.role = presence.Bot
	}
	pr.groups = drawIDs(r, 1+r.IntN(3), p.Groups)
	pr.projects = drawIDs(r, 1+r.IntN(2), p.Projects)
	pr.routing = drawIDs(r, 1+r.IntN(2), p.Routing)
	pr.maxSlots = uint16(1 + r.IntN(5))
	return pr
}

// draw appends k distinct indexes below pool (all of them if k is larger)
// to dst.
func draw(r *rand.Rand, k, pool int, dst []int32) []int32 {
	k = min(k, pool)
	start := len(dst)
	for len(dst)-start < k {
		if x := int32(r.IntN(pool)); !slices.Contains(dst[start:], x) {
			dst = append(dst, x)
		}
	}
	return dst
}

// drawIDs draws k (at most 3) distinct indexes below pool.
func drawIDs(r *rand.Rand, k, pool int) idList {
	var l idList
	l.n = uint8(len(draw(r, k, pool, l.v[:0])))
	return l
}

// distinct draws k distinct ids of a pool, named by name.
func distinct(r *rand.Rand, k, pool int, name func(int) string) []string {
	idx := draw(r, k, pool, make([]int32, 0, k))
	out := make([]string, len(idx))
	for i, x := range idx {
		out[i] = name(int(x))
	}
	return out
}

// setProfile sets ev's profile fields, and their bits, from pr.
func (pr *profile) setProfile(ev *presence.Event) {
	ev.Fields |= presence.HasRole | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups | presence.HasMaxSlots
	ev.Role, ev.MaxSlots = pr.role, pr.maxSlots
	ev.GroupIDs = pr.groups.names(groupID)
	ev.ProjectIDs = pr.projects.names(projectID)
	ev.RoutingGroupIDs = pr.routing.names(routingID)
}

func (pr *profile) login(id string) presence.Event {
	ev := presence.Event{
		Type:         presence.Login,
		UserID:       id,
		Fields:       presence.HasAvailability | presence.HasChat | presence.HasCurrentSlots,
		Availability: presence.Available,
		Chat:         presence.Available,
	}
	pr.setProfile(&ev)
	return ev
}

// Events returns the first total events of the population's Traffic, without
// new users, in publishing order, their ts increasing by 1µs from a fixed
// time.
func (p *Population) Events(total int) []presence.Event {
	t := p.Traffic(0)
	evs := make([]presence.Event, total)
	for i := range evs {
		evs[i] = t.Next()
		stamp(&evs[i], baseTS+int64(i)*1000)
	}
	return evs
}

// stamp sets ev's ts.
func stamp(ev *presence.Event, ts int64) {
	ev.TS = ts
	ev.Fields |= presence.HasTS
}

// Traffic is the stream of a population's events, made as they are asked
// for, so that a long run need not hold them: first one login per user with
// the whole profile (for the first 100-Offline% of the users; the others
// stay offline until a later login), then a day's traffic of random users,
// mostly status and slots changes, with some logouts and logins, heartbeats
// and profile changes. A Traffic is used by one goroutine at a time.
type Traffic struct {
	p        *Population
	r        *rand.Rand
	profiles []profile
	online   []bool
	decided  int     // users whose first login was decided
	newUsers float64 // see Population.Traffic
}

// Traffic returns the population's events from the first; seed fixes them.
// A newUsers share of the day's events logs in a user never seen before
// (the next UserID after the last); 0 never does.
func (p *Population) Traffic(newUsers float64) *Traffic {
	return &Traffic{
		p:        p,
		r:        rand.New(rand.NewPCG(p.seed, 1)),
		profiles: make([]profile, p.Users),
		online:   make([]bool, p.Users),
		newUsers: newUsers,
	}
}

// reserve makes room for n new users, so that a run that measures its heap
// sees no slice grow.
func (t *Traffic) reserve(n int) {
	t.profiles = slices.Grow(t.profiles, n)
	t.online = slices.Grow(t.online, n)
}

// Users returns how many users the events so far have named: the
// population's, and the new ones.
func (t *Traffic) Users() int { return len(t.profiles) }

// Next returns the next event, without a ts.
func (t *Traffic) Next() presence.Event {
	r := t.r
	for t.decided < t.p.Users {
		i := t.decided
		t.decided++
		t.profiles[i] = t.p.profile(r)
		if r.IntN(100) < 100-t.p.Offline {
			t.online[i] = true
			return t.profiles[i].login(UserID(i))
		}
	}
	if t.newUsers > 0 && r.Float64() < t.newUsers {
		i := len(t.profiles)
		t.profiles = append(t.profiles, t.p.profile(r))
		t.online = append(t.online, true)
		return t.profiles[i].login(UserID(i))
	}
	i := r.IntN(len(t.profiles))
	id, pr := UserID(i), &t.profiles[i]
	if !t.online[i] {
		if r.IntN(4) == 0 { // offline users come back now and then
			t.online[i] = true
			return pr.login(id)
		}
		return presence.Event{Type: presence.Heartbeat, UserID: id}
	}
	switch x := r.IntN(100); {
	case x < 40: // status: the agent switches availability
		st := presence.Status(r.IntN(presence.NumStatuses))
		return presence.Event{Type: presence.StatusChange, UserID: id,
			Fields: presence.HasAvailability | presence.HasChat, Availability: st, Chat: st}
	case x < 75: // a conversation starts or ends
		return presence.Event{Type: presence.Slots, UserID: id,
			Fields: presence.HasCurrentSlots, CurrentSlots: uint16(r.IntN(int(pr.maxSlots) + 2))}
	case x < 88:
		return presence.Event{Type: presence.Heartbeat, UserID: id}
	case x < 95:
		t.online[i] = false
		return presence.Event{Type: presence.Logout, UserID: id}
	default: // the supervisor moves the agent
		*pr = t.p.profile(r)
		ev := presence.Event{Type: presence.Profile, UserID: id}
		pr.setProfile(&ev)
		return ev
	}
}

// LoadEvents returns the data set the query and peers scenarios load: every
// user's login, then half as many changes again.
func (p *Population) LoadEvents() []presence.Event {
	return p.Events(p.Users + p.Users/2)
}

// Class is a filter class of the engine (see engine.Engine.Query).
type Class int

// The filter classes.
const (
	// ClassA: no id, or one id of one dimension, with role or status filters.
	ClassA Class = iota
	// ClassB: userIds.
	ClassB
	// ClassC: several ids of one dimension, or ids of two dimensions, each
	// asked again (the engine answers it from a view after the first time).
	ClassC
	numClasses
)

// Classes lists the filter classes.
var Classes = []Class{ClassA, ClassB, ClassC}

func (c Class) String() string { return string("abc"[c]) }

// Filters returns n filters of class c over the population, reproducible
// from the seed. Class c cycles through at most 16 distinct filters, asked
// again and again as a dashboard does.
func (p *Population) Filters(c Class, n int) []*engine.Filter {
	r := rand.New(rand.NewPCG(p.seed, 100+uint64(c)))
	distinctN := n
	if c == ClassC {
		distinctN = min(n, 16)
	}
	out := make([]*engine.Filter, 0, n)
	for len(out) < distinctN {
		out = append(out, p.filter(r, c))
	}
	for i := distinctN; i < n; i++ {
		out = append(out, out[i%distinctN])
	}
	return out
}

func (p *Population) filter(r *rand.Rand, c Class) *engine.Filter {
	f := &engine.Filter{}
	statuses := func() []presence.Status {
		if r.IntN(3) > 0 {
			return nil
		}
		out := []presence.Status{presence.Status(r.IntN(presence.NumStatuses))}
		if r.IntN(2) == 0 {
			out = append(out, (out[0]+1)%presence.NumStatuses)
		}
		return out
	}
	f.AvailabilityStatus, f.ChatAvailability = statuses(), statuses()
	if r.IntN(3) == 0 {
		f.Roles = []presence.Role{presence.Operator}
		if r.IntN(2) == 0 {
			f.Roles = append(f.Roles, presence.Expert)
		}
	}
	pools := [3]int{p.Groups, p.Projects, p.Routing}
	names := [3]func(int) string{groupID, projectID, routingID}
	dims := []func() string{
		func() string { return groupID(r.IntN(p.Groups)) },
		func() string { return projectID(r.IntN(p.Projects)) },
		func() string { return routingID(r.IntN(p.Routing)) },
	}
	lists := []*[]string{&f.GroupIDs, &f.ProjectIDs, &f.RoutingGroupIDs}
	switch c {
	case ClassA:
		if d := r.IntN(5); d < 3 { // 40% of class a is the whole tenant
			*lists[d] = []string{dims[d]()}
		}
	case ClassB:
		for range 1 + r.IntN(12) {
			f.UserIDs = append(f.UserIDs, UserID(r.IntN(p.Users)))
		}
		if r.IntN(5) == 0 {
			f.GroupIDs = []string{dims[0]()}
		}
	case ClassC:
		if r.IntN(2) == 0 { // a supervisor's several teams
			d := r.IntN(3)
			*lists[d] = distinct(r, 2+r.IntN(3), pools[d], names[d])
		} else { // a team within a project
			for _, d := range r.Perm(3)[:2] {
				*lists[d] = []string{dims[d]()}
			}
		}
	}
	return f
}
