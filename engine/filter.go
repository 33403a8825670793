package engine

import (
	"slices"
	"strconv"

	"github.com/presenced/presenced/presence"
)

const allRoles, allStatuses = 1<<presence.NumRoles - 1, 1<<presence.NumStatuses - 1

func (f *Filter) masks() masks {
	m := masks{allRoles, allStatuses, allStatuses}
	if f.Roles != nil {
		m.roles = 0
		for _, r := range f.Roles {
			if r != presence.NoRole && r < presence.NumRoles {
				m.roles |= 1 << r
			}
		}
	}
	m.availability = statusMask(f.AvailabilityStatus)
	m.chat = statusMask(f.ChatAvailability)
	return m
}

func statusMask(s []presence.Status) uint8 {
	if s == nil {
		return allStatuses
	}
	var m uint8
	for _, x := range s {
		if x < presence.NumStatuses {
			m |= 1 << x
		}
	}
	return m
}

func (f *Filter) dimLists() [numDims][]string {
	return [numDims][]string{f.GroupIDs, f.ProjectIDs, f.RoutingGroupIDs}
}

// matchesNothing reports a filter with an empty list, or with masks that keep
// nothing: no user can match it.
func (f *Filter) matchesNothing(m masks) bool {
	if m.empty() || (f.UserIDs != nil && len(f.UserIDs) == 0) {
		return true
	}
	for _, l := range f.dimLists() {
		if l != nil && len(l) == 0 {
			return true
		}
	}
	return false
}

// single reports whether the id lists of f name at most one distinct id in
// total (class a), and which: d is -1 when f constrains no dimension.
func (f *Filter) single() (d int, name string, ok bool) {
	d = -1
	for i, l := range f.dimLists() {
		if l == nil {
			continue
		}
		if d >= 0 {
			return 0, "", false
		}
		for _, x := range l[1:] {
			if x != l[0] {
				return 0, "", false
			}
		}
		d, name = i, l[0]
	}
	return d, name, true
}

// compiled is a filter resolved against one tenant's interned ids.
type compiled struct {
	masks masks
	ids   [numDims][]uint32 // nil: no constraint; else sorted, distinct
	users []string          // nil: no constraint; else sorted, distinct
}

// compile resolves f's ids in t. With create, unknown ids are interned so that
// a view built on them follows users who join them later; without, they are
// dropped, and ok is false when a constrained dimension is left with no id.
func (t *tenant) compile(f *Filter, m masks, create bool) (c compiled, ok bool) {
	c.masks = m
	if f.UserIDs != nil {
		c.users = slices.Clone(f.UserIDs)
		slices.Sort(c.users)
		c.users = slices.Compact(c.users)
	}
	for d, names := range f.dimLists() {
		if names == nil {
			continue
		}
		ids := make([]uint32, 0, len(names))
		for _, name := range names {
			if id, found := t.dims[d].intern(name, create); found {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return c, false
		}
		slices.Sort(ids)
		c.ids[d] = slices.Compact(ids)
	}
	return c, true
}

func (c *compiled) match(u ref, p point) bool {
	if !c.masks.match(p) {
		return false
	}
	if c.users != nil {
		if _, found := slices.BinarySearch(c.users, u.id); !found {
			return false
		}
	}
	for d, want := range c.ids {
		if want != nil && firstIn(u.dimIDs(d), want) < 0 {
			return false
		}
	}
	return true
}

// firstIn returns the smallest of have that is in want (sorted), or -1.
func firstIn(have, want []uint32) int64 {
	first := int64(-1)
	for _, id := range have {
		if _, found := slices.BinarySearch(want, id); found && (first < 0 || int64(id) < first) {
			first = int64(id)
		}
	}
	return first
}

// viewKey appends to dst a canonical form of f (masks, then each dimension's
// sorted distinct ids and the user ids, length-prefixed), so that equal
// filters share a view whatever the order of their ids. scratch is reused
// for sorting.
func viewKey(dst []byte, f *Filter, m masks, scratch []string) []byte {
	dst = append(dst, m.roles, m.availability, m.chat)
	for _, names := range [...][]string{f.GroupIDs, f.ProjectIDs, f.RoutingGroupIDs, f.UserIDs} {
		if names == nil {
			dst = append(dst, '-')
			continue
		}
		scratch = append(scratch[:0], names...)
		slices.Sort(scratch)
		dst = append(dst, '[')
		for _, name := range slices.Compact(scratch) {
			dst = strconv.AppendInt(dst, int64(len(name)), 10)
			dst = append(dst, ':')
			dst = append(dst, name...)
		}
		dst = append(dst, ']')
	}
	return dst
}

// eachMatch calls fn for every online user that matches c, reading the
// smallest candidate set: the users c names, else the online members of its
// ids in the dimension whose member lists are shortest in total (a user in
// several of those ids visited at the smallest only), else every user.
func (t *tenant) eachMatch(c *compiled, fn func(ref, point)) {
	visit := func(i uint32) {
		u := t.ref(i)
		if !u.state.Online() {
			return
		}
		if p := pointOf(&u.state); c.match(u, p) {
			fn(u, p)
		}
	}
	if c.users != nil {
		for _, id := range c.users {
			if i, ok := t.users[id]; ok {
				visit(i)
			}
		}
		return
	}
	best, bestN := -1, 0
	for d, ids := range c.ids {
		if ids == nil {
			continue
		}
		n := 0
		for _, id := range ids {
			n += len(t.dims[d].members[id])
		}
		if best < 0 || n < bestN {
			best, bestN = d, n
		}
	}
	if best < 0 {
		for i := range t.all() {
			visit(i)
		}
		return
	}
	want := c.ids[best]
	for _, id := range want {
		for _, i := range t.dims[best].members[id] {
			if u := t.ref(i); firstIn(u.dimIDs(best), want) == int64(id) {
				visit(i)
			}
		}
	}
}
