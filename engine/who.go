package engine

import (
	"fmt"
	"slices"

	"github.com/presenced/presenced/presence"
)

// Order is the order of the users of a page (contract section 8).
type Order uint8

// The orders of connectedUsers. The time orders put a user whose field was
// never set before every time, and ties by user id.
const (
	// ByUserID orders by user id, bytewise ascending.
	ByUserID Order = iota
	// ByConnectedAt orders by the ts of the connection (the newest login),
	// oldest first.
	ByConnectedAt
	// ByChatUpdatedAt orders by the ts of the event that last set the chat
	// availability, oldest first.
	ByChatUpdatedAt
	numOrders
)

// Key is a user's place in an order. A page starts right after it, whether
// or not a user still sits there.
type Key struct {
	Order Order
	// Unset says the order's field was never set; At is then 0.
	Unset bool
	// At is the order's time in Unix ns; 0 for ByUserID.
	At     int64
	UserID string
}

// Page asks for one page of the connected users that match a filter.
type Page struct {
	Order Order
	// First is how many users at most, at least 1.
	First int
	// After is the key of the last user of the page before; nil for the
	// first page. Its Order must be the page's.
	After *Key
}

// Time is one of a user's times: the ts of an event.
type Time struct {
	// At is the time in Unix ns, meaningful when Set.
	At  int64
	Set bool
}

// ConnectedUser is a copy of one connected user's state.
type ConnectedUser struct {
	UserID string
	// Role is presence.NoRole for a user no event gave a role.
	Role                 presence.Role
	Availability, Chat   presence.Status
	MaxSlots, CurSlots   int
	GroupIDs, ProjectIDs []string // sorted
	RoutingGroupIDs      []string // sorted
	// ConnectedAt is the ts of the connection field (the newest login);
	// AvailabilityUpdatedAt and ChatUpdatedAt those of the events that
	// last set the two statuses (not Set when none did); LastSeen the
	// newest ts of any event of the user.
	ConnectedAt, AvailabilityUpdatedAt, ChatUpdatedAt, LastSeen Time
	// Key is the user's place in the page's order, for the next page.
	Key Key
}

// UserPage is one page of connected users.
type UserPage struct {
	Users []ConnectedUser
	// Total counts every connected user matching the filter, on any page:
	// Query's Connected for the same filter.
	Total int64
	// More says users follow the last of Users.
	More bool
}

// Users returns, in the page's order, the first page.First connected users
// of tenant that match f and sort after page.After: exactly the users Query
// counts for f. A page costs O(First + log n) for a filter with no id, the
// tenant's index of the order read from the cursor on (each user read is
// checked against the filter's roles and statuses); with ids or userIds,
// O(candidates + First log First) for the smallest candidate set (as
// Query's views), unless reading the index costs less by the filter's count.
// A filter of more than scanChunk candidates has its view built first, as
// Query builds it, a chunk at a time while Apply goes on: its count then
// costs nothing, and the page mostly reads the index.
// It returns an error matching ErrPage for a page that breaks its rules.
func (e *Engine) Users(tenant string, f *Filter, page Page) (UserPage, error) {
	return e.users(tenant, f, page, true)
}

// users is Users, building the filter's view first if build is set.
func (e *Engine) users(tenant string, f *Filter, page Page, build bool) (UserPage, error) {
	var out UserPage
	if page.Order >= numOrders {
		return out, fmt.Errorf("%w: order %d", ErrPage, page.Order)
	}
	if page.First < 1 {
		return out, fmt.Errorf("%w: first %d is below 1", ErrPage, page.First)
	}
	if page.After != nil && page.After.Order != page.Order {
		return out, fmt.Errorf("%w: the cursor is of order %d, the page of %d", ErrPage, page.After.Order, page.Order)
	}
	m := f.masks()
	if f.matchesNothing(m) {
		return out, nil
	}
	s := e.shard(tenant)
	s.mu.RLock()
	t := s.tenants[tenant]
	if t == nil {
		s.mu.RUnlock()
		return out, nil
	}
	var idBuf [64]uint32
	c := t.resolve(f, m, idBuf[:0], nil)
	if c.none() {
		s.mu.RUnlock()
		return out, nil
	}
	total, known := t.countOf(f, &c)
	if !known && build && c.users == nil {
		if _, n := t.candidates(&c); n > scanChunk {
			s.mu.RUnlock()
			e.Query(tenant, f)
			// Once: a view evicted again meanwhile is not built again.
			return e.users(tenant, f, page, false)
		}
	}
	defer s.mu.RUnlock()
	pivot := newProbe(0, true, "", 0)
	strict := false
	if k := page.After; k != nil {
		pivot, strict = newProbe(k.At, k.Unset, k.UserID, 0), true
	}
	var picked []uint32
	if known && t.walkCheaper(&c, total, page.First) {
		picked = t.walk(page.Order, &c, pivot, strict, page.First+1)
	} else {
		picked, total = t.pageOfCandidates(page.Order, &c, pivot, strict, page.First+1)
	}
	out.Total = total
	if len(picked) > page.First {
		picked, out.More = picked[:page.First], true
	}
	out.Users = make([]ConnectedUser, len(picked))
	n := 0
	for _, i := range picked {
		n += t.user(i).idCount()
	}
	names := make([]string, 0, n) // one array for every id list of the page
	for k, i := range picked {
		names = t.connectedUser(i, page.Order, &out.Users[k], names)
	}
	return out, nil
}

// countOf returns Query's count for f when it costs no scan: from the
// counters for a filter with at most one id (class a), from the filter's
// view if it has one.
func (t *tenant) countOf(f *Filter, c *compiled) (int64, bool) {
	if c.users != nil {
		return 0, false
	}
	var ind Indicator
	if d, name, ok := f.single(); ok {
		t.queryCube(d, name, c.masks, &ind)
		return ind.Connected, true
	}
	var keyBuf [256]byte
	if v := t.views.get(appendKey(keyBuf[:0], c, nil)); v != nil {
		return v.value.Connected, true
	}
	return 0, false
}

// walkCheaper reports whether reading the order's index until n of the
// total matching users are found, about n × online / total entries, costs
// less than visiting the filter's candidates.
func (t *tenant) walkCheaper(c *compiled, total int64, n int) bool {
	d, cand := t.candidates(c)
	if d < 0 {
		return true // no id: the candidates are every user
	}
	if total == 0 {
		return false
	}
	var all Indicator
	t.total.sum(masks{allRoles, allStatuses, allStatuses}, &all)
	return int64(n)*all.Connected/total < int64(cand)
}

// walk reads the index of order o from pivot on and returns the first n
// users that match c.
func (t *tenant) walk(o Order, c *compiled, pivot probe, strict bool, n int) []uint32 {
	out := make([]uint32, 0, min(n, 1024))
	for i := range t.orders[o].from(pivot, strict, t.idOf) {
		u := t.ref(i)
		if c.match(u, pointOf(&u.state)) {
			if out = append(out, i); len(out) == n {
				break
			}
		}
	}
	return out
}

// pageOfCandidates visits the candidates of c and returns the first n of those that
// match and sort after pivot, in order, with the count of all that match.
func (t *tenant) pageOfCandidates(o Order, c *compiled, pivot probe, strict bool, n int) ([]uint32, int64) {
	var best pageHeap
	var total int64
	t.eachMatch(c, func(i uint32, u ref, _ point) {
		total++
		p := t.probe(o, i, u.user)
		if cmp := pivot.before(&p); cmp > 0 || strict && cmp == 0 {
			return
		}
		best.keep(p, n)
	})
	slices.SortFunc(best.p, func(a, b probe) int { return a.before(&b) })
	out := make([]uint32, len(best.p))
	for k, p := range best.p {
		out[k] = p.user
	}
	return out, total
}

// pageHeap keeps the n smallest entries seen, the largest on top: a binary
// max-heap.
type pageHeap struct{ p []probe }

// above reports whether entry i belongs above entry j (sorts after it).
func (h *pageHeap) above(i, j int) bool { return h.p[i].before(&h.p[j]) > 0 }

// keep adds p if fewer than n are kept or p sorts before the largest.
func (h *pageHeap) keep(p probe, n int) {
	if len(h.p) < n {
		h.p = append(h.p, p)
		for i := len(h.p) - 1; i > 0 && h.above(i, (i-1)/2); i = (i - 1) / 2 {
			h.p[i], h.p[(i-1)/2] = h.p[(i-1)/2], h.p[i]
		}
		return
	}
	if p.before(&h.p[0]) >= 0 {
		return
	}
	h.p[0] = p
	for i := 0; ; {
		top := i
		for _, k := range [2]int{2*i + 1, 2*i + 2} {
			if k < len(h.p) && h.above(k, top) {
				top = k
			}
		}
		if top == i {
			return
		}
		h.p[i], h.p[top] = h.p[top], h.p[i]
		i = top
	}
}

// probe returns user i's place in order o.
func (t *tenant) probe(o Order, i uint32, u *user) probe {
	switch o {
	case ByConnectedAt:
		return newProbe(u.state.Clock[presence.FieldConnection], false, u.id, i)
	case ByChatUpdatedAt:
		if u.state.Known&presence.HasChat == 0 {
			return newProbe(0, true, u.id, i)
		}
		return newProbe(u.state.Clock[presence.FieldChat], false, u.id, i)
	}
	return newProbe(0, false, u.id, i)
}

// clocks are what the orders' keys of a user are made of.
type clocks struct {
	conn, chat int64
	chatSet    bool
}

func clocksOf(s *presence.State) clocks {
	return clocks{s.Clock[presence.FieldConnection], s.Clock[presence.FieldChat], s.Known&presence.HasChat != 0}
}

func (k clocks) probe(o Order, i uint32, id string) probe {
	switch o {
	case ByConnectedAt:
		return newProbe(k.conn, false, id, i)
	case ByChatUpdatedAt:
		if !k.chatSet {
			return newProbe(0, true, id, i)
		}
		return newProbe(k.chat, false, id, i)
	}
	return newProbe(0, false, id, i)
}

// reorder moves user i in the tenant's orders after an event: in when it
// came online, out when it left, to its new place when a key changed.
func (t *tenant) reorder(i uint32, id string, wasOnline, isOnline bool, before, after clocks) {
	switch {
	case !wasOnline && !isOnline:
	case !isOnline:
		t.unorder(i, id, before)
	case !wasOnline:
		t.order(i, id, after)
	default:
		for o := ByConnectedAt; o < numOrders; o++ {
			if old, cur := before.probe(o, i, id), after.probe(o, i, id); old.entry != cur.entry {
				t.orders[o].remove(old, t.idOf)
				t.orders[o].insert(cur, t.idOf)
			}
		}
	}
}

// order puts user i, come online, in every order.
func (t *tenant) order(i uint32, id string, k clocks) {
	for o := range numOrders {
		t.orders[o].insert(k.probe(o, i, id), t.idOf)
	}
}

// unorder takes user i, gone offline, out of every order.
func (t *tenant) unorder(i uint32, id string, k clocks) {
	for o := range numOrders {
		t.orders[o].remove(k.probe(o, i, id), t.idOf)
	}
}

// connectedUser copies user i into cu, its id lists appended to names,
// which it returns.
func (t *tenant) connectedUser(i uint32, o Order, cu *ConnectedUser, names []string) []string {
	u := t.ref(i)
	st := &u.state
	*cu = ConnectedUser{
		UserID:       u.id,
		Role:         st.Role,
		Availability: st.Availability,
		Chat:         st.Chat,
		MaxSlots:     int(st.MaxSlots),
		CurSlots:     int(st.CurrentSlots),
		ConnectedAt:  Time{st.Clock[presence.FieldConnection], true},
		LastSeen:     Time{st.LastSeen, true},
	}
	if st.Known&presence.HasAvailability != 0 {
		cu.AvailabilityUpdatedAt = Time{st.Clock[presence.FieldAvailability], true}
	}
	if st.Known&presence.HasChat != 0 {
		cu.ChatUpdatedAt = Time{st.Clock[presence.FieldChat], true}
	}
	lists := [numDims]*[]string{&cu.GroupIDs, &cu.ProjectIDs, &cu.RoutingGroupIDs}
	for d := range numDims {
		start := len(names)
		for _, id := range u.dimIDs(d) {
			names = append(names, t.dims[d].names[id])
		}
		list := names[start:len(names):len(names)]
		slices.Sort(list)
		*lists[d] = list
	}
	p := t.probe(o, i, u.user)
	cu.Key = Key{Order: o, Unset: p.unset, At: p.at, UserID: u.id}
	return names
}
