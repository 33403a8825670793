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
	// pending holds, per dimension, the names of a watch's filter that no
	// event had named yet, sorted. They are kept here, not interned, so
	// that they cost nothing once the watch ends; the first event naming
	// one moves it into filter.ids (viewSet.resolve).
	pending [numDims][]string
	value   Indicator
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
	pending    [numDims]map[string][]*view // by pending name
	touched    []*view                     // views whose value an event changed, for notify
	tick       atomic.Uint64
}

// transient reports a view that lives only while watched: it names ids no
// event may ever name (pending ones, or user ids, which are not interned),
// and no query reads it (queries resolve names first and answer userIds
// from the users).
func (v *view) transient() bool {
	if v.filter.users != nil {
		return true
	}
	for _, names := range v.pending {
		if len(names) > 0 {
			return true
		}
	}
	return false
}

// setAnchor anchors v at its constrained dimension with the fewest known
// ids: one with none is visited by no event, as no user can match it yet.
func (v *view) setAnchor() {
	v.anchor = -1
	for d, ids := range v.filter.ids {
		if ids != nil && (v.anchor < 0 || len(ids) < len(v.filter.ids[v.anchor])) {
			v.anchor = d
		}
	}
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
	vs.index(v)
	for d, names := range v.pending {
		if len(names) > 0 && vs.pending[d] == nil {
			vs.pending[d] = make(map[string][]*view)
		}
		for _, name := range names {
			vs.pending[d][name] = append(vs.pending[d][name], v)
		}
	}
}

// remove forgets the view at index i of the list.
func (vs *viewSet) remove(i int) {
	v := vs.list[i]
	vs.unkey(v)
	vs.list = deleteSwap(vs.list, i)
	vs.unindex(v)
	for d, names := range v.pending {
		for _, name := range names {
			unlist(vs.pending[d], name, v)
		}
	}
}

// drop forgets v.
func (vs *viewSet) drop(v *view) { vs.remove(slices.Index(vs.list, v)) }

// index lists v where the events that may change it look: under the ids of
// its anchor, else under its user ids, else with the views every event
// visits.
func (vs *viewSet) index(v *view) {
	switch {
	case v.anchor >= 0:
		idx := &vs.anchored[v.anchor]
		if *idx == nil {
			*idx = make(map[uint32][]*view)
		}
		for _, id := range v.filter.ids[v.anchor] {
			(*idx)[id] = append((*idx)[id], v)
		}
	case v.filter.users != nil:
		if vs.byUser == nil {
			vs.byUser = make(map[string][]*view)
		}
		for _, id := range v.filter.users {
			vs.byUser[id] = append(vs.byUser[id], v)
		}
	default:
		vs.unanchored = append(vs.unanchored, v)
	}
}

// unindex undoes index.
func (vs *viewSet) unindex(v *view) {
	switch {
	case v.anchor >= 0:
		for _, id := range v.filter.ids[v.anchor] {
			unlist(vs.anchored[v.anchor], id, v)
		}
	case v.filter.users != nil:
		for _, id := range v.filter.users {
			unlist(vs.byUser, id, v)
		}
	default:
		vs.unanchored = deleteSwap(vs.unanchored, slices.Index(vs.unanchored, v))
	}
}

// unlist removes v from the list of k in m, and the list once empty.
func unlist[K comparable](m map[K][]*view, k K, v *view) {
	if list := deleteSwap(m[k], slices.Index(m[k], v)); len(list) == 0 {
		delete(m, k)
	} else {
		m[k] = list
	}
}

// resolve moves name, which an event has just interned as id in dimension
// d, from the pending names of the views waiting for it into their ids.
// setIDs calls it before the event's user is counted; as no user has the
// id yet, no view's value changes, only its key and where it is indexed.
func (vs *viewSet) resolve(d int, name string, id uint32) {
	waiting := vs.pending[d][name]
	if waiting == nil {
		return
	}
	delete(vs.pending[d], name)
	for _, v := range waiting {
		vs.unindex(v)
		i, _ := slices.BinarySearch(v.pending[d], name)
		v.pending[d] = slices.Delete(v.pending[d], i, i+1)
		// Ids are handed out in order: the new one sorts last.
		v.filter.ids[d] = append(v.filter.ids[d], id)
		v.setAnchor()
		vs.index(v)
		vs.unkey(v)
		v.key = string(appendKey(nil, &v.filter, &v.pending))
		// Another view may have that key already (a query's, of the same
		// ids): equal filters, equal values; the first keeps the key.
		if _, taken := vs.byKey[v.key]; !taken {
			vs.byKey[v.key] = v
		}
	}
}

// unkey forgets the key of v, unless another view holds it.
func (vs *viewSet) unkey(v *view) {
	if vs.byKey[v.key] == v {
		delete(vs.byKey, v.key)
	}
}

// deleteSwap removes s[i] by moving the last element into its place.
func deleteSwap(s []*view, i int) []*view {
	last := len(s) - 1
	s[i] = s[last]
	s[last] = nil
	return s[:last]
}

// countUser adds or removes an online user's contribution to every view it
// matches. It visits only the views anchored at one of the user's ids (a
// view at the first of the user's ids it is anchored at), those naming the
// user, and the views with neither.
func (vs *viewSet) countUser(u ref, p point, sign int64) {
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

// newView keeps a view of c, which it takes, and of the pending names of a
// watch's filter, and computes its value.
func (t *tenant) newView(key string, c compiled, pending [numDims][]string, limit int) *view {
	v := &view{key: key, filter: c, pending: pending}
	v.setAnchor()
	t.eachMatch(&c, func(_ uint32, _ ref, p point) { v.value.add(p, 1) })
	v.notified = v.value
	t.views.add(v, limit)
	return v
}
