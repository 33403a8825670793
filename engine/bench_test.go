package engine_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// The benchmark population: each user is in 3 of 1000 groups, 1 of 50
// projects and 2 of 200 routing groups, 90% connected, random statuses.
var (
	benchGroups   = names("g", 1000)
	benchProjects = names("p", 50)
	benchRouting  = names("r", 200)
)

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(prefix, i)
	}
	return out
}

const benchTS = int64(1_700_000_000_000_000_000)

// populate logs n users of tenant in, reusing one event so that only what
// the engine keeps is allocated.
func populate(e *engine.Engine, tenant string, n int) {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	ev := presence.Event{GroupIDs: make([]string, 3), ProjectIDs: make([]string, 1), RoutingGroupIDs: make([]string, 2)}
	for i := range n {
		ev.Type = presence.Login
		if r.IntN(10) == 0 {
			ev.Type = presence.Logout
		}
		ev.UserID = fmt.Sprint("user-", i)
		ev.TS = benchTS
		ev.Fields = presence.HasTS | presence.HasRole | presence.HasGroups | presence.HasProjects |
			presence.HasRoutingGroups | presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots
		ev.Role = presence.Role(1 + r.IntN(presence.NumRoles-1))
		g := r.IntN(len(benchGroups) - 2)
		copy(ev.GroupIDs, benchGroups[g:g+3])
		ev.ProjectIDs[0] = benchProjects[r.IntN(len(benchProjects))]
		rg := r.IntN(len(benchRouting) - 1)
		copy(ev.RoutingGroupIDs, benchRouting[rg:rg+2])
		ev.Availability = presence.Status(r.IntN(presence.NumStatuses))
		ev.Chat = presence.Status(r.IntN(presence.NumStatuses))
		ev.MaxSlots = uint16(1 + r.IntN(5))
		ev.CurrentSlots = uint16(r.IntN(6))
		e.Apply(tenant, &ev)
	}
}

var (
	benchEnginesMu sync.Mutex
	benchEngines   = map[int]*engine.Engine{}
)

// populated returns an engine of n users of tenant "t", built once per n.
func populated(b *testing.B, n int) *engine.Engine {
	benchEnginesMu.Lock()
	defer benchEnginesMu.Unlock()
	if e := benchEngines[n]; e != nil {
		return e
	}
	e := mustEngine(b, engine.Config{})
	populate(e, "t", n)
	benchEngines[n] = e
	return e
}

// statusAndSlots returns events changing the status or the slots of random
// existing users; the caller bumps TS so that each one applies.
func statusAndSlots(n, count int, seed uint64) []presence.Event {
	r := rand.New(rand.NewPCG(seed, 3))
	evs := make([]presence.Event, count)
	for i := range evs {
		ev := &evs[i]
		ev.UserID = fmt.Sprint("user-", r.IntN(n))
		ev.Fields = presence.HasTS
		if i%2 == 0 {
			ev.Type = presence.StatusChange
			ev.Fields |= presence.HasAvailability | presence.HasChat
			ev.Availability, ev.Chat = presence.Status(r.IntN(3)), presence.Status(r.IntN(3))
		} else {
			ev.Type = presence.Slots
			ev.Fields |= presence.HasMaxSlots | presence.HasCurrentSlots
			ev.MaxSlots, ev.CurrentSlots = uint16(1+r.IntN(5)), uint16(r.IntN(6))
		}
	}
	return evs
}

// BenchmarkApply applies status and slots events to the existing users of a
// tenant of 100k.
func BenchmarkApply(b *testing.B) {
	const n = 100_000
	// With views=256, the tenant keeps 256 class-c views (pairs of groups and
	// a project) that every event must keep up to date.
	for _, views := range []int{0, 256} {
		b.Run(fmt.Sprintf("serial/views=%d", views), func(b *testing.B) {
			e := mustEngine(b, engine.Config{})
			populate(e, "t", n)
			for g := range views {
				e.Query("t", &engine.Filter{GroupIDs: benchGroups[g : g+2], ProjectIDs: []string{"p7"}})
			}
			evs := statusAndSlots(n, 1<<14, 1)
			ts := benchTS
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev := &evs[i&(len(evs)-1)]
				ts++
				ev.TS = ts
				e.Apply("t", ev)
			}
		})
	}
	// In parallel, one tenant (every event under one shard lock) and 64
	// tenants (spread over the shards).
	for _, tenants := range []int{1, 64} {
		b.Run(fmt.Sprintf("parallel/tenants=%d", tenants), func(b *testing.B) {
			e := mustEngine(b, engine.Config{})
			for t := range tenants {
				populate(e, fmt.Sprint("t", t), n/tenants)
			}
			// One event set per goroutine (each bumps its events' TS), made
			// before the timer starts.
			sets := make([][]presence.Event, 4*runtime.GOMAXPROCS(0))
			for i := range sets {
				sets[i] = statusAndSlots(n/tenants, 1<<12, uint64(i))
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				s := next.Add(1) - 1
				evs := sets[s]
				tenant, ts := fmt.Sprint("t", s%uint64(tenants)), benchTS
				for i := 0; pb.Next(); i++ {
					ev := &evs[i&(len(evs)-1)]
					ts++
					ev.TS = ts
					e.Apply(tenant, ev)
				}
			})
		})
	}
}

var benchSizes = []int{1_000, 100_000, 1_000_000}

// BenchmarkQuery measures each query class at 1k, 100k and 1M users.
func BenchmarkQuery(b *testing.B) {
	classA := &engine.Filter{
		Roles:            []presence.Role{presence.Operator, presence.Manager},
		ChatAvailability: []presence.Status{presence.Available, presence.Busy},
		GroupIDs:         []string{"g500"},
	}
	classC := &engine.Filter{GroupIDs: []string{"g1", "g2", "g3"}, ProjectIDs: []string{"p1"}}
	for _, n := range benchSizes {
		e := populated(b, n)
		classB := &engine.Filter{UserIDs: names("user-", 10)}
		b.Run(fmt.Sprintf("class=a/users=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Query("t", classA)
			}
		})
		b.Run(fmt.Sprintf("class=b/users=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Query("t", classB)
			}
		})
		b.Run(fmt.Sprintf("class=c-again/users=%d", n), func(b *testing.B) {
			e.Query("t", classC)
			b.ReportAllocs()
			for b.Loop() {
				e.Query("t", classC)
			}
		})
		b.Run(fmt.Sprintf("class=c-first/users=%d", n), func(b *testing.B) {
			// A new pair of groups each time; with 1000 groups and 256 views
			// per tenant, every query builds its view.
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				g := i % (len(benchGroups) - 1)
				e.Query("t", &engine.Filter{GroupIDs: benchGroups[g : g+2], ProjectIDs: []string{"p7"}})
				i++
			}
		})
	}
}

// BenchmarkQueryScan is the plain baseline: the class-a filter answered by
// scanning every user of a map under a read lock.
func BenchmarkQueryScan(b *testing.B) {
	type row struct {
		role       presence.Role
		chat       presence.Status
		groups     []string
		online     bool
		maxS, curS int64
	}
	for _, n := range benchSizes {
		var mu sync.RWMutex
		users := make(map[string]*row, n)
		r := rand.New(rand.NewPCG(uint64(n), 1))
		for i := range n {
			g := r.IntN(len(benchGroups) - 2)
			users[fmt.Sprint("user-", i)] = &row{
				role: presence.Role(1 + r.IntN(5)), chat: presence.Status(r.IntN(3)),
				groups: benchGroups[g : g+3], online: r.IntN(10) > 0, maxS: 3, curS: 1,
			}
		}
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var ind engine.Indicator
				mu.RLock()
				for _, u := range users {
					if !u.online || (u.role != presence.Operator && u.role != presence.Manager) || !u.chat.InProduction() {
						continue
					}
					in := false
					for _, g := range u.groups {
						in = in || g == "g500"
					}
					if in {
						ind.Connected++
						ind.InProduction++
						ind.MaxSlots += u.maxS
						ind.CurrentSlots += u.curS
					}
				}
				mu.RUnlock()
			}
		})
	}
}

// BenchmarkMemory reports the heap bytes per tracked user with 1M users.
func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		e := mustEngine(b, engine.Config{})
		populate(e, "t", n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/user")
		runtime.KeepAlive(e)
	}
}

// BenchmarkGCMark times a full forced collection with 1M users tracked. A
// cycle's mark work grows with the heap's objects and pointers, and while it
// runs it takes CPU from queries: this is what the per-user layout should keep
// small. heap-objects is counted after a collection, so it is what is live.
func BenchmarkGCMark(b *testing.B) {
	e := populated(b, 1_000_000)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for b.Loop() {
		runtime.GC()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/GC")
	b.ReportMetric(float64(ms.HeapObjects), "heap-objects")
	runtime.KeepAlive(e)
}

// BenchmarkCubeSum justifies sharding by tenant: with shards chosen by tenant
// and user, a class-a query would sum one cube per shard (and every id would
// cost a cube per shard in memory). It models that query as 64 class-a
// lookups (lock, find, sum) against the one this engine does, and reports the
// counter memory per id of each layout.
func BenchmarkCubeSum(b *testing.B) {
	e := populated(b, 100_000)
	f := &engine.Filter{ChatAvailability: []presence.Status{presence.Available, presence.Busy}, GroupIDs: []string{"g500"}}
	for _, shards := range []int{1, 64} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for range shards {
					e.Query("t", f)
				}
			}
			b.ReportMetric(float64(shards*engine.CubeBytes), "counter-B/id")
		})
	}
}

// BenchmarkUsers measures a page of 100 connectedUsers in each order, at 1k,
// 100k and 1M users, for a filter of each class: a (tenant-wide: none, or
// roles and chat statuses; one group with them), b (10 userIds), c (three
// groups and a project). The page starts after a cursor in the middle of
// the result.
func BenchmarkUsers(b *testing.B) {
	roles := []presence.Role{presence.Operator, presence.Manager}
	chat := []presence.Status{presence.Available, presence.Busy}
	filters := []struct {
		name string
		f    *engine.Filter
	}{
		{"a-none", &engine.Filter{}},
		{"a-statuses", &engine.Filter{Roles: roles, ChatAvailability: chat}},
		{"a-group", &engine.Filter{Roles: roles, ChatAvailability: chat, GroupIDs: []string{"g500"}}},
		{"b", &engine.Filter{UserIDs: names("user-", 10)}},
		{"c", &engine.Filter{GroupIDs: []string{"g1", "g2", "g3"}, ProjectIDs: []string{"p1"}}},
	}
	for _, n := range benchSizes {
		e := populated(b, n)
		for _, order := range []engine.Order{engine.ByUserID, engine.ByConnectedAt, engine.ByChatUpdatedAt} {
			for _, f := range filters {
				// The cursor of the middle user of the result.
				all, err := e.Users("t", f.f, engine.Page{Order: order, First: 1})
				if err != nil {
					b.Fatal(err)
				}
				var after *engine.Key
				if mid := int(all.Total / 2); mid > 0 {
					p, _ := e.Users("t", f.f, engine.Page{Order: order, First: min(mid, 1000)})
					after = &p.Users[len(p.Users)-1].Key
				}
				b.Run(fmt.Sprintf("order=%d/class=%s/users=%d", order, f.name, n), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := e.Users("t", f.f, engine.Page{Order: order, First: 100, After: after}); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkUsersWalk pages through every connected user of a 100k-user
// tenant (about 90k), 100 and 1000 at a time: one op is the whole walk.
func BenchmarkUsersWalk(b *testing.B) {
	e := populated(b, 100_000)
	for _, order := range []engine.Order{engine.ByUserID, engine.ByConnectedAt, engine.ByChatUpdatedAt} {
		for _, first := range []int{100, 1000} {
			b.Run(fmt.Sprintf("order=%d/first=%d", order, first), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var after *engine.Key
					seen := 0
					for {
						p, err := e.Users("t", &engine.Filter{}, engine.Page{Order: order, First: first, After: after})
						if err != nil {
							b.Fatal(err)
						}
						seen += len(p.Users)
						if !p.More {
							break
						}
						after = &p.Users[len(p.Users)-1].Key
					}
					if seen < 80_000 {
						b.Fatalf("walked %d users", seen)
					}
				}
			})
		}
	}
}
