package engine

import "time"

// scanChunk is how many candidates a long read visits per critical section:
// about a millisecond of the shard's read lock at 1M users, whose visits
// miss the cache (4096 took up to 4 ms, BenchmarkStall/view-first), so that
// an Apply waits no longer. A read of no more candidates is done in one.
const scanChunk = 1024

// rest pauses a long read after a chunk for as long as the chunk held the
// lock. Without it, an Apply that waited for the chunk applies one event
// and, when it comes back for the next, finds the read holding the lock
// again: one event per chunk, a backlog that grows for the whole read
// (BenchmarkStall: 1M users, events up to 0.3 s late with each chunk under
// a few ms). Resting as long as it held the lock, the read leaves the
// writers half of the time, which a backlog of events catches up in.
func rest(since time.Time) { time.Sleep(time.Since(since)) }

// afterScanChunk, when set (by tests), is called between two chunks of a
// scan, with no lock held.
var afterScanChunk func()

// scan is a long read of a tenant's online users, the first build of a
// view or a breakdown over many candidates, done a chunk at a time with the
// shard's lock released between two, while Apply goes on. It gives what a
// read in one critical section at its end would give: Apply keeps what it
// has read right.
//
// A user is visited once, by the scan or by Apply, whichever comes first.
// The scan adds the user's contribution as it is then. Apply, the first
// time it changes the contribution of a user not visited yet, marks it
// visited and leaves out the removal of its old contribution, which the
// scan has not added; after that, and for users new since the scan began,
// it passes every change on to add.
type scan struct {
	add     func(u ref, p point, sign int64) // adds (1) or removes (-1) an online user's contribution
	visited []uint64                         // a bit per user below users
	users   uint32                           // the tenant's users when the scan began
	aborted bool                             // the tenant was reset: what was read is void
}

// touch passes a change of user i's contribution on to the scan. The caller
// holds the shard's write lock.
func (sc *scan) touch(i uint32, u ref, p point, sign int64) {
	if i < sc.users {
		w, bit := i/64, uint64(1)<<(i%64)
		if sc.visited[w]&bit == 0 {
			sc.visited[w] |= bit
			if sign < 0 {
				return
			}
			// A first change that adds: the user was not online before,
			// and contributed nothing.
		}
	}
	sc.add(u, p, sign)
}

// candidates returns where the users that may match c are, c naming no
// user: the online members of its ids in dimension best, the one whose
// member lists are shortest in total (n members, a user in several ids
// counted in each); every user (n of them) when best is -1.
func (t *tenant) candidates(c *compiled) (best int, n int) {
	best = -1
	for d, ids := range c.ids {
		if ids == nil {
			continue
		}
		k := 0
		for _, id := range ids {
			k += len(t.dims[d].members[id])
		}
		if best < 0 || k < n {
			best, n = d, k
		}
	}
	if best < 0 {
		return best, len(t.users)
	}
	return best, n
}

// scanMatches calls add(u, p, 1) for every online user of t that matches c,
// and then done, as one critical section at the end would; add gets every
// change Apply makes meanwhile (see scan). The caller holds s's write lock,
// which scanMatches releases: it holds the read lock for scanChunk
// candidates at a time, and the write lock again for done. It reports false,
// without calling done, when a Reset voided the read.
func (t *tenant) scanMatches(s *shard, c *compiled, add func(u ref, p point, sign int64), done func()) bool {
	if c.users != nil {
		t.eachMatch(c, func(_ uint32, u ref, p point) { add(u, p, 1) })
		done()
		s.mu.Unlock()
		return true
	}
	best, n := t.candidates(c)
	if n <= scanChunk {
		t.eachMatch(c, func(_ uint32, u ref, p point) { add(u, p, 1) })
		done()
		s.mu.Unlock()
		return true
	}
	users := uint32(len(t.users))
	sc := &scan{add: add, visited: make([]uint64, (users+63)/64), users: users}
	// The candidates as they are now: the member lists change under Apply
	// (a removal moves the last member), so they are copied, a memmove of 4
	// bytes a candidate. A user that becomes a candidate later is changed by
	// Apply, which visits it.
	var list []uint32
	if best >= 0 {
		list = make([]uint32, 0, n)
		for _, id := range c.ids[best] {
			list = append(list, t.dims[best].members[id]...)
		}
	}
	t.scans = append(t.scans, sc)
	s.mu.Unlock()

	for from := 0; from < n; from += scanChunk {
		// The read lock: the scan's own fields are written only under the
		// write lock (Apply) or by this goroutine.
		held := time.Now()
		s.mu.RLock()
		if sc.aborted {
			s.mu.RUnlock()
			return false
		}
		for k := from; k < min(from+scanChunk, n); k++ {
			i := uint32(k)
			if list != nil {
				i = list[k]
			}
			w, bit := i/64, uint64(1)<<(i%64)
			if sc.visited[w]&bit != 0 {
				continue
			}
			sc.visited[w] |= bit
			if u := t.ref(i); u.state.Online() {
				if p := pointOf(&u.state); c.match(u, p) {
					add(u, p, 1)
				}
			}
		}
		s.mu.RUnlock()
		rest(held)
		if afterScanChunk != nil {
			afterScanChunk()
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if sc.aborted {
		return false
	}
	for k, x := range t.scans {
		if x == sc {
			t.scans = append(t.scans[:k], t.scans[k+1:]...)
			break
		}
	}
	done()
	return true
}

// buildView fills the value of v, a view not kept yet, from the users
// matching its filter, as scanMatches reads them (a chunk at a time, Apply's
// changes passed on), then calls keep under the write lock. The caller
// holds s's write lock, which buildView releases. It reports false, without
// calling keep, when a Reset voided the build.
func (t *tenant) buildView(s *shard, v *view, keep func()) bool {
	v.setAnchor()
	count := func(u ref, p point, sign int64) {
		if v.filter.match(u, p) {
			v.value.add(p, sign)
		}
	}
	return t.scanMatches(s, &v.filter, count, keep)
}

// abortScans voids the scans of t, whose users a Reset drops.
func (t *tenant) abortScans() {
	for _, sc := range t.scans {
		sc.aborted = true
	}
	t.scans = nil
}
