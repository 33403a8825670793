package engine

import (
	"encoding/binary"
	"slices"
	"strings"

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
	// ids is nil for a dimension f does not constrain, else the ids of its
	// names that the tenant knows, sorted and distinct: empty (matching
	// nobody) when it knows none.
	ids   [numDims][]uint32
	users []string // nil: no constraint; else sorted, distinct
}

// resolve compiles f against the ids t knows. It never interns: an id that
// only requests name must cost nothing that outlives them (contract section
// 3.1). Unknown names are dropped or, when unknown is not nil, appended to
// it, sorted and distinct, for a watch to follow. The ids are appended to
// buf, which may be a caller's scratch array.
func (t *tenant) resolve(f *Filter, m masks, buf []uint32, unknown *[numDims][]string) compiled {
	c := compiled{masks: m}
	if f.UserIDs != nil {
		c.users = slices.Clone(f.UserIDs)
		slices.Sort(c.users)
		c.users = slices.Compact(c.users)
	}
	for d, names := range f.dimLists() {
		if names == nil {
			continue
		}
		start := len(buf)
		for _, name := range names {
			if id, found := t.dims[d].intern(name, false); found {
				buf = append(buf, id)
			} else if unknown != nil {
				unknown[d] = append(unknown[d], strings.Clone(name))
			}
		}
		ids := buf[start:]
		slices.Sort(ids)
		ids = slices.Compact(ids)
		buf = buf[:start+len(ids)]
		if ids == nil {
			ids = []uint32{} // constrained: not nil
		}
		// Capped, so that appending to one dimension's ids (a watched
		// view's, when an event names a pending id) never writes over the
		// next one's.
		c.ids[d] = ids[:len(ids):len(ids)]
		if unknown != nil {
			slices.Sort(unknown[d])
			unknown[d] = slices.Compact(unknown[d])
		}
	}
	return c
}

// none reports a constrained dimension of which the tenant knows no id: no
// user matches c.
func (c *compiled) none() bool {
	for _, ids := range c.ids {
		if ids != nil && len(ids) == 0 {
			return true
		}
	}
	return false
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

// appendKey appends to dst a canonical form of c and of a watch's pending
// names, so that equal filters share a view whatever the order of their
// ids: the masks, then per dimension its ids and its pending names, then the
// user ids; each constraint is 0 when absent, every list is prefixed by its
// length and every name by its length. A query has no pending names:
// its key is that of a watch whose names are all known.
func appendKey(dst []byte, c *compiled, pending *[numDims][]string) []byte {
	dst = append(dst, c.masks.roles, c.masks.availability, c.masks.chat)
	for d, ids := range c.ids {
		if ids == nil {
			dst = append(dst, 0)
			continue
		}
		dst = binary.AppendUvarint(append(dst, 1), uint64(len(ids)))
		for _, id := range ids {
			dst = binary.AppendUvarint(dst, uint64(id))
		}
		var names []string
		if pending != nil {
			names = pending[d]
		}
		dst = appendNames(dst, names)
	}
	if c.users == nil {
		return append(dst, 0)
	}
	return appendNames(append(dst, 1), c.users)
}

func appendNames(dst []byte, names []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, name := range names {
		dst = binary.AppendUvarint(dst, uint64(len(name)))
		dst = append(dst, name...)
	}
	return dst
}

// eachMatch calls fn for every online user that matches c, with its index,
// reading the smallest candidate set: the users c names, else the online members of its
// ids in the dimension whose member lists are shortest in total (a user in
// several of those ids visited at the smallest only), else every user.
func (t *tenant) eachMatch(c *compiled, fn func(uint32, ref, point)) {
	visit := func(i uint32) {
		u := t.ref(i)
		if !u.state.Online() {
			return
		}
		if p := pointOf(&u.state); c.match(u, p) {
			fn(i, u, p)
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
	best, _ := t.candidates(c)
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
