package engine_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
)

func TestBreakdown(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	events := oracle.Events(r, []string{"acme"}, 150, 10, 100)
	e := mustEngine(t, engine.Config{})
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	truth := oracle.State(events)
	for i := range 600 {
		by := engine.Dimension(i % 6)
		f := oracle.RandomFilter(r, oracle.Class(i/6%3), 150)
		checkBreakdown(t, e, truth, "acme", by, f, "breakdown")
	}
	if rows := e.Breakdown("nobody", engine.ByGroup, &engine.Filter{}); rows != nil {
		t.Fatalf("unknown tenant: %v", rows)
	}
}

// TestWatch watches random filters of every class from before the first
// event and checks, after every batch, the value against the oracle and that
// a changed value closed the channel the watcher waited on.
func TestWatch(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	events := oracle.Events(r, []string{"acme"}, 100, 10, 100)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	e := mustEngine(t, engine.Config{MaxViews: 4})

	type watcher struct {
		f       *engine.Filter
		w       *engine.Watch
		last    engine.Indicator
		changed <-chan struct{}
	}
	var ws []*watcher
	for i := range 60 {
		f := oracle.RandomFilter(r, oracle.Class(i%3), 100)
		w := &watcher{f: f, w: e.Watch("acme", f)}
		w.last, w.changed = w.w.Next()
		ws = append(ws, w)
		// A second watch of the same filter shares the view.
		e.Watch("acme", f).Close()
	}
	woke := 0
	for b := range 10 {
		lo, hi := b*len(events)/10, (b+1)*len(events)/10
		for i := lo; i < hi; i++ {
			e.Apply(events[i].Tenant, &events[i].Ev)
		}
		// Class-c queries evict unwatched views only.
		for range 10 {
			e.Query("acme", oracle.RandomFilter(r, oracle.ClassC, 100))
		}
		truth := oracle.State(events[:hi])["acme"]
		for _, w := range ws {
			value, next := w.w.Next()
			if want := oracle.Query(truth, w.f); value != want {
				t.Fatalf("batch %d filter %+v: watched %+v, oracle %+v", b, *w.f, value, want)
			}
			if value != w.last {
				select {
				case <-w.changed:
					woke++
				default:
					t.Fatalf("batch %d filter %+v: the value changed but the channel did not fire", b, *w.f)
				}
			}
			w.last, w.changed = value, next
		}
	}
	if woke == 0 {
		t.Fatal("no watched value ever changed: the test proves nothing")
	}
	for _, w := range ws {
		w.w.Close()
		w.w.Close()
		if _, ch := w.w.Next(); ch != nil {
			t.Fatal("a closed watch must not fire")
		}
	}
}

func TestWatchConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	events := oracle.Events(r, []string{"a", "b"}, 50, 10, 0)
	e := mustEngine(t, engine.Config{MaxViews: 2})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range events {
			e.Apply(events[i].Tenant, &events[i].Ev)
		}
	})
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				w := e.Watch([]string{"a", "b"}[r.IntN(2)], oracle.RandomFilter(r, oracle.Class(r.IntN(3)), 50))
				w.Next()
				w.Close()
			}
		})
	}
	wg.Wait()
	truth := oracle.State(events)
	for i := range 100 {
		tn := fmt.Sprint([]string{"a", "b"}[i%2])
		checkQuery(t, e, truth, tn, oracle.RandomFilter(r, oracle.Class(i%3), 50), "after concurrent watches")
	}
}
