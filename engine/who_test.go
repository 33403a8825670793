package engine_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/presence"
)

var orders = []engine.Order{engine.ByUserID, engine.ByConnectedAt, engine.ByChatUpdatedAt}

// walkAll pages through the users of f in order, first at a time.
func walkAll(tb testing.TB, e *engine.Engine, tenant string, f *engine.Filter, order engine.Order, first int) ([]engine.ConnectedUser, int64) {
	tb.Helper()
	var all []engine.ConnectedUser
	var after *engine.Key
	total := int64(-1)
	for pages := 0; ; pages++ {
		p, err := e.Users(tenant, f, engine.Page{Order: order, First: first, After: after})
		if err != nil {
			tb.Fatal(err)
		}
		if total >= 0 && p.Total != total {
			tb.Fatalf("total %d on page %d, %d before", p.Total, pages, total)
		}
		total = p.Total
		if len(p.Users) > first || p.More && len(p.Users) != first {
			tb.Fatalf("page %d: %d users, more %v, first %d", pages, len(p.Users), p.More, first)
		}
		all = append(all, p.Users...)
		if !p.More {
			return all, total
		}
		after = &p.Users[len(p.Users)-1].Key
	}
}

// checkUsers compares every page walk of f in every order with the oracle's
// sorted list, and the total with the oracle's and the engine's count.
func checkUsers(tb testing.TB, e *engine.Engine, truth oracle.Tenants, tenant string, f *engine.Filter, first int, what string) {
	tb.Helper()
	for _, order := range orders {
		got, total := walkAll(tb, e, tenant, f, order, first)
		want := oracle.Users(truth[tenant], f, order)
		if total != int64(len(want)) || total != e.Query(tenant, f).Connected {
			tb.Fatalf("%s: order %d filter %+v: total %d, oracle %d, Query %d", what, order, *f, total, len(want), e.Query(tenant, f).Connected)
		}
		if len(got) != len(want) {
			tb.Fatalf("%s: order %d filter %+v: %d users, want %d", what, order, *f, len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				tb.Fatalf("%s: order %d filter %+v: user %d:\n got %+v\nwant %+v", what, order, *f, i, got[i], want[i])
			}
		}
	}
}

// TestUsersOracle checks connectedUsers against the list the events give,
// in every order and query class, paged by several sizes, while the events
// arrive in random order.
func TestUsersOracle(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 13))
			tenants := []string{"acme", "globex"}
			const users = 120
			// A small gap between ts: many users share a time, and the
			// order falls back on their ids.
			events := oracle.EventsFrom(r, tenants, users, 10, 300, 1_700_000_000_000_000_000, 3)
			r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
			e := mustEngine(t, engine.Config{MaxViews: 16})
			for start := 0; start < len(events); {
				end := min(start+1+r.IntN(len(events)/4), len(events))
				for i := start; i < end; i++ {
					e.Apply(events[i].Tenant, &events[i].Ev)
				}
				truth := oracle.State(events[:end])
				for _, tn := range tenants {
					checkUsers(t, e, truth, tn, &engine.Filter{}, 1+r.IntN(40), "all")
					for range 4 {
						class := oracle.Class(r.IntN(3))
						f := oracle.RandomFilter(r, class, users)
						checkUsers(t, e, truth, tn, f, 1+r.IntN(30), fmt.Sprint("class ", class))
						if class == oracle.ClassC && r.IntN(2) == 0 {
							e.Query(tn, f) // builds its view: the next walk counts from it
							checkUsers(t, e, truth, tn, f, 1+r.IntN(30), "class c with a view")
						}
					}
				}
				start = end
			}
		})
	}
}

// TestUsersPagingWhileApplying pages through whole results while events
// change them between pages: keys only grow from page to page, no user is
// listed twice unless an event moved it, and every matching user no event
// touched during the walk is listed once.
func TestUsersPagingWhileApplying(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	const users = 400
	base := oracle.Events(r, []string{"t"}, users, 6, 0)
	later := oracle.EventsFrom(r, []string{"t"}, users, 3, 0, 1_800_000_000_000_000_000, 1e9)
	r.Shuffle(len(later), func(i, j int) { later[i], later[j] = later[j], later[i] })
	for _, order := range orders {
		for _, f := range []*engine.Filter{{}, {GroupIDs: []string{"g1", "g2"}}, {ChatAvailability: []presence.Status{presence.Available, presence.Busy}}} {
			e := mustEngine(t, engine.Config{})
			for i := range base {
				e.Apply("t", &base[i].Ev)
			}
			start := oracle.Users(oracle.State(base)["t"], f, order)
			touched := map[string]bool{}
			seen := map[string]int{}
			var after *engine.Key
			next := 0
			for {
				p, err := e.Users("t", f, engine.Page{Order: order, First: 7, After: after})
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range p.Users {
					if after != nil && oracle.CompareKeys(u.Key, *after) <= 0 {
						t.Fatalf("order %d filter %+v: %s at %+v after the cursor %+v", order, *f, u.UserID, u.Key, *after)
					}
					after = &u.Key
					seen[u.UserID]++
					if seen[u.UserID] > 1 && !touched[u.UserID] {
						t.Fatalf("order %d filter %+v: %s listed twice, no event moved it", order, *f, u.UserID)
					}
				}
				if !p.More {
					break
				}
				for range 5 {
					if next < len(later) {
						ev := &later[next].Ev
						e.Apply("t", ev)
						touched[ev.UserID] = true
						next++
					}
				}
			}
			if next == 0 {
				t.Fatalf("order %d filter %+v: no event between pages", order, *f)
			}
			for _, u := range start {
				if !touched[u.UserID] && seen[u.UserID] != 1 {
					t.Fatalf("order %d filter %+v: %s, untouched, listed %d times", order, *f, u.UserID, seen[u.UserID])
				}
			}
		}
	}
}

// TestUsersPage checks the rules of a page and tenant isolation.
func TestUsersPage(t *testing.T) {
	e := mustEngine(t, engine.Config{})
	login := func(tenant, id string, ts int64) {
		e.Apply(tenant, &presence.Event{Type: presence.Login, UserID: id, TS: ts, Fields: presence.HasTS})
	}
	login("a", "u1", 30)
	login("a", "u2", 10)
	login("a", "u3", 20)
	login("b", "x", 5)
	for _, c := range []struct {
		name string
		page engine.Page
	}{
		{"first 0", engine.Page{First: 0}},
		{"cursor of another order", engine.Page{First: 1, Order: engine.ByConnectedAt, After: &engine.Key{Order: engine.ByUserID}}},
		{"unknown order", engine.Page{First: 1, Order: 9}},
	} {
		if _, err := e.Users("a", &engine.Filter{}, c.page); !errors.Is(err, engine.ErrPage) {
			t.Errorf("%s: error %v, want ErrPage", c.name, err)
		}
	}
	ids := func(p engine.UserPage) []string {
		var out []string
		for _, u := range p.Users {
			out = append(out, u.UserID)
		}
		return out
	}
	p, _ := e.Users("a", &engine.Filter{}, engine.Page{Order: engine.ByConnectedAt, First: 2})
	if got := ids(p); !reflect.DeepEqual(got, []string{"u2", "u3"}) || !p.More || p.Total != 3 {
		t.Fatalf("by connectedAt: %v more %v total %d", got, p.More, p.Total)
	}
	// A cursor whose user is gone, or was never the tenant's, still places
	// the page by its key.
	p, _ = e.Users("a", &engine.Filter{}, engine.Page{First: 5, After: &engine.Key{UserID: "u15"}})
	if got := ids(p); !reflect.DeepEqual(got, []string{"u2", "u3"}) || p.More {
		t.Fatalf("after u15: %v more %v", got, p.More)
	}
	p, _ = e.Users("b", &engine.Filter{}, engine.Page{First: 5})
	if got := ids(p); !reflect.DeepEqual(got, []string{"x"}) || p.Total != 1 {
		t.Fatalf("tenant b: %v total %d", got, p.Total)
	}
	p, _ = e.Users("c", &engine.Filter{}, engine.Page{First: 5})
	if len(p.Users) != 0 || p.Total != 0 || p.More {
		t.Fatalf("tenant c: %+v", p)
	}
	if st := e.Stats(); st.Tenants != 2 {
		t.Fatalf("%d tenants after asking for a third", st.Tenants)
	}
}

// TestUsersExpiry checks that a session ended by expiry leaves the list,
// and a new login puts the user back.
func TestUsersExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	e := mustEngine(t, engine.Config{SessionTTL: time.Minute, Now: func() time.Time { return now }})
	for i, id := range []string{"a", "b"} {
		e.Apply("t", &presence.Event{Type: presence.Login, UserID: id, TS: now.UnixNano() + int64(i), Fields: presence.HasTS})
	}
	listed := func() int {
		p, err := e.Users("t", &engine.Filter{}, engine.Page{Order: engine.ByConnectedAt, First: 10})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Users)
	}
	if n := listed(); n != 2 {
		t.Fatalf("%d listed, want 2", n)
	}
	now = now.Add(2 * time.Minute)
	if n := e.Expire(now); n != 2 || listed() != 0 {
		t.Fatalf("expired %d, %d still listed", n, listed())
	}
	e.Apply("t", &presence.Event{Type: presence.Login, UserID: "b", TS: now.UnixNano(), Fields: presence.HasTS})
	if n := listed(); n != 1 {
		t.Fatalf("%d listed after a new login, want 1", n)
	}
}
