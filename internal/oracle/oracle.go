package oracle

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Delivered is one event as published: its tenant and the event.
type Delivered struct {
	Tenant string
	Ev     presence.Event
}

var (
	groupPool   = []string{"g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"}
	projectPool = []string{"p0", "p1", "p2", "p3"}
	routingPool = []string{"r0", "r1", "r2", "r3", "r4"}
)

// Events makes perUser events for each of users users of each tenant, with
// distinct increasing ts per user, then adds dups duplicates of random events.
func Events(r *rand.Rand, tenants []string, users, perUser, dups int) []Delivered {
	return EventsFrom(r, tenants, users, perUser, dups, 1_700_000_000_000_000_000, 1e9)
}

// EventsFrom is Events with each user's first ts within maxGap after start
// (Unix ns) and each next one 1 to maxGap ns after the previous.
func EventsFrom(r *rand.Rand, tenants []string, users, perUser, dups int, start, maxGap int64) []Delivered {
	var out []Delivered
	for _, tn := range tenants {
		for u := range users {
			ts := start + r.Int64N(maxGap)
			for range perUser {
				ts += 1 + r.Int64N(maxGap)
				out = append(out, Delivered{tn, randomEvent(r, fmt.Sprintf("u%d", u), ts)})
			}
		}
	}
	for range dups {
		out = append(out, out[r.IntN(len(out))])
	}
	return out
}

func randomEvent(r *rand.Rand, userID string, ts int64) presence.Event {
	ev := presence.Event{UserID: userID, TS: ts, Fields: presence.HasTS}
	switch x := r.IntN(100); {
	case x < 22:
		ev.Type = presence.Login
	case x < 32:
		ev.Type = presence.Logout
	case x < 55:
		ev.Type = presence.StatusChange
	case x < 75:
		ev.Type = presence.Slots
	case x < 90:
		ev.Type = presence.Profile
	default:
		ev.Type = presence.Heartbeat
	}
	// Each type carries its usual fields most of the time, and any field
	// sometimes: the contract lets every type carry any field.
	usual := func(t presence.Type, p int) bool {
		return (ev.Type == t && r.IntN(100) < p) || r.IntN(100) < 8
	}
	if usual(presence.Profile, 70) || usual(presence.Login, 50) {
		ev.Fields |= presence.HasRole
		ev.Role = presence.Role(1 + r.IntN(presence.NumRoles-1))
	}
	if usual(presence.Profile, 60) || usual(presence.Login, 50) {
		ev.Fields |= presence.HasGroups
		ev.GroupIDs = randomSet(r, groupPool, 3)
	}
	if usual(presence.Profile, 50) || usual(presence.Login, 40) {
		ev.Fields |= presence.HasProjects
		ev.ProjectIDs = randomSet(r, projectPool, 2)
	}
	if usual(presence.Profile, 50) || usual(presence.Login, 40) {
		ev.Fields |= presence.HasRoutingGroups
		ev.RoutingGroupIDs = randomSet(r, routingPool, 2)
	}
	if usual(presence.StatusChange, 70) || usual(presence.Login, 50) {
		ev.Fields |= presence.HasAvailability
		ev.Availability = presence.Status(r.IntN(presence.NumStatuses))
	}
	if usual(presence.StatusChange, 70) || usual(presence.Login, 50) {
		ev.Fields |= presence.HasChat
		ev.Chat = presence.Status(r.IntN(presence.NumStatuses))
	}
	if usual(presence.Slots, 80) || usual(presence.Login, 40) {
		ev.Fields |= presence.HasMaxSlots
		ev.MaxSlots = uint16(r.IntN(6))
	}
	if usual(presence.Slots, 80) {
		ev.Fields |= presence.HasCurrentSlots
		ev.CurrentSlots = uint16(r.IntN(8)) // may exceed maxSlots
	}
	return ev
}

func randomSet(r *rand.Rand, pool []string, most int) []string {
	n := r.IntN(most + 1)
	var out []string
	for _, i := range r.Perm(len(pool))[:n] {
		out = append(out, pool[i])
	}
	return out
}

// Tenants holds, per tenant, the users by id.
type Tenants map[string]map[string]*User

// User is the state of one user by contract section 1.2: per field,
// the value of the delivered event with the newest ts carrying it.
type User struct {
	connected    bool
	role         presence.Role
	groups       []string
	projects     []string
	routing      []string
	availability presence.Status
	chat         presence.Status
	maxS, curS   int64
	ts           [9]int64
	set          [9]bool
	lastSeen     int64
}

// State is StateAt without session expiry.
func State(events []Delivered) Tenants { return StateAt(events, 0, 0) }

// StateAt is the state the events give at time now (Unix ns) under session
// expiry with ttl (ns; 0 is off), by contract sections 1.2 and 1.3 read
// literally: every field but the connection by the newest ts carrying it,
// whatever the order of delivery; the connection by going through each
// user's events in ts order (delivery order among equal ts), a session
// ending at the newest event's ts + ttl when the next event is further away
// than that, and at now.
func StateAt(events []Delivered, ttl, now int64) Tenants {
	out := Tenants{}
	for _, d := range events {
		users := out[d.Tenant]
		if users == nil {
			users = map[string]*User{}
			out[d.Tenant] = users
		}
		u := users[d.Ev.UserID]
		if u == nil {
			u = &User{}
			users[d.Ev.UserID] = u
		}
		ev := &d.Ev
		if u.lastSeen == 0 || ev.TS > u.lastSeen {
			u.lastSeen = ev.TS
		}
		newer := func(i int) bool {
			if u.set[i] && ev.TS < u.ts[i] {
				return false
			}
			u.set[i], u.ts[i] = true, ev.TS
			return true
		}
		if (ev.Type == presence.Login || ev.Type == presence.Logout) && newer(0) {
			u.connected = ev.Type == presence.Login
		}
		if ev.Fields&presence.HasRole != 0 && newer(1) {
			u.role = ev.Role
		}
		if ev.Fields&presence.HasGroups != 0 && newer(2) {
			u.groups = ev.GroupIDs
		}
		if ev.Fields&presence.HasProjects != 0 && newer(3) {
			u.projects = ev.ProjectIDs
		}
		if ev.Fields&presence.HasRoutingGroups != 0 && newer(4) {
			u.routing = ev.RoutingGroupIDs
		}
		if ev.Fields&presence.HasAvailability != 0 && newer(5) {
			u.availability = ev.Availability
		}
		if ev.Fields&presence.HasChat != 0 && newer(6) {
			u.chat = ev.Chat
		}
		if ev.Fields&presence.HasMaxSlots != 0 && newer(7) {
			u.maxS = int64(ev.MaxSlots)
		}
		if ev.Fields&presence.HasCurrentSlots != 0 && newer(8) {
			u.curS = int64(ev.CurrentSlots)
		}
	}
	if ttl > 0 {
		sessions(out, events, ttl, now)
	}
	return out
}

// sessions sets the connection of every user of out from events in ts
// order under session expiry (see StateAt).
func sessions(out Tenants, events []Delivered, ttl, now int64) {
	type key struct{ tenant, user string }
	byUser := map[key][]*presence.Event{}
	for i := range events {
		d := &events[i]
		k := key{d.Tenant, d.Ev.UserID}
		byUser[k] = append(byUser[k], &d.Ev)
	}
	for k, evs := range byUser {
		slices.SortStableFunc(evs, func(a, b *presence.Event) int { return cmp.Compare(a.TS, b.TS) })
		connected := false
		for i, ev := range evs {
			if connected && i > 0 && ev.TS > evs[i-1].TS+ttl {
				connected = false // a logout at the previous event's ts + ttl
			}
			if ev.Type == presence.Login || ev.Type == presence.Logout {
				connected = ev.Type == presence.Login
			}
		}
		if connected && evs[len(evs)-1].TS+ttl < now {
			connected = false
		}
		out[k.tenant][k.user].connected = connected
	}
}

// anyOf reports the contract's list rule: nil is no constraint, a list
// matches when it shares a value with have.
func anyOf[T comparable](want []T, have ...T) bool {
	if want == nil {
		return true
	}
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

// matches reports whether user u, called id, is connected and matches f.
func matches(id string, u *User, f *engine.Filter) bool {
	return u.connected &&
		anyOf(f.AvailabilityStatus, u.availability) &&
		anyOf(f.ChatAvailability, u.chat) &&
		(f.Roles == nil || u.role != presence.NoRole && anyOf(f.Roles, u.role)) &&
		anyOf(f.GroupIDs, u.groups...) &&
		anyOf(f.ProjectIDs, u.projects...) &&
		anyOf(f.RoutingGroupIDs, u.routing...) &&
		anyOf(f.UserIDs, id)
}

// Query answers f over the connected users of one tenant by brute force.
func Query(users map[string]*User, f *engine.Filter) engine.Indicator {
	var ind engine.Indicator
	for id, u := range users {
		if !matches(id, u, f) {
			continue
		}
		ind.Connected++
		ind.Chat[u.chat]++
		if u.chat == presence.Available || u.chat == presence.Busy {
			ind.InProduction++
			ind.MaxSlots += u.maxS
			ind.CurrentSlots += u.curS
		}
	}
	return ind
}

// Class names the engine's query classes, for the random filters.
type Class int

const (
	ClassA Class = iota // no id, or one id of one dimension
	ClassB              // userIds
	ClassC              // anything else
)

// RandomFilter returns a random filter of the given query class, over users
// u0..u<users-1> and the id pools of Events.
func RandomFilter(r *rand.Rand, class Class, users int) *engine.Filter {
	f := &engine.Filter{}
	statuses := func() []presence.Status {
		if r.IntN(2) == 0 {
			return nil
		}
		out := []presence.Status{} // an empty list matches nothing
		for s := range presence.Status(presence.NumStatuses) {
			if r.IntN(2) == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	f.AvailabilityStatus, f.ChatAvailability = statuses(), statuses()
	if r.IntN(2) == 0 {
		f.Roles = []presence.Role{}
		for ro := presence.Operator; ro < presence.NumRoles; ro++ {
			if r.IntN(3) > 0 {
				f.Roles = append(f.Roles, ro)
			}
		}
	}
	pools := [][]string{groupPool, projectPool, routingPool}
	lists := []*[]string{&f.GroupIDs, &f.ProjectIDs, &f.RoutingGroupIDs}
	pick := func(pool []string) string {
		if r.IntN(10) == 0 {
			return "unknown"
		}
		return pool[r.IntN(len(pool))]
	}
	switch class {
	case ClassA:
		if d := r.IntN(4); d < 3 {
			id := pick(pools[d])
			*lists[d] = []string{id}
			if r.IntN(4) == 0 {
				*lists[d] = append(*lists[d], id) // a repeated id is still one id
			}
		}
	case ClassB:
		f.UserIDs = []string{}
		for range 1 + r.IntN(12) {
			f.UserIDs = append(f.UserIDs, fmt.Sprintf("u%d", r.IntN(users+3)))
		}
		if r.IntN(2) == 0 {
			d := r.IntN(3)
			*lists[d] = []string{pick(pools[d]), pick(pools[d])}
		}
	case ClassC:
		if r.IntN(2) == 0 { // several ids in one dimension
			d := r.IntN(3)
			for range 2 + r.IntN(2) {
				*lists[d] = append(*lists[d], pick(pools[d]))
			}
			if (*lists[d])[0] == (*lists[d])[1] {
				(*lists[d])[1] += "x" // keep two distinct ids
			}
		} else { // ids in two or three dimensions
			for _, d := range r.Perm(3)[:2+r.IntN(2)] {
				for range 1 + r.IntN(2) {
					*lists[d] = append(*lists[d], pick(pools[d]))
				}
			}
		}
	}
	return f
}

// Breakdown answers connectedUsersIndicatorBreakdown by brute force: for each
// key of dimension by, the indicator of the users matching f that have it.
func Breakdown(users map[string]*User, by engine.Dimension, f *engine.Filter) map[string]engine.Indicator {
	out := map[string]engine.Indicator{}
	for id, u := range users {
		var keys []string
		switch by {
		case engine.ByGroup:
			keys = u.groups
		case engine.ByProject:
			keys = u.projects
		case engine.ByRoutingGroup:
			keys = u.routing
		case engine.ByRole:
			if u.role != presence.NoRole {
				keys = []string{u.role.EnumName()}
			}
		case engine.ByAvailability:
			keys = []string{u.availability.String()}
		case engine.ByChat:
			keys = []string{u.chat.String()}
		}
		one := Query(map[string]*User{id: u}, f)
		if one.Connected == 0 {
			continue
		}
		for _, k := range keys {
			ind := out[k]
			ind.Connected += one.Connected
			for i := range ind.Chat {
				ind.Chat[i] += one.Chat[i]
			}
			ind.InProduction += one.InProduction
			ind.MaxSlots += one.MaxSlots
			ind.CurrentSlots += one.CurrentSlots
			out[k] = ind
		}
	}
	return out
}

// Results says what became of each event applied in the order given, by
// contract 1.2 without session expiry: Stale when the event carried at least
// one field (the connection, for login and logout) and every one was older
// than the user's, Applied otherwise.
func Results(events []Delivered) []engine.Result {
	type key struct{ tenant, user string }
	clocks := map[key]*[presence.NumFields]struct {
		ts  int64
		set bool
	}{}
	out := make([]engine.Result, len(events))
	for i := range events {
		ev := &events[i].Ev
		k := key{events[i].Tenant, ev.UserID}
		c := clocks[k]
		if c == nil {
			c = new([presence.NumFields]struct {
				ts  int64
				set bool
			})
			clocks[k] = c
		}
		carried := ev.Fields & (presence.HasRole | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups |
			presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots)
		if ev.Type == presence.Login || ev.Type == presence.Logout {
			carried |= presence.HasConnection
		}
		applied := false
		for f := range presence.NumFields {
			if carried&(1<<f) == 0 || (c[f].set && ev.TS < c[f].ts) {
				continue
			}
			c[f].ts, c[f].set, applied = ev.TS, true, true
		}
		if carried != 0 && !applied {
			out[i] = engine.Stale
		}
	}
	return out
}
