package engine

import (
	"slices"
	"strings"

	"github.com/presenced/presenced/presence"
)

// Dimension is what Breakdown groups the connected users by.
type Dimension uint8

// The dimensions of a breakdown (contract section 6.1).
const (
	ByGroup Dimension = iota
	ByProject
	ByRoutingGroup
	ByRole
	ByAvailability
	ByChat
)

// Row is one key of a breakdown and the indicator of its users.
type Row struct {
	Key       string
	Indicator Indicator
}

// Breakdown returns, for each value of by that has connected users matching
// f, their indicator, sorted by key (contract section 6.1): the id for the
// id dimensions, the enum name (OPERATOR, AVAILABLE...) for the others. A
// user in several ids counts in each of their rows; a user with no role is in
// no role row.
//
// Filters without userIds and with at most one id are answered from the
// counters (one cube sum per id, or one cube split by role or status);
// others from the filter's smallest candidate set of users, read a chunk at
// a time while Apply goes on, and exact as of the end of the read.
func (e *Engine) Breakdown(tenant string, by Dimension, f *Filter) []Row {
	m := f.masks()
	if f.matchesNothing(m) || by > ByChat {
		return nil
	}
	s := e.shard(tenant)
	s.mu.RLock()
	t := s.tenants[tenant]
	if t == nil {
		s.mu.RUnlock()
		return nil
	}
	var rows []Row
	keep := func(key string, ind Indicator) {
		if key != "" && ind.Connected > 0 { // "": users with no role
			rows = append(rows, Row{key, ind})
		}
	}
	d, name, single := f.single()
	switch {
	case single && f.UserIDs == nil && by <= ByRoutingGroup && d < 0:
		dim := &t.dims[by]
		for id, c := range dim.cubes {
			if c != nil {
				var ind Indicator
				c.sum(m, &ind)
				keep(dim.names[id], ind)
			}
		}
	case single && f.UserIDs == nil && by > ByRoutingGroup:
		c := &t.total
		if d >= 0 {
			id, ok := t.dims[d].intern(name, false)
			if !ok || t.dims[d].cubes[id] == nil {
				s.mu.RUnlock()
				return nil
			}
			c = t.dims[d].cubes[id]
		}
		for v := range by.values() {
			var ind Indicator
			c.sum(by.only(m, v), &ind)
			keep(by.key(v), ind)
		}
	default:
		s.mu.RUnlock()
		// From the candidates, a chunk at a time (scanMatches), which
		// starts under the write lock.
		s.mu.Lock()
		if t = s.tenants[tenant]; t == nil {
			s.mu.Unlock()
			return nil
		}
		c := t.resolve(f, m, nil, nil)
		if c.none() {
			s.mu.Unlock()
			return nil
		}
		var count func(u ref, p point, sign int64)
		var done func()
		if by <= ByRoutingGroup {
			var acc []Indicator // by id; ids named meanwhile are appended
			count = func(u ref, p point, sign int64) {
				if !c.match(u, p) {
					return
				}
				for _, id := range u.dimIDs(int(by)) {
					if int(id) >= len(acc) {
						acc = append(acc, make([]Indicator, len(t.dims[by].names)-len(acc))...)
					}
					acc[id].add(p, sign)
				}
			}
			done = func() {
				for id, ind := range acc {
					keep(t.dims[by].names[id], ind)
				}
			}
		} else {
			var acc [presence.NumRoles]Indicator
			count = func(u ref, p point, sign int64) {
				if c.match(u, p) {
					acc[by.of(p)].add(p, sign)
				}
			}
			done = func() {
				for v := range by.values() {
					keep(by.key(v), acc[v])
				}
			}
		}
		if !t.scanMatches(s, &c, count, done) {
			return e.Breakdown(tenant, by, f) // a Reset voided the read: ask the new state
		}
		slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.Key, b.Key) })
		return rows
	}
	s.mu.RUnlock()
	slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.Key, b.Key) })
	return rows
}

// values is how many values a role or status dimension has.
func (by Dimension) values() int {
	if by == ByRole {
		return presence.NumRoles
	}
	return presence.NumStatuses
}

// of returns the value of dimension by at p.
func (by Dimension) of(p point) int {
	switch by {
	case ByRole:
		return int(p.role)
	case ByAvailability:
		return int(p.availability)
	default:
		return int(p.chat)
	}
}

// only narrows m to the one value v of dimension by.
func (by Dimension) only(m masks, v int) masks {
	switch by {
	case ByRole:
		m.roles &= 1 << v
	case ByAvailability:
		m.availability &= 1 << v
	default:
		m.chat &= 1 << v
	}
	return m
}

// key names value v of dimension by; "" (no row) for NoRole.
func (by Dimension) key(v int) string {
	if by == ByRole {
		return presence.Role(v).EnumName()
	}
	return presence.Status(v).String()
}
