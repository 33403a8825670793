package engine

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/presence"
)

// numShards is a power of two so that the shard is a mask of the hash.
//
// Shards are chosen by tenant, not by tenant and user: then every counter of
// a tenant lives in one shard, a query reads one cube instead of summing one
// per shard, and a tenant's counters cost one cube per id instead of one per
// id per shard (BenchmarkCubeSum and the note in BENCHMARKS.md measure both).
// The price is that one tenant's events are applied under one lock, which
// suits a stream applied in order by one consumer.
const numShards = 64

// Engine is the sharded presence store. Create it with New.
type Engine struct {
	ttl      int64 // session TTL in nanoseconds, 0: off
	late     int64 // Config.MaxLate in nanoseconds
	maxViews int
	now      func() time.Time
	seed     maphash.Seed

	shards     [numShards]shard
	resets     atomic.Uint64 // Resets begun: a Cut taken before one is void
	viewHits   atomic.Uint64
	viewMisses atomic.Uint64
}

// shard holds the tenants whose name hashes to it. Lock order: a shard's lock
// is the only lock taken; no code holds two.
type shard struct {
	mu      sync.RWMutex
	tenants map[string]*tenant
	_       [64 - 32]byte // keep two shards' locks off one cache line
}

// New returns an empty engine configured by cfg, with defaults for zero fields.
func New(cfg Config) (*Engine, error) {
	if cfg.SessionTTL < 0 {
		return nil, fmt.Errorf("%w: SessionTTL %v is negative", ErrConfig, cfg.SessionTTL)
	}
	if cfg.MaxLate < 0 {
		return nil, fmt.Errorf("%w: MaxLate %v is negative", ErrConfig, cfg.MaxLate)
	}
	if cfg.MaxViews < 0 {
		return nil, fmt.Errorf("%w: MaxViews %d is negative", ErrConfig, cfg.MaxViews)
	}
	e := &Engine{ttl: int64(cfg.SessionTTL), late: int64(cfg.MaxLate), maxViews: cfg.MaxViews, now: cfg.Now, seed: maphash.MakeSeed()}
	if e.maxViews == 0 {
		e.maxViews = 256
	}
	if e.now == nil {
		e.now = time.Now
	}
	for i := range e.shards {
		e.shards[i].tenants = make(map[string]*tenant)
	}
	return e, nil
}

func (e *Engine) shard(tenant string) *shard {
	return &e.shards[maphash.String(e.seed, tenant)&(numShards-1)]
}

// tenant returns the tenant called name, creating it. The caller holds the
// shard's write lock.
func (s *shard) tenant(name string) *tenant {
	t := s.tenants[name]
	if t == nil {
		t = newTenant(name)
		s.tenants[t.name] = t
	}
	return t
}

const setFields = presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups

// Apply merges one event of tenant into the user's state and, in the same
// critical section, moves the user's contribution in every counter and view.
// The event must be valid (presence.Decode or Validate) with its time resolved.
func (e *Engine) Apply(tenant string, ev *presence.Event) Result {
	x := presence.Expiry{TTL: e.ttl, Late: e.late}
	if e.ttl > 0 {
		x.Now = e.now().UnixNano()
	}
	s := e.shard(tenant)
	s.mu.Lock()
	t := s.tenant(tenant)
	i, ok := t.users[ev.UserID]
	if !ok {
		id := clone(&t.ids, ev.UserID) // the event's strings alias its message buffer
		i = t.add(user{id: id})
		t.users[id] = i
	}
	u := t.ref(i)
	if len(t.cuts) > 0 {
		t.keep(i, &u.state)
	}

	wasOnline, before, keys := u.state.Online(), pointOf(&u.state), clocksOf(&u.state)
	var spans []presence.Span
	hadGaps := u.state.Gaps
	if hadGaps {
		spans = t.spans[i]
	}
	carried, set := u.state.Apply(ev, x, &spans)
	switch {
	case u.state.Gaps:
		if t.spans == nil {
			t.spans = make(map[uint32][]presence.Span)
		}
		t.spans[i] = spans
	case hadGaps:
		delete(t.spans, i)
	}
	isOnline, after := u.state.Online(), pointOf(&u.state)
	newIDs := set&setFields != 0 && !t.sameIDs(u, ev, set)

	switch {
	case wasOnline != isOnline || newIDs:
		if wasOnline {
			t.countUser(i, u, before, -1, true)
		}
		if newIDs {
			t.setIDs(&u, ev, set)
		}
		if isOnline {
			t.countUser(i, u, after, 1, true)
		}
	case isOnline && before != after:
		t.countUser(i, u, before, -1, false)
		t.countUser(i, u, after, 1, false)
	}
	t.reorder(i, u.id, wasOnline, isOnline, keys, clocksOf(&u.state))
	t.views.notify()
	s.mu.Unlock()

	if carried != 0 && set == 0 {
		return Stale
	}
	return Applied
}

// sameIDs reports whether every id set that ev replaces holds the ids the user
// already has, so that a repeated profile does not churn member lists.
func (t *tenant) sameIDs(u ref, ev *presence.Event, set presence.Fields) bool {
	lists := [numDims][]string{ev.GroupIDs, ev.ProjectIDs, ev.RoutingGroupIDs}
	for d, f := range [numDims]presence.Fields{presence.HasGroups, presence.HasProjects, presence.HasRoutingGroups} {
		if set&f == 0 {
			continue
		}
		have := u.dimIDs(d)
		if len(have) != len(lists[d]) {
			return false
		}
		for _, name := range lists[d] {
			id, ok := t.dims[d].intern(name, false)
			if !ok || !slices.Contains(have, id) {
				return false
			}
		}
	}
	return true
}

// Query returns the indicator of tenant's connected users that match f. Its
// cost does not grow with the number of users: a filter with no id, or one id
// of one dimension, sums at most 54 counter cells; userIds costs one lookup
// per id; any other filter is answered by a view, built from the smallest
// candidate set on first use and kept up to date by Apply after that.
func (e *Engine) Query(tenant string, f *Filter) Indicator {
	var ind Indicator
	m := f.masks()
	if f.matchesNothing(m) {
		return ind
	}
	s := e.shard(tenant)
	s.mu.RLock()
	t := s.tenants[tenant]
	if t == nil {
		s.mu.RUnlock()
		return ind
	}
	if f.UserIDs != nil {
		t.queryUsers(f, m, &ind)
		s.mu.RUnlock()
		return ind
	}
	if d, name, ok := f.single(); ok {
		t.queryCube(d, name, m, &ind)
		s.mu.RUnlock()
		return ind
	}

	// The view is keyed by the ids the tenant knows, never by names: a
	// name no event gave costs nothing, and cannot match anyone.
	var idBuf [64]uint32
	var keyBuf [256]byte
	c := t.resolve(f, m, idBuf[:0], nil)
	if c.none() {
		s.mu.RUnlock()
		return ind
	}
	key := appendKey(keyBuf[:0], &c, nil)
	if v := t.views.get(key); v != nil {
		ind = v.value
		s.mu.RUnlock()
		e.viewHits.Add(1)
		return ind
	}
	s.mu.RUnlock()

	e.viewMisses.Add(1)
	s.mu.Lock()
	// Resolve again: while we waited for the lock, events may have named
	// more of the ids, the tenant may have gone with its last watch, or
	// Reset emptied it.
	if t = s.tenants[tenant]; t == nil {
		s.mu.Unlock()
		return ind
	}
	owned := t.resolve(f, m, nil, nil) // kept by the view: not the scratch
	if owned.none() {
		s.mu.Unlock()
		return ind
	}
	key = appendKey(keyBuf[:0], &owned, nil)
	if v := t.views.get(key); v != nil { // built while we waited for the lock
		ind = v.value
		s.mu.Unlock()
		return ind
	}
	// The view is built a chunk of candidates at a time, Apply going on
	// between two, and kept once complete.
	v := &view{key: string(key), filter: owned}
	keep := func() {
		if w := t.views.get(key); w != nil { // another ask built it meanwhile
			ind = w.value
			return
		}
		v.notified = v.value
		t.views.add(v, e.maxViews)
		ind = v.value
	}
	if !t.buildView(s, v, keep) {
		return e.Query(tenant, f) // a Reset voided the build: ask the new state
	}
	return ind
}

// queryCube answers a filter on at most one id (class a): d is -1 for none.
func (t *tenant) queryCube(d int, name string, m masks, ind *Indicator) {
	if d < 0 {
		t.total.sum(m, ind)
		return
	}
	id, ok := t.dims[d].intern(name, false)
	if !ok || t.dims[d].cubes[id] == nil {
		return
	}
	t.dims[d].cubes[id].sum(m, ind)
}

// queryUsers answers a filter with userIds (class b), one lookup per id.
func (t *tenant) queryUsers(f *Filter, m masks, ind *Indicator) {
	if c := t.resolve(f, m, nil, nil); !c.none() {
		t.eachMatch(&c, func(_ uint32, _ ref, p point) { ind.add(p, 1) })
	}
}

// Expire ends the sessions whose newest event is older than the session TTL
// at now (contract section 1.3) and returns how many it ended. The service
// calls it on a timer; with no TTL it does nothing. It visits every user, a
// chunk of the storage (chunkSize users, ~80 µs at 1M users) per hold of
// the shard's write lock, so that Apply and queries wait no longer than
// that (BenchmarkStall/expire). Each user is expired as the whole pass would
// at now; an Apply between two chunks is as it would be before or after it.
func (e *Engine) Expire(now time.Time) int {
	if e.ttl == 0 {
		return 0
	}
	ns, n := now.UnixNano(), 0
	var tenants []*tenant
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.RLock()
		tenants = tenants[:0]
		for _, t := range s.tenants {
			tenants = append(tenants, t)
		}
		s.mu.RUnlock()
		for _, t := range tenants {
			n += t.expire(s, e.ttl, ns)
		}
	}
	return n
}

// expire is Expire for tenant t of shard s.
func (t *tenant) expire(s *shard, ttl, ns int64) int {
	n := 0
	for ci := 0; ; ci++ {
		s.mu.Lock()
		held := time.Now()
		// Gone with a Reset, or done. (A Reset of a watched tenant keeps
		// it, with new users: expiring them is as right as any.)
		if s.tenants[t.name] != t || ci >= len(t.chunks) {
			s.mu.Unlock()
			return n
		}
		ended := 0
		for j := range t.chunks[ci] {
			i, u := uint32(ci<<chunkBits+j), &t.chunks[ci][j]
			if !u.state.Online() {
				continue
			}
			// countUser reads the point and ids, which expiry leaves alone.
			was := u.state
			if p := pointOf(&u.state); u.state.Expire(ttl, ns) {
				if len(t.cuts) > 0 {
					t.keep(i, &was)
				}
				t.countUser(i, t.ref(i), p, -1, true)
				t.unorder(i, u.id, clocksOf(&u.state))
				ended++
			}
		}
		if ended > 0 {
			t.views.notify()
		}
		s.mu.Unlock()
		n += ended
		rest(held)
	}
}

// Stats returns a copy of the engine's size and health.
func (e *Engine) Stats() Stats {
	st := Stats{ViewHits: e.viewHits.Load(), ViewMisses: e.viewMisses.Load()}
	all := masks{allRoles, allStatuses, allStatuses}
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.RLock()
		for _, t := range s.tenants {
			st.Views += len(t.views.list)
			if len(t.users) == 0 { // only watched: not a tenant yet
				continue
			}
			ts := TenantStats{Tenant: t.name, Users: len(t.users)}
			t.total.sum(all, &ts.Total)
			st.PerTenant = append(st.PerTenant, ts)
			st.Users += len(t.users)
			for d := range t.dims {
				st.IDs += len(t.dims[d].names)
			}
		}
		s.mu.RUnlock()
	}
	st.Tenants = len(st.PerTenant)
	slices.SortFunc(st.PerTenant, func(a, b TenantStats) int { return strings.Compare(a.Tenant, b.Tenant) })
	return st
}

// Reset empties the engine as if it were new, for when the stream it follows
// must be read again from its start. Open watches go on: each value becomes
// zero, its watchers are woken, and it follows the events applied after the
// reset, its views waiting for their ids' names again as a watch made before
// any event does. The view hit and miss totals are the process's and go on.
//
// It locks one shard at a time, for as long as it takes to drop the shard's
// tenants (their memory is the collector's to free) and to re-key their
// watched views: a few operations per watched view and id. The writer calls
// it between two events; a query meanwhile may see one tenant emptied and
// another not yet. A Cut not written yet fails: it is of the state before.
func (e *Engine) Reset() {
	e.resets.Add(1)
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for name, t := range s.tenants {
			if t.watches == 0 {
				t.abortScans()
				delete(s.tenants, name)
			} else {
				t.reset(e.maxViews)
			}
		}
		s.mu.Unlock()
	}
}
