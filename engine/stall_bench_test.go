package engine_test

import (
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// The load BenchmarkStall runs beside each long operation: events at the
// soak's rate, one ingest goroutine, and class-a queries.
const (
	stallEventEvery = 20 * time.Microsecond  // 50,000 events/s
	stallQueryEvery = 500 * time.Microsecond // 2,000 queries/s
)

// stallLoad applies events to tenant "t" of e on a schedule, under commit as
// the ingester does, and asks a class-a query on another, until stop is
// closed. It records how late each event became visible (Apply returned)
// and each query was answered, against the time it was due: a goroutine
// that falls behind its schedule carries its lateness on, as a consumer
// with a backlog does.
//
// calls holds how long each Apply (with the commit lock) and each query call
// took, the wait for a lock included: what the engine makes wait, apart
// from what a busy machine's scheduler adds to the lateness.
type stallLoad struct {
	events, queries []time.Duration
	calls           []time.Duration
}

func (l *stallLoad) run(e *engine.Engine, n int, commit *sync.Mutex, stop <-chan struct{}) {
	var wg sync.WaitGroup
	wg.Go(func() {
		evs := statusAndSlots(n, 1<<14, 99)
		ts := benchTS + int64(time.Hour)
		start := time.Now()
		for k := 0; ; k++ {
			due := start.Add(time.Duration(k) * stallEventEvery)
			if d := time.Until(due); d > 0 {
				select {
				case <-stop:
					return
				case <-time.After(d):
				}
			} else if k%64 == 0 {
				select {
				case <-stop:
					return
				default:
				}
			}
			ev := &evs[k&(len(evs)-1)]
			ts++
			ev.TS = ts
			t0 := time.Now()
			commit.Lock()
			e.Apply("t", ev)
			commit.Unlock()
			l.calls = append(l.calls, time.Since(t0))
			l.events = append(l.events, max(0, time.Since(due)))
		}
	})
	wg.Go(func() {
		f := &engine.Filter{ChatAvailability: []presence.Status{presence.Available, presence.Busy}, GroupIDs: []string{"g500"}}
		start := time.Now()
		for k := 0; ; k++ {
			due := start.Add(time.Duration(k) * stallQueryEvery)
			select {
			case <-stop:
				return
			case <-time.After(time.Until(due)):
			}
			e.Query("t", f)
			l.queries = append(l.queries, max(0, time.Since(due)))
		}
	})
	wg.Wait()
}

// quantileMS returns the q-quantile of d in milliseconds.
func quantileMS(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond)
}

func maxMS(d []time.Duration) float64 { return quantileMS(d, 1) }

// stall runs op b.N times on the 1M-user engine while stallLoad runs, and
// reports op's own duration beside the longest an event and a query waited.
// op gets the commit lock the load applies under, as the ingester's. idle-*
// is the same load for as long with no op: what the machine itself adds.
func stall(b *testing.B, op func(e *engine.Engine, commit *sync.Mutex)) {
	stallOn(b, populated(b, stallUsers), op)
}

// stallUsers is the users of BenchmarkStall's engines, all of tenant "t".
const stallUsers = 1_000_000

// stallOn is stall on engine e.
func stallOn(b *testing.B, e *engine.Engine, op func(e *engine.Engine, commit *sync.Mutex)) {
	const n = stallUsers
	measure := func(work func(commit *sync.Mutex)) (took time.Duration, l stallLoad) {
		var commit sync.Mutex
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			l.run(e, n, &commit, stop)
			close(done)
		}()
		time.Sleep(50 * time.Millisecond) // the load under way
		t0 := time.Now()
		work(&commit)
		took = time.Since(t0)
		time.Sleep(50 * time.Millisecond) // a backlog drained
		close(stop)
		<-done
		return took, l
	}
	var ops time.Duration
	var all stallLoad
	b.ResetTimer()
	for range b.N {
		took, l := measure(func(commit *sync.Mutex) { op(e, commit) })
		ops += took
		all.events = append(all.events, l.events...)
		all.queries = append(all.queries, l.queries...)
		all.calls = append(all.calls, l.calls...)
	}
	b.StopTimer()
	idleFor := ops / time.Duration(b.N)
	_, idle := measure(func(*sync.Mutex) { time.Sleep(idleFor) })
	b.ReportMetric(float64(ops)/float64(b.N)/float64(time.Millisecond), "op-ms")
	b.ReportMetric(maxMS(all.events), "event-max-ms")
	b.ReportMetric(quantileMS(all.events, 0.999), "event-p999-ms")
	b.ReportMetric(maxMS(all.queries), "query-max-ms")
	b.ReportMetric(maxMS(all.calls), "apply-call-max-ms")
	b.ReportMetric(maxMS(idle.calls), "idle-apply-call-max-ms")
	b.ReportMetric(maxMS(idle.events), "idle-event-max-ms")
	b.ReportMetric(maxMS(idle.queries), "idle-query-max-ms")
	b.ReportMetric(0, "ns/op")

}

// wideFilter returns the next of 2,500 class-c filters that each match
// about half the users: 25 of the 50 projects and 100 to 199 of the 200
// routing groups. Each is new to the engine, so each is asked first.
func wideFilter() *engine.Filter {
	i := int(wideFilters.Add(1))
	p := i % (len(benchProjects) - 25)
	return &engine.Filter{ProjectIDs: benchProjects[p : p+25], RoutingGroupIDs: benchRouting[:100+i/25%100]}
}

var wideFilters atomic.Int64

// BenchmarkStall measures what the long operations make wait at 1M users:
// a snapshot (as the service takes it), the first ask of a class-c filter
// whose candidates are half the users, a breakdown over as many, first
// pages of connectedUsers and the first Watch of such filters, and a pass
// of Expire.
func BenchmarkStall(b *testing.B) {
	b.Run("snapshot", func(b *testing.B) {
		// As cluster's holder takes it: the cut under the commit lock,
		// the encoding after.
		stall(b, func(e *engine.Engine, commit *sync.Mutex) {
			commit.Lock()
			c := e.Cut()
			commit.Unlock()
			if err := c.Write(io.Discard, engine.SnapshotInfo{Sequence: 1}); err != nil {
				b.Error(err)
			}
		})
	})
	// The baseline: as long a burn of one core, touching no engine lock,
	// to tell what the machine's scheduler adds from what a lock makes
	// wait.
	b.Run("cpu-only", func(b *testing.B) {
		stall(b, func(*engine.Engine, *sync.Mutex) {
			buf := make([]byte, 1<<20)
			for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); {
				for i := range buf {
					buf[i] += byte(i)
				}
			}
		})
	})
	b.Run("view-first", func(b *testing.B) {
		stall(b, func(e *engine.Engine, _ *sync.Mutex) {
			e.Query("t", wideFilter())
		})
	})
	b.Run("breakdown", func(b *testing.B) {
		stall(b, func(e *engine.Engine, _ *sync.Mutex) {
			e.Breakdown("t", engine.ByGroup, wideFilter())
		})
	})
	// A page of connectedUsers for a filter with no view: its total is
	// counted from the candidates.
	b.Run("users-page", func(b *testing.B) {
		stall(b, func(e *engine.Engine, _ *sync.Mutex) {
			if _, err := e.Users("t", wideFilter(), engine.Page{Order: engine.ByConnectedAt, First: 100}); err != nil {
				b.Error(err)
			}
		})
	})
	// The same with few matches among the candidates (one role and one
	// status of each kind: ~1 in 30): the page reads ~30 index entries a
	// user, under the read lock.
	b.Run("users-page-rare", func(b *testing.B) {
		stall(b, func(e *engine.Engine, _ *sync.Mutex) {
			f := wideFilter()
			f.Roles = []presence.Role{1}
			f.AvailabilityStatus, f.ChatAvailability = []presence.Status{presence.Available}, []presence.Status{presence.Busy}
			if _, err := e.Users("t", f, engine.Page{Order: engine.ByConnectedAt, First: 1000}); err != nil {
				b.Error(err)
			}
		})
	})
	b.Run("watch-first", func(b *testing.B) {
		stall(b, func(e *engine.Engine, _ *sync.Mutex) {
			e.Watch("t", wideFilter()).Close()
		})
	})
	// A pass of expiry that ends no session: the visit of every user, which
	// is its cost at any count ended.
	b.Run("expire", func(b *testing.B) {
		e := mustEngine(b, engine.Config{SessionTTL: time.Hour, Now: func() time.Time { return time.Unix(0, benchTS) }})
		populate(e, "t", stallUsers)
		stallOn(b, e, func(e *engine.Engine, _ *sync.Mutex) {
			if n := e.Expire(time.Unix(0, benchTS)); n != 0 {
				b.Errorf("expired %d", n)
			}
		})
	})
}

// BenchmarkSnapshotAtRest writes a snapshot of 1M users with nothing else
// running, as the last one at shutdown is: resting between chunks as one
// taken while events are applied does (paced), and not (alone, as the last
// one is written: engine.Cut.Alone).
func BenchmarkSnapshotAtRest(b *testing.B) {
	e := populated(b, stallUsers)
	for _, alone := range []bool{false, true} {
		name := "paced"
		if alone {
			name = "alone"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				c := e.Cut()
				c.Alone = alone
				if err := c.Write(io.Discard, engine.SnapshotInfo{Sequence: 1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
