package engine

import (
	"slices"
	"sync/atomic"
)

// view is a class-c filter whose indicator the tenant keeps up to date on
// every event, so that asking it again costs a map lookup.
type view struct {
	key    string
	filter compiled
	value  Indicator
	// anchor is the constrained dimension under whose ids the view is
	// indexed, so that an event only visits the views its user could match.
	anchor int
	// lastUsed is the tenant's use tick when the view was last read; it is
	// written under the shard's read lock, hence atomic.
	lastUsed atomic.Uint64
}

// viewSet is a tenant's views, bounded in number, least recently used
// evicted first.
type viewSet struct {
	byKey    map[string]*view
	list     []*view
	anchored [numDims]map[uint32][]*view
	tick     atomic.Uint64
}

func (vs *viewSet) get(key []byte) *view {
	v := vs.byKey[string(key)]
	if v != nil {
		v.lastUsed.Store(vs.tick.Add(1))
	}
	return v
}

// add keeps v, first evicting the least recently used view if the set is full.
func (vs *viewSet) add(v *view, limit int) {
	if vs.byKey == nil {
		vs.byKey = make(map[string]*view)
	}
	if len(vs.list) >= limit {
		oldest := 0
		for i, w := range vs.list {
			if w.lastUsed.Load() < vs.list[oldest].lastUsed.Load() {
				oldest = i
			}
		}
		vs.unanchor(vs.list[oldest])
		delete(vs.byKey, vs.list[oldest].key)
		last := len(vs.list) - 1
		vs.list[oldest] = vs.list[last]
		vs.list[last] = nil
		vs.list = vs.list[:last]
	}
	v.lastUsed.Store(vs.tick.Add(1))
	vs.byKey[v.key] = v
	vs.list = append(vs.list, v)
	idx := &vs.anchored[v.anchor]
	if *idx == nil {
		*idx = make(map[uint32][]*view)
	}
	for _, id := range v.filter.ids[v.anchor] {
		(*idx)[id] = append((*idx)[id], v)
	}
}

func (vs *viewSet) unanchor(v *view) {
	idx := vs.anchored[v.anchor]
	for _, id := range v.filter.ids[v.anchor] {
		list := idx[id]
		i := slices.Index(list, v)
		list[i] = list[len(list)-1]
		list[len(list)-1] = nil
		if list = list[:len(list)-1]; len(list) == 0 {
			delete(idx, id)
		} else {
			idx[id] = list
		}
	}
}

// count adds or removes an online user's contribution to every view it
// matches. It visits only the views anchored at one of the user's ids, and
// counts a view at the first of the user's ids it is anchored at.
func (vs *viewSet) count(u *user, p point, sign int64) {
	if len(vs.list) == 0 {
		return
	}
	for d := range numDims {
		if len(vs.anchored[d]) == 0 {
			continue
		}
		have := u.dimIDs(d)
		for _, id := range have {
			for _, v := range vs.anchored[d][id] {
				if firstIn(have, v.filter.ids[d]) == int64(id) && v.filter.match(u, p) {
					v.value.add(p, sign)
				}
			}
		}
	}
}

// build computes v's value from the smallest candidate set: the online members
// of the filter's ids in the dimension whose member lists are shortest in
// total. A user in several of those ids is counted at the smallest only. It
// anchors the view at the constrained dimension with the fewest ids.
func (t *tenant) build(v *view) {
	v.anchor = -1
	for d, ids := range v.filter.ids {
		if ids != nil && (v.anchor < 0 || len(ids) < len(v.filter.ids[v.anchor])) {
			v.anchor = d
		}
	}
	best, bestN := -1, 0
	for d, ids := range v.filter.ids {
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
		panic("engine: view without an id constraint") // class a and b never build views
	}
	want := v.filter.ids[best]
	for _, id := range want {
		for _, u := range t.dims[best].members[id] {
			if firstIn(u.dimIDs(best), want) != int64(id) {
				continue
			}
			if p := pointOf(&u.state); v.filter.match(u, p) {
				v.value.add(p, 1)
			}
		}
	}
}
