package engine_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
)

func mustEngine(tb testing.TB, cfg engine.Config) *engine.Engine {
	tb.Helper()
	e, err := engine.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func checkQuery(tb testing.TB, e *engine.Engine, truth oracle.Tenants, tenant string, f *engine.Filter, what string) {
	tb.Helper()
	got, want := e.Query(tenant, f), oracle.Query(truth[tenant], f)
	if got != want {
		tb.Fatalf("%s: tenant %s filter %+v:\n got %+v\nwant %+v", what, tenant, *f, got, want)
	}
}

// checkBreakdown compares the engine's breakdown of tenant by by under f
// with the oracle's: the same keys, in order, with the same indicators.
func checkBreakdown(tb testing.TB, e *engine.Engine, truth oracle.Tenants, tenant string, by engine.Dimension, f *engine.Filter, what string) {
	tb.Helper()
	checkRows(tb, e.Breakdown(tenant, by, f), truth, tenant, by, f, what)
}

// checkRows compares the rows of a breakdown of tenant by by under f with
// the oracle's.
func checkRows(tb testing.TB, got []engine.Row, truth oracle.Tenants, tenant string, by engine.Dimension, f *engine.Filter, what string) {
	tb.Helper()
	want := oracle.Breakdown(truth[tenant], by, f)
	if !slices.IsSortedFunc(got, func(a, b engine.Row) int { return strings.Compare(a.Key, b.Key) }) {
		tb.Fatalf("%s: rows not sorted: %v", what, got)
	}
	if len(got) != len(want) {
		tb.Fatalf("%s: tenant %s by %d filter %+v: %d rows, want %d:\n got %+v\nwant %+v", what, tenant, by, *f, len(got), len(want), got, want)
	}
	for _, row := range got {
		if row.Indicator != want[row.Key] {
			tb.Fatalf("%s: tenant %s by %d filter %+v key %s:\n got %+v\nwant %+v", what, tenant, by, *f, row.Key, row.Indicator, want[row.Key])
		}
	}
}

func TestOracle(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			tenants := []string{"acme", "globex", "initech"}
			const users = 150
			events := oracle.Events(r, tenants, users, 12, 600)
			r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })

			e := mustEngine(t, engine.Config{MaxViews: 64})
			followed := oracle.RandomFilter(r, oracle.ClassC, users) // asked after every batch
			const batches = 8
			queries := 0
			for b := range batches {
				lo, hi := b*len(events)/batches, (b+1)*len(events)/batches
				for i := lo; i < hi; i++ {
					e.Apply(events[i].Tenant, &events[i].Ev)
				}
				truth := oracle.State(events[:hi])
				checkQuery(t, e, truth, "acme", followed, "followed class-c view")
				for i := range 150 {
					class := oracle.Class(i % 3)
					tn := tenants[r.IntN(len(tenants))]
					checkQuery(t, e, truth, tn, oracle.RandomFilter(r, class, users), fmt.Sprintf("batch %d class %c", b, 'a'+class))
					queries++
				}
				checkQuery(t, e, truth, "nobody", &engine.Filter{}, "unknown tenant")
			}
			if queries < 1000 {
				t.Fatalf("only %d filters checked", queries)
			}
			st := e.Stats()
			if st.ViewHits == 0 || st.ViewMisses == 0 {
				t.Fatalf("class c filters should both build and reuse views: %+v", st)
			}
			if st.Views > 64*len(tenants) {
				t.Fatalf("views not bounded: %d", st.Views)
			}
		})
	}
}

// TestDeliveryOrder applies the same events in 20 orders and expects the same
// answer to every filter.
func TestDeliveryOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	events := oracle.Events(r, []string{"a", "b", "c"}, 100, 10, 300)
	var filters []*engine.Filter
	for i := range 300 {
		filters = append(filters, oracle.RandomFilter(r, oracle.Class(i%3), 100))
	}
	var first []engine.Indicator
	for order := range 20 {
		r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		e := mustEngine(t, engine.Config{})
		// Ask the class-c filters before the events too, so that their views
		// are built early and then follow every event.
		for _, f := range filters {
			e.Query("a", f)
		}
		for i := range events {
			e.Apply(events[i].Tenant, &events[i].Ev)
		}
		var got []engine.Indicator
		for _, tn := range []string{"a", "b", "c"} {
			for _, f := range filters {
				got = append(got, e.Query(tn, f))
			}
		}
		if order == 0 {
			first = got
			matched := 0
			for _, ind := range got {
				matched += int(ind.Connected)
			}
			if matched == 0 {
				t.Fatal("no filter matched anybody: the test would prove nothing")
			}
			continue
		}
		for i := range got {
			if got[i] != first[i] {
				t.Fatalf("order %d: answer %d differs: %+v vs %+v", order, i, got[i], first[i])
			}
		}
	}
}

// TestOracleLarge spreads one tenant's users over several chunks of the
// engine's user slab, and checks them live and after a snapshot round trip.
func TestOracleLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	const users = 10_000
	events := oracle.Events(r, []string{"big"}, users, 4, 0)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	e := mustEngine(t, engine.Config{})
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{}); err != nil {
		t.Fatal(err)
	}
	loaded := mustEngine(t, engine.Config{})
	if _, err := loaded.ReadSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	truth := oracle.State(events)
	for i := range 300 {
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		checkQuery(t, e, truth, "big", f, "live")
		checkQuery(t, loaded, truth, "big", f, "loaded")
	}
	if st := loaded.Stats(); st.Users != users {
		t.Fatalf("loaded %d users, want %d", st.Users, users)
	}
}
