package engine

import (
	"slices"
	"sync/atomic"
)

// view is a filter whose indicator the tenant keeps up to date on every
// event, so that asking it again costs a map lookup. Queries make views for
// the filters they cannot answer from the cubes; watches make them for any
// filter, and pin them while they watch.
type view struct {
	key    string
	filter compiled
	value  Indicator
	// anchor is the constrained dimension under whose ids the view is
	// indexed, so that an event only visits the views its user could match;
	// -1 for a filter with no id: indexed by its user ids if it has some,
	// else visited by every event of the tenant.
	anchor int
	// lastUsed is the tenant's use tick when the view was last read; it is
	// written under the shard's read lock, hence atomic.
	lastUsed atomic.Uint64

	// watchers counts the open watches; a watched view is never evicted.
	watchers int
	// changed is closed, and replaced, when value differs from notified
	// after an event: every watch waiting on it wakes at once.
	changed  chan struct{}
	notified Indicator
	touched  bool // in the tenant's list of views to check after an event
}

// viewSet is a tenant's views, bounded in number, least recently used
// evicted first.
type viewSet struct {
	byKey      map[string]*view
	list       []*view
	anchored   [numDims]map[uint32][]*view
	byUser     map[string][]*view
	unanchored []*view
	touched    []*view // views whose value an event changed, for notify
	tick       atomic.Uint64
}

func (vs *viewSet) get(key []byte) *view {
	v := vs.byKey[string(key)]
	if v != nil {
		v.lastUsed.Store(vs.tick.Add(1))
	}
	return v
}

// add keeps v, first evicting the least recently used unwatched view if the
// set is full. Watched views do not count against the limit: they are
// bounded by what may watch (the API's subscription limits).
func (vs *viewSet) add(v *view, limit int) {
	if vs.byKey == nil {
		vs.byKey = make(map[string]*view)
	}
	unwatched, oldest := 0, -1
	for i, w := range vs.list {
		if w.watchers > 0 {
			continue
		}
		unwatched++
		if oldest < 0 || w.lastUsed.Load() < vs.list[oldest].lastUsed.Load() {
			oldest = i
		}
	}
	if unwatched >= limit && oldest >= 0 {
		vs.remove(oldest)
	}
	v.lastUsed.Store(vs.tick.Add(1))
	vs.byKey[v.key] = v
	vs.list = append(vs.list, v)
	switch {
	case v.anchor >= 0:
	case v.filter.users != nil:
		if vs.byUser == nil {
			vs.byUser = make(map[string][]*view)
		}
		for _, id := range v.filter.users {
			vs.byUser[id] = append(vs.byUser[id], v)
		}
		return
	default:
		vs.unanchored = append(vs.unanchored, v)
		return
	}
	idx := &vs.anchored[v.anchor]
	if *idx == nil {
		*idx = make(map[uint32][]*view)
	}
	for _, id := range v.filter.ids[v.anchor] {
		(*idx)[id] = append((*idx)[id], v)
	}
}

// remove forgets the view at index i of the list.
func (vs *viewSet) remove(i int) {
	v := vs.list[i]
	delete(vs.byKey, v.key)
	vs.list = deleteSwap(vs.list, i)
	switch {
	case v.anchor >= 0:
	case v.filter.users != nil:
		for _, id := range v.filter.users {
			if list := deleteSwap(vs.byUser[id], slices.Index(vs.byUser[id], v)); len(list) == 0 {
				delete(vs.byUser, id)
			} else {
				vs.byUser[id] = list
			}
		}
		return
	default:
		vs.unanchored = deleteSwap(vs.unanchored, slices.Index(vs.unanchored, v))
		return
	}
	idx := vs.anchored[v.anchor]
	for _, id := range v.filter.ids[v.anchor] {
		if list := deleteSwap(idx[id], slices.Index(idx[id], v)); len(list) == 0 {
			delete(idx, id)
		} else {
			idx[id] = list
		}
	}
}

// deleteSwap removes s[i] by moving the last element into its place.
func deleteSwap(s []*view, i int) []*view {
	last := len(s) - 1
	s[i] = s[last]
	s[last] = nil
	return s[:last]
}

// count adds or removes an online user's contribution to every view it
// matches. It visits only the views anchored at one of the user's ids (a
// view at the first of the user's ids it is anchored at), those naming the
// user, and the views with neither.
func (vs *viewSet) count(u ref, p point, sign int64) {
	if len(vs.list) == 0 {
		return
	}
	for _, v := range vs.unanchored {
		vs.countIn(v, u, p, sign)
	}
	for _, v := range vs.byUser[u.id] {
		vs.countIn(v, u, p, sign)
	}
	for d := range numDims {
		if len(vs.anchored[d]) == 0 {
			continue
		}
		have := u.dimIDs(d)
		for _, id := range have {
			for _, v := range vs.anchored[d][id] {
				if firstIn(have, v.filter.ids[d]) == int64(id) {
					vs.countIn(v, u, p, sign)
				}
			}
		}
	}
}

func (vs *viewSet) countIn(v *view, u ref, p point, sign int64) {
	if !v.filter.match(u, p) {
		return
	}
	v.value.add(p, sign)
	if v.watchers > 0 && !v.touched {
		v.touched = true
		vs.touched = append(vs.touched, v)
	}
}

// notify wakes the watches of every view whose value an event (or an
// expiry) changed. Apply and Expire call it before they unlock.
func (vs *viewSet) notify() {
	for i, v := range vs.touched {
		v.touched = false
		if v.value != v.notified {
			v.notified = v.value
			close(v.changed)
			v.changed = make(chan struct{})
		}
		vs.touched[i] = nil
	}
	vs.touched = vs.touched[:0]
}

// newView compiles f for t (interning its ids, so that the view follows
// users who join them later), computes its value and keeps it.
func (t *tenant) newView(key string, f *Filter, m masks, limit int) *view {
	c, _ := t.compile(f, m, true)
	v := &view{key: key, filter: c, anchor: -1}
	for d, ids := range c.ids {
		if ids != nil && (v.anchor < 0 || len(ids) < len(c.ids[v.anchor])) {
			v.anchor = d
		}
	}
	t.eachMatch(&c, func(_ ref, p point) { v.value.add(p, 1) })
	v.notified = v.value
	t.views.add(v, limit)
	return v
}
