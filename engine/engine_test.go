package engine_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/presence"
)

func TestNewValidates(t *testing.T) {
	for _, cfg := range []engine.Config{{SessionTTL: -time.Second}, {MaxViews: -1}} {
		if _, err := engine.New(cfg); !errors.Is(err, engine.ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestApplyResult(t *testing.T) {
	e := mustEngine(t, engine.Config{})
	login := event(presence.Login, "u", t0)
	if r := e.Apply("t", login); r != engine.Applied {
		t.Fatalf("first login: %v", r)
	}
	if r := e.Apply("t", login); r != engine.Applied {
		t.Fatalf("duplicate: %v, want applied (it is not older)", r)
	}
	if r := e.Apply("t", event(presence.Logout, "u", t0.Add(-time.Second))); r != engine.Stale {
		t.Fatalf("older logout: %v, want stale", r)
	}
	if r := e.Apply("t", event(presence.Heartbeat, "u", t0.Add(-time.Hour))); r != engine.Applied {
		t.Fatalf("heartbeat carries no field: %v, want applied", r)
	}
	if connected(e) != 1 {
		t.Fatal("a stale logout disconnected the user")
	}
}

// TestViewsBounded checks that the least recently used view goes first and
// that a view rebuilt after eviction is still exact.
func TestViewsBounded(t *testing.T) {
	e := mustEngine(t, engine.Config{MaxViews: 2})
	ev := event(presence.Login, "u", t0)
	ev.Fields |= presence.HasGroups | presence.HasProjects
	ev.GroupIDs, ev.ProjectIDs = []string{"g1"}, []string{"p1"}
	e.Apply("t", ev)
	// Only ids that events named make views: name g2 and g3 by a user gone.
	gone := event(presence.Login, "gone", t0)
	gone.Fields |= presence.HasGroups
	gone.GroupIDs = []string{"g2", "g3"}
	e.Apply("t", gone)
	e.Apply("t", event(presence.Logout, "gone", t0.Add(time.Second)))

	f := func(groups ...string) *engine.Filter {
		return &engine.Filter{GroupIDs: groups, ProjectIDs: []string{"p1", "p2"}}
	}
	for _, g := range []string{"g1", "g2", "g1", "g3", "g1"} {
		e.Query("t", f(g))
	}
	st := e.Stats()
	if st.Views != 2 {
		t.Fatalf("%d views, want 2", st.Views)
	}
	// g1 was used last, so g2 went when g3 came: asking g1 hits, g2 misses.
	if st.ViewHits != 2 || st.ViewMisses != 3 {
		t.Fatalf("hits %d misses %d, want 2 and 3", st.ViewHits, st.ViewMisses)
	}
	e.Apply("t", event(presence.Logout, "u", t0.Add(time.Second)))
	if got := e.Query("t", f("g1")).Connected; got != 0 {
		t.Fatalf("view did not follow the logout: %d", got)
	}
	if got := e.Query("t", f("g2")).Connected; got != 0 {
		t.Fatalf("rebuilt view: %d", got)
	}
}

func TestStats(t *testing.T) {
	e := mustEngine(t, engine.Config{})
	for i, tn := range []string{"b", "a", "a"} {
		ev := event(presence.Login, fmt.Sprint("u", i), t0)
		ev.Fields |= presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots
		ev.Chat, ev.MaxSlots, ev.CurrentSlots = presence.Busy, 3, 2
		e.Apply(tn, ev)
	}
	e.Apply("a", event(presence.Logout, "u1", t0.Add(time.Second)))
	st := e.Stats()
	if st.Users != 3 || st.Tenants != 2 {
		t.Fatalf("users %d tenants %d", st.Users, st.Tenants)
	}
	want := engine.TenantStats{Tenant: "a", Users: 2, Total: engine.Indicator{
		Connected: 1, Chat: [3]int64{presence.Busy: 1}, InProduction: 1, MaxSlots: 3, CurrentSlots: 2,
	}}
	if st.PerTenant[0] != want || st.PerTenant[1].Tenant != "b" {
		t.Fatalf("per tenant: %+v", st.PerTenant)
	}
	if got := want.Total.OccupancyRate(); math.Abs(got-200.0/3) > 1e-9 {
		t.Fatalf("occupancy %v", got)
	}
}

func TestIndicatorRatios(t *testing.T) {
	var zero engine.Indicator
	if zero.MaxSlotsAverage() != 0 || zero.CurrentSlotsAverage() != 0 || zero.OccupancyRate() != 0 {
		t.Fatal("a zero denominator must give 0")
	}
	ind := engine.Indicator{InProduction: 4, MaxSlots: 10, CurrentSlots: 5}
	if ind.MaxSlotsAverage() != 2.5 || ind.CurrentSlotsAverage() != 1.25 || ind.OccupancyRate() != 50 {
		t.Fatalf("%v %v %v", ind.MaxSlotsAverage(), ind.CurrentSlotsAverage(), ind.OccupancyRate())
	}
}

// TestConcurrent runs Apply, Query (all classes), Expire and Stats at once;
// run it with -race. Once the writers stop, the answers must equal the oracle.
func TestConcurrent(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 1_700_000_000_000_000_000)}
	// The TTL is long enough that nothing expires, so the oracle holds, while
	// Expire still scans every user under the locks.
	e := mustEngine(t, engine.Config{MaxViews: 8, SessionTTL: time.Hour, Now: clock.Now})
	r := rand.New(rand.NewPCG(1, 2))
	tenants := []string{"a", "b", "c", "d"}
	events := oracle.Events(r, tenants, 60, 10, 200)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })

	var writers, readers sync.WaitGroup
	stop := make(chan struct{})
	const nWriters = 4
	for w := range nWriters {
		writers.Go(func() {
			for i := w; i < len(events); i += nWriters {
				e.Apply(events[i].Tenant, &events[i].Ev)
			}
		})
	}
	for q := range 4 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(q), 0))
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.Query(tenants[r.IntN(len(tenants))], oracle.RandomFilter(r, oracle.Class(r.IntN(3)), 60))
				if r.IntN(50) == 0 {
					e.Stats()
					e.Expire(clock.Now())
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()

	truth := oracle.State(events)
	for i := range 300 {
		checkQuery(t, e, truth, tenants[i%len(tenants)], oracle.RandomFilter(r, oracle.Class(i%3), 60), "after concurrent apply")
	}
}
