package engine_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/presence"
)

// footprint is what the ids and tenants of an engine cost that outlives a
// request: Stats' counts and the bytes of a snapshot with a fixed header.
type footprint struct {
	ids, tenants, users, views, held int
	snapshot                         []byte
}

func footprintOf(tb testing.TB, e *engine.Engine) footprint {
	tb.Helper()
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 7, Written: t0}); err != nil {
		tb.Fatal(err)
	}
	st := e.Stats()
	return footprint{ids: st.IDs, tenants: st.Tenants, users: st.Users, views: st.Views,
		held: engine.HeldTenants(e), snapshot: buf.Bytes()}
}

// sameFootprint fails unless a and b agree on all but the views and the
// tenants held, which open watches may add.
func sameFootprint(tb testing.TB, what string, a, b footprint) {
	tb.Helper()
	if a.ids != b.ids || a.tenants != b.tenants || a.users != b.users || !bytes.Equal(a.snapshot, b.snapshot) {
		tb.Fatalf("%s: ids %d tenants %d users %d snapshot %d bytes, were %d %d %d %d (equal bytes: %v)", what,
			b.ids, b.tenants, b.users, len(b.snapshot), a.ids, a.tenants, a.users, len(a.snapshot), bytes.Equal(a.snapshot, b.snapshot))
	}
}

// login returns a login of user into the given ids, online and available.
func login(user string, ts int64, groups, projects, routing []string) *presence.Event {
	return &presence.Event{Type: presence.Login, UserID: user, TS: ts,
		Fields:   presence.HasTS | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups | presence.HasChat,
		GroupIDs: groups, ProjectIDs: projects, RoutingGroupIDs: routing, Chat: presence.Available}
}

// soloEngine holds one tenant, "solo", of one user in g1, p1 and r1.
func soloEngine(tb testing.TB) *engine.Engine {
	tb.Helper()
	e := mustEngine(tb, engine.Config{})
	e.Apply("solo", login("u1", t0.UnixNano(), []string{"g1"}, []string{"p1"}, []string{"r1"}))
	return e
}

// TestRequestsInternNothing asks queries, breakdowns and watches naming ids
// and tenants no event named: nothing of them may outlive the request
// (contract section 3.1), in Stats or in a snapshot, and a watch's view and
// tenant go with it.
func TestRequestsInternNothing(t *testing.T) {
	unknown := func(prefix string, n int) []string { return names(prefix, n) }
	cases := []struct {
		name   string
		tenant string
		f      engine.Filter
	}{
		{"several unknown groups", "solo", engine.Filter{GroupIDs: unknown("x", 3)}},
		{"unknown ids in two dimensions", "solo", engine.Filter{GroupIDs: unknown("x", 2), ProjectIDs: unknown("y", 2)}},
		{"a known id and unknown ones", "solo", engine.Filter{GroupIDs: []string{"g1", "x1"}, RoutingGroupIDs: []string{"r1", "y1"}}},
		{"a known dimension and an unknown one", "solo", engine.Filter{GroupIDs: []string{"g1"}, ProjectIDs: unknown("y", 3)}},
		{"one unknown id", "solo", engine.Filter{ProjectIDs: []string{"x1"}}},
		{"unknown users", "solo", engine.Filter{UserIDs: unknown("v", 3), GroupIDs: []string{"x1", "g1"}}},
		{"unknown tenant, no id", "nobody", engine.Filter{}},
		{"unknown tenant, unknown ids", "nobody", engine.Filter{GroupIDs: unknown("x", 2), ProjectIDs: []string{"p1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := soloEngine(t)
			before := footprintOf(t, e)
			want := e.Query("solo", &engine.Filter{GroupIDs: []string{"g1"}}).Connected
			if got := e.Query(tc.tenant, &tc.f); got.Connected > want {
				t.Fatalf("query: %d connected", got.Connected)
			}
			for by := range engine.ByChat + 1 {
				e.Breakdown(tc.tenant, by, &tc.f)
			}
			sameFootprint(t, "after the query and breakdowns", before, footprintOf(t, e))

			views := footprintOf(t, e).views
			w1, w2 := e.Watch(tc.tenant, &tc.f), e.Watch(tc.tenant, &tc.f)
			if during := footprintOf(t, e); during.views > views+1 {
				t.Fatalf("two watches of one filter made %d views", during.views-views)
			}
			sameFootprint(t, "while watched", before, footprintOf(t, e))
			w1.Close()
			w2.Close()
			after := footprintOf(t, e)
			sameFootprint(t, "after the watches", before, after)
			if after.views != views || after.held != before.held {
				t.Fatalf("after the watches: %d views, %d tenants held; were %d and %d", after.views, after.held, views, before.held)
			}
		})
	}
}

// TestWatchUnknownIDs watches filters naming ids before any event names
// them: each watch must follow the users who join them later, wake when its
// value changes, and leave nothing once closed. A query of the same filter
// must agree at every step.
func TestWatchUnknownIDs(t *testing.T) {
	at := func(s int) int64 { return t0.Add(time.Duration(s) * time.Second).UnixNano() }
	none := []string(nil)
	cases := []struct {
		name   string
		f      engine.Filter
		events []*presence.Event
		want   []int64 // connected after each event
	}{
		{"an unknown group", engine.Filter{GroupIDs: []string{"g9"}}, []*presence.Event{
			login("u2", at(1), []string{"g9"}, none, none),
			login("u3", at(1), []string{"g8", "g9"}, none, none),
			login("u2", at(2), []string{"g1"}, none, none),
		}, []int64{1, 2, 1}},
		{"a known and an unknown group", engine.Filter{GroupIDs: []string{"g1", "g9"}}, []*presence.Event{
			login("u2", at(1), []string{"g9"}, none, none),
			login("u3", at(1), []string{"g8"}, none, none),
		}, []int64{2, 2}},
		{"unknown ids in two dimensions", engine.Filter{GroupIDs: []string{"g9", "g8"}, ProjectIDs: []string{"p9"}}, []*presence.Event{
			login("u2", at(1), []string{"g9"}, none, none),
			login("u3", at(1), none, []string{"p9"}, none),
			login("u4", at(1), []string{"g8"}, []string{"p9"}, none),
			login("u2", at(2), []string{"g9"}, []string{"p9", "p1"}, none),
		}, []int64{0, 0, 1, 2}},
		{"a known dimension and an unknown one", engine.Filter{GroupIDs: []string{"g1"}, RoutingGroupIDs: []string{"r9"}}, []*presence.Event{
			login("u1", at(1), []string{"g1"}, none, []string{"r9"}),
			login("u2", at(1), []string{"g1", "g2"}, none, []string{"r8", "r9"}),
		}, []int64{1, 2}},
		{"unknown users and an unknown group", engine.Filter{UserIDs: []string{"u2", "u3"}, GroupIDs: []string{"g9"}}, []*presence.Event{
			login("u2", at(1), []string{"g9"}, none, none),
			login("u4", at(1), []string{"g9"}, none, none),
		}, []int64{1, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := soloEngine(t)
			views := e.Stats().Views
			w, same := e.Watch("solo", &tc.f), e.Watch("solo", &tc.f)
			last, changed := w.Next()
			for i, ev := range tc.events {
				e.Apply("solo", ev)
				got, next := w.Next()
				if got.Connected != tc.want[i] {
					t.Fatalf("event %d: watched %d connected, want %d", i, got.Connected, tc.want[i])
				}
				if q := e.Query("solo", &tc.f); q != got {
					t.Fatalf("event %d: query %+v, watch %+v", i, q, got)
				}
				if s, _ := same.Next(); s != got {
					t.Fatalf("event %d: the second watch %+v, the first %+v", i, s, got)
				}
				if got != last {
					select {
					case <-changed:
					default:
						t.Fatalf("event %d: the value changed but the watch was not woken", i)
					}
				}
				last, changed = got, next
			}
			w.Close()
			same.Close()
			// What stays is the queries' views, of ids that events named.
			if st := e.Stats(); st.Views > views+len(tc.events)+1 {
				t.Fatalf("%d views after the watches, %d before", st.Views, views)
			}
		})
	}
}

// TestQueryIDNamedLater asks a filter before and after an event names one
// of its ids: the second answer counts the users of that id, from a view of
// its own, as the filter's known ids differ.
func TestQueryIDNamedLater(t *testing.T) {
	e := soloEngine(t)
	f := &engine.Filter{GroupIDs: []string{"g1", "g9"}, ProjectIDs: []string{"p1", "p9"}}
	if got := e.Query("solo", f).Connected; got != 1 {
		t.Fatalf("before: %d connected, want 1", got)
	}
	views := e.Stats().Views
	e.Apply("solo", login("u2", t0.UnixNano(), []string{"g9"}, []string{"p9"}, nil))
	if got := e.Query("solo", f).Connected; got != 2 {
		t.Fatalf("after g9 and p9 were named: %d connected, want 2", got)
	}
	if got := e.Query("solo", &engine.Filter{GroupIDs: []string{"g1"}, ProjectIDs: []string{"p1"}}).Connected; got != 1 {
		t.Fatalf("the view of the ids known before: %d connected, want 1", got)
	}
	if st := e.Stats(); st.Views != views+1 || st.ViewHits != 1 || st.ViewMisses != 2 {
		t.Fatalf("views %d (were %d), hits %d, misses %d; want one more view, 1 hit and 2 misses",
			st.Views, views, st.ViewHits, st.ViewMisses)
	}
}

// TestWatchUnknownTenant watches a tenant before its first event: the
// tenant stays out of Stats and snapshots until an event makes it one, and
// leaves the engine with its last watch if none does.
func TestWatchUnknownTenant(t *testing.T) {
	e := soloEngine(t)
	before := footprintOf(t, e)
	all, g9 := e.Watch("later", &engine.Filter{}), e.Watch("later", &engine.Filter{GroupIDs: []string{"g9"}, ProjectIDs: []string{"p9"}})
	never := e.Watch("never", &engine.Filter{RoutingGroupIDs: []string{"r9"}})
	sameFootprint(t, "watched", before, footprintOf(t, e))
	if held := engine.HeldTenants(e); held != 3 {
		t.Fatalf("%d tenants held, want 3 (solo and two watched)", held)
	}
	never.Close()
	if held := engine.HeldTenants(e); held != 2 {
		t.Fatalf("%d tenants held after the unnamed tenant's watch closed, want 2", held)
	}

	e.Apply("later", login("v1", t0.UnixNano(), []string{"g9"}, []string{"p9"}, nil))
	e.Apply("later", login("v2", t0.UnixNano(), []string{"g9"}, nil, nil))
	if v, _ := all.Next(); v.Connected != 2 {
		t.Fatalf("watch of every user: %d connected, want 2", v.Connected)
	}
	if v, _ := g9.Next(); v.Connected != 1 {
		t.Fatalf("watch of g9 and p9: %d connected, want 1", v.Connected)
	}
	st := e.Stats()
	if st.Tenants != 2 || st.Users != 3 || st.PerTenant[0].Tenant != "later" || st.PerTenant[0].Users != 2 {
		t.Fatalf("stats once an event named the tenant: %+v", st)
	}
	all.Close()
	g9.Close()
	if held := engine.HeldTenants(e); held != 2 {
		t.Fatalf("%d tenants held, want 2: a tenant with users stays", held)
	}
}

// TestReset empties an engine with open watches of every kind: each value
// goes to zero, waking its watchers, and then follows the events applied
// after the reset as the oracle of those events alone says.
func TestReset(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	tenants := []string{"a", "b"}
	first := oracle.Events(r, tenants, 40, 8, 20)
	second := oracle.Events(r, append(tenants, "c"), 30, 8, 20)
	e := mustEngine(t, engine.Config{MaxViews: 8})
	empty := footprintOf(t, e)

	type watcher struct {
		tenant string
		f      *engine.Filter
		w      *engine.Watch
	}
	var ws []watcher
	for i := range 60 {
		tn := []string{"a", "b", "c"}[i%3] // c: only watched until the second batch
		f := oracle.RandomFilter(r, oracle.Class(i%3), 40)
		ws = append(ws, watcher{tn, f, e.Watch(tn, f)})
	}
	for i := range first {
		e.Apply(first[i].Tenant, &first[i].Ev)
	}
	for range 20 { // unwatched views, which go
		e.Query("a", oracle.RandomFilter(r, oracle.ClassC, 40))
	}
	chans := make([]<-chan struct{}, len(ws))
	woken := 0
	for i, w := range ws {
		var v engine.Indicator
		v, chans[i] = w.w.Next()
		if v != (engine.Indicator{}) {
			woken++
		}
	}
	if woken == 0 {
		t.Fatal("no watch has a value to lose: the test proves nothing")
	}

	e.Reset()
	after := footprintOf(t, e)
	sameFootprint(t, "after Reset", empty, after)
	if after.held != 3 {
		t.Fatalf("%d tenants held after Reset, want the 3 watched", after.held)
	}
	for i, w := range ws {
		v, _ := w.w.Next()
		if v != (engine.Indicator{}) {
			t.Fatalf("watch %d after Reset: %+v, want zero", i, v)
		}
		select {
		case <-chans[i]:
			woken--
		default:
		}
	}
	if woken != 0 {
		t.Fatalf("%d watches whose value went to zero were not woken", woken)
	}

	for i := range second {
		e.Apply(second[i].Tenant, &second[i].Ev)
	}
	truth := oracle.State(second)
	for i, w := range ws {
		if v, _ := w.w.Next(); v != oracle.Query(truth[w.tenant], w.f) {
			t.Fatalf("watch %d of %s %+v after Reset and the second batch:\n got %+v\nwant %+v",
				i, w.tenant, *w.f, v, oracle.Query(truth[w.tenant], w.f))
		}
		checkQuery(t, e, truth, w.tenant, w.f, "after Reset")
	}
	// The engine now holds what one that saw only the second batch does.
	fresh := mustEngine(t, engine.Config{})
	for i := range second {
		fresh.Apply(second[i].Tenant, &second[i].Ev)
	}
	if got, want := footprintOf(t, e), footprintOf(t, fresh); got.ids != want.ids || got.users != want.users || got.tenants != want.tenants {
		t.Fatalf("after Reset and the second batch: %+v, a fresh engine %+v", got, want)
	}
	for _, w := range ws {
		w.w.Close()
	}
	e.Reset()
	if held := engine.HeldTenants(e); held != 0 {
		t.Fatalf("%d tenants held after a Reset with no watch", held)
	}
}

// TestResetConcurrent runs Reset beside Apply, Query, Watch and Close; run it
// with -race. A last Reset and the events again must give the oracle's
// answers.
func TestResetConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	tenants := []string{"a", "b"}
	events := oracle.Events(r, tenants, 40, 8, 0)
	e := mustEngine(t, engine.Config{MaxViews: 4})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tn := tenants[i%2]
			w := e.Watch(tn, oracle.RandomFilter(r, oracle.Class(i%3), 40))
			e.Query(tn, oracle.RandomFilter(r, oracle.Class(i%3), 40))
			w.Next()
			if i%10 == 0 {
				e.Reset()
			}
			w.Close()
		}
	}()
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	close(stop)
	<-done
	e.Reset()
	w := e.Watch("a", &engine.Filter{GroupIDs: []string{"g1", "g2"}, ProjectIDs: []string{"p1"}})
	defer w.Close()
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	truth := oracle.State(events)
	if v, _ := w.Next(); v != oracle.Query(truth["a"], &engine.Filter{GroupIDs: []string{"g1", "g2"}, ProjectIDs: []string{"p1"}}) {
		t.Fatalf("watch after the last Reset: %+v", v)
	}
	for i := range 200 {
		checkQuery(t, e, truth, tenants[i%2], oracle.RandomFilter(r, oracle.Class(i%3), 40), fmt.Sprint("after Reset, query ", i))
	}
}
