package engine_test

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/presence"
)

// fakeClock is a settable clock for engine.Config.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func event(typ presence.Type, user string, at time.Time) *presence.Event {
	return &presence.Event{Type: typ, UserID: user, TS: at.UnixNano(), Fields: presence.HasTS}
}

func connected(e *engine.Engine) int64 { return e.Query("t", &engine.Filter{}).Connected }

func TestSessionExpiry(t *testing.T) {
	const ttl = 5 * time.Minute
	type step struct {
		now    time.Duration // fake clock, from t0
		apply  *presence.Event
		expire bool
		want   int64 // connected users after the step
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name  string
		steps []step
	}{
		{"expires after the TTL, not before", []step{
			{now: 0, apply: event(presence.Login, "u", at(0)), want: 1},
			{now: 4 * time.Minute, expire: true, want: 1},
			{now: 5 * time.Minute, expire: true, want: 1}, // newest ts not older than now - TTL
			{now: 6 * time.Minute, expire: true, want: 0},
		}},
		{"any event type keeps the session", []step{
			{now: 0, apply: event(presence.Login, "u", at(0)), want: 1},
			{now: 4 * time.Minute, apply: event(presence.Heartbeat, "u", at(4*time.Minute)), want: 1},
			{now: 8 * time.Minute, expire: true, want: 1},
			{now: 10 * time.Minute, expire: true, want: 0},
		}},
		{"only a later login reconnects", []step{
			{now: 0, apply: event(presence.Login, "u", at(0)), want: 1},
			{now: 6 * time.Minute, expire: true, want: 0},
			{now: 10 * time.Minute, apply: event(presence.Heartbeat, "u", at(10*time.Minute)), want: 0},
			{now: 11 * time.Minute, apply: event(presence.Login, "u", at(11*time.Minute)), want: 1},
		}},
		{"a login older than the expiry's logout is stale", []step{
			{now: 0, apply: event(presence.Login, "u", at(0)), want: 1},
			{now: 10 * time.Minute, apply: event(presence.Heartbeat, "u", at(10*time.Minute)), want: 0},
			{now: 10 * time.Minute, apply: event(presence.Login, "u", at(4*time.Minute)), want: 0},
		}},
		{"a late event inside the window undoes a premature expiry", []step{
			{now: 0, apply: event(presence.Login, "u", at(0)), want: 1},
			{now: 6 * time.Minute, expire: true, want: 0},
			{now: 6 * time.Minute, apply: event(presence.StatusChange, "u", at(3*time.Minute)), want: 1},
			{now: 9 * time.Minute, expire: true, want: 0},
		}},
		{"an event for a long-gone session is applied expired", []step{
			{now: 30 * time.Minute, apply: event(presence.Login, "u", at(0)), want: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			e := mustEngine(t, engine.Config{SessionTTL: ttl, Now: clock.Now})
			for i, s := range tt.steps {
				clock.t = t0.Add(s.now)
				if s.apply != nil {
					e.Apply("t", s.apply)
				}
				if s.expire {
					e.Expire(clock.t)
				}
				if got := connected(e); got != s.want {
					t.Fatalf("step %d: %d connected, want %d", i, got, s.want)
				}
			}
		})
	}
}

// TestSessionExpiryLate steps through what a late event does to a session
// when events may be stored up to MaxLate after their ts (contract 1.3 in ts
// order): stored is when the stream stored the event, the clock follows it.
func TestSessionExpiryLate(t *testing.T) {
	const ttl, late = 5 * time.Minute, 10 * time.Minute
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		ev     *presence.Event
		stored time.Duration // from t0; also the clock
		want   int64
	}
	ev := func(typ presence.Type, ts time.Duration) *presence.Event { return event(typ, "u", at(ts)) }
	tests := []struct {
		name  string
		steps []step
	}{
		{"a late event bridging the silence keeps the session", []step{
			{ev(presence.Login, 0), 0, 1},
			{ev(presence.Heartbeat, 8*time.Minute), 8 * time.Minute, 0}, // 8 min of silence: ended at 5
			{ev(presence.StatusChange, 4*time.Minute), 9 * time.Minute, 1},
		}},
		{"a late event that leaves a silence over the TTL does not", []step{
			{ev(presence.Login, 0), 0, 1},
			{ev(presence.Heartbeat, 12*time.Minute), 12 * time.Minute, 0},
			{ev(presence.StatusChange, 4*time.Minute), 13 * time.Minute, 0}, // 8 min from 4 to 12
			{ev(presence.StatusChange, 8*time.Minute), 14 * time.Minute, 1}, // now bridged
		}},
		{"a late login inside a silence starts a session that ends at its own", []step{
			{ev(presence.Login, 0), 0, 1},
			{ev(presence.Heartbeat, 2*time.Minute), 2 * time.Minute, 1},
			{ev(presence.Heartbeat, 20*time.Minute), 20 * time.Minute, 0},
			{ev(presence.Login, 14*time.Minute), 21 * time.Minute, 0}, // 14 to 20: 6 min
			{ev(presence.Heartbeat, 17*time.Minute), 22 * time.Minute, 1},
		}},
		{"a session ended long enough ago is final", []step{
			{ev(presence.Login, 0), 0, 1},
			{ev(presence.Heartbeat, 30*time.Minute), 30 * time.Minute, 0},
			// Stored 26 min after its ts: later than MaxLate, applied as
			// best it can be; the session ended at 5.
			{ev(presence.StatusChange, 4*time.Minute), 30 * time.Minute, 0},
		}},
		{"a late logout ends the session from its ts", []step{
			{ev(presence.Login, 0), 0, 1},
			{ev(presence.Heartbeat, 3*time.Minute), 3 * time.Minute, 1},
			{ev(presence.Logout, 1*time.Minute), 4 * time.Minute, 0},
			{ev(presence.Login, 2*time.Minute), 4 * time.Minute, 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{}
			e := mustEngine(t, engine.Config{SessionTTL: ttl, MaxLate: late, Now: clock.Now})
			for i, s := range tt.steps {
				clock.t = at(s.stored)
				s.ev.Stored = clock.t.UnixNano()
				e.Apply("t", s.ev)
				if got := connected(e); got != s.want {
					t.Fatalf("step %d: %d connected, want %d", i, got, s.want)
				}
			}
		})
	}
}

func TestNoTTLNeverExpires(t *testing.T) {
	e := mustEngine(t, engine.Config{})
	e.Apply("t", event(presence.Login, "u", t0))
	if n := e.Expire(t0.Add(1000 * time.Hour)); n != 0 || connected(e) != 1 {
		t.Fatalf("expired %d, connected %d", n, connected(e))
	}
}

// TestExpiryTimeline delivers each user's events in ts order, interleaved
// across users, with expiry ticks in between (as live) or with the clock far
// ahead (as a replay after a restart), and checks against the timeline oracle.
func TestExpiryTimeline(t *testing.T) {
	const ttl = int64(5 * time.Minute)
	r := rand.New(rand.NewPCG(3, 9))
	var all []oracle.Delivered
	for u := range 200 {
		id := fmt.Sprint("u", u)
		ts := t0.UnixNano()
		for range 15 {
			ts += r.Int64N(2 * ttl) // gaps both under and over the TTL
			typ := []presence.Type{presence.Login, presence.Logout, presence.Heartbeat, presence.StatusChange}[r.IntN(4)]
			all = append(all, oracle.Delivered{Tenant: "t", Ev: *event(typ, id, time.Unix(0, ts))})
		}
	}
	slices.SortStableFunc(all, func(a, b oracle.Delivered) int { return cmp.Compare(a.Ev.TS, b.Ev.TS) })
	// Stop the clock at the median event, so that some sessions are live and
	// some are over; what comes later is never delivered.
	end := all[len(all)/2].Ev.TS
	all = all[:len(all)/2+1]
	want := oracle.Query(oracle.StateAt(all, ttl, end)["t"], &engine.Filter{}).Connected
	if want == 0 {
		t.Fatal("oracle says nobody is connected: the test would prove little")
	}

	t.Run("live", func(t *testing.T) {
		clock := &fakeClock{}
		e := mustEngine(t, engine.Config{SessionTTL: time.Duration(ttl), Now: clock.Now})
		for i := range all {
			clock.t = time.Unix(0, all[i].Ev.TS)
			e.Apply("t", &all[i].Ev)
			if i%50 == 0 {
				e.Expire(clock.t)
			}
		}
		clock.t = time.Unix(0, end)
		e.Expire(clock.t)
		if got := connected(e); got != want {
			t.Fatalf("%d connected, oracle says %d", got, want)
		}
	})
	t.Run("replay", func(t *testing.T) {
		clock := &fakeClock{t: time.Unix(0, end)}
		e := mustEngine(t, engine.Config{SessionTTL: time.Duration(ttl), Now: clock.Now})
		for i := range all {
			e.Apply("t", &all[i].Ev)
		}
		e.Expire(clock.t)
		if got := connected(e); got != want {
			t.Fatalf("%d connected, oracle says %d", got, want)
		}
	})
}

// TestExpiryLateEvents delivers events in the order a stream would store them
// when publishers are late by up to MaxLate (and early by up to half of it),
// and checks the engine against the oracle of contract 1.3 in ts order: live
// at several points of the delivery, with the clock following the stored
// times, and replayed later from scratch. Users have silences both under and
// over the TTL, so late events fill gaps, bridge spans and move logins.
func TestExpiryLateEvents(t *testing.T) {
	const ttl, late = int64(10 * time.Second), int64(5 * time.Minute)
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 17))
			tenants := []string{"acme", "globex"}
			const users = 120
			// A quarter of the silences are longer than the TTL.
			events := oracle.EventsFrom(r, tenants, users, 16, 0, t0.UnixNano(), 4*ttl/3)
			for range 300 { // duplicates, redelivered a little later
				events = append(events, events[r.IntN(len(events))])
			}
			// Most events are stored within a second of their ts, a fifth
			// up to MaxLate later, a few up to half of it earlier (a clock
			// ahead, within the allowed skew).
			stored := make([]int64, len(events))
			for i := range events {
				switch x := r.IntN(100); {
				case x < 20:
					stored[i] = events[i].Ev.TS + r.Int64N(late+1)
				case x < 25:
					stored[i] = events[i].Ev.TS - r.Int64N(late/2)
				default:
					stored[i] = events[i].Ev.TS + r.Int64N(int64(time.Second))
				}
			}
			order := make([]int, len(events))
			for i := range order {
				order[i] = i
			}
			slices.SortFunc(order, func(a, b int) int { return cmp.Compare(stored[a], stored[b]) })
			delivered := make([]oracle.Delivered, len(events))
			for k, i := range order {
				delivered[k] = events[i]
				delivered[k].Ev.Stored = stored[i]
			}

			clock := &fakeClock{}
			cfg := engine.Config{SessionTTL: time.Duration(ttl), MaxLate: time.Duration(late), Now: clock.Now, MaxViews: 32}
			live := mustEngine(t, cfg)
			followed := oracle.RandomFilter(r, oracle.ClassC, users)
			checks, online := 0, 0
			check := func(e *engine.Engine, upTo int, now int64, what string) {
				t.Helper()
				truth := oracle.StateAt(delivered[:upTo], ttl, now)
				for _, tn := range tenants {
					for u := range users {
						f := &engine.Filter{UserIDs: []string{fmt.Sprint("u", u)}}
						checkQuery(t, e, truth, tn, f, what+" user")
						online += int(oracle.Query(truth[tn], f).Connected)
					}
					for i := range 60 {
						checkQuery(t, e, truth, tn, oracle.RandomFilter(r, oracle.Class(i%3), users), what)
						checks++
					}
					checkQuery(t, e, truth, tn, followed, what+" followed view")
					for by := engine.ByGroup; by <= engine.ByChat; by++ {
						checkBreakdown(t, e, truth, tn, by, followed, what)
					}
				}
			}
			// replay applies the first upTo deliveries to a new engine
			// whose clock says now, as a restart reading the stream does.
			replay := func(upTo int, now time.Time) *engine.Engine {
				c := cfg
				c.Now = func() time.Time { return now }
				e := mustEngine(t, c)
				for k := range delivered[:upTo] {
					e.Apply(delivered[k].Tenant, &delivered[k].Ev)
				}
				e.Expire(now)
				return e
			}
			// restored starts from a snapshot of live taken at the first
			// check, with the users' spans, and applies the rest as live
			// does.
			var restored *engine.Engine
			for k := range delivered {
				clock.t = time.Unix(0, delivered[k].Ev.Stored)
				live.Apply(delivered[k].Tenant, &delivered[k].Ev)
				if restored != nil {
					restored.Apply(delivered[k].Tenant, &delivered[k].Ev)
				}
				if k == len(delivered)/5-1 {
					var buf bytes.Buffer
					if err := live.WriteSnapshot(&buf, engine.SnapshotInfo{}); err != nil {
						t.Fatal(err)
					}
					restored = mustEngine(t, cfg)
					if _, err := restored.ReadSnapshot(&buf); err != nil {
						t.Fatal(err)
					}
				}
				if k%40 == 0 {
					live.Expire(clock.t)
				}
				if k == 0 {
					live.Query("acme", followed) // a view that follows every event
				}
				if (k+1)%(len(delivered)/5) == 0 || k == len(delivered)-1 {
					live.Expire(clock.t)
					check(live, k+1, clock.t.UnixNano(), fmt.Sprintf("live after %d events", k+1))
					check(replay(k+1, clock.t), k+1, clock.t.UnixNano(), fmt.Sprintf("replay of %d events", k+1))
					if restored != nil && k >= len(delivered)/5 {
						restored.Expire(clock.t)
						check(restored, k+1, clock.t.UnixNano(), fmt.Sprintf("restored from a snapshot, after %d events", k+1))
					}
				}
			}
			if online < 100 {
				t.Fatalf("%d users online over all checks: the test proves little", online)
			}
			if checks < 100 {
				t.Fatalf("only %d filters checked", checks)
			}
		})
	}
}

// TestExpireWhileApplying runs a pass of Expire, which takes the shard's
// lock a chunk of users at a time, while events are applied to the same
// tenant: to users it has visited, to users it has not, and to users new
// since it began. The state after is the oracle's at the pass's time, and
// the one of the pass and then the events, byte for byte: the apply path
// judges expiry by the same clock.
func TestExpireWhileApplying(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 35))
	clock := &fakeClock{t0}
	cfg := engine.Config{SessionTTL: time.Minute, MaxLate: time.Second, Now: clock.Now}
	live, sequential := mustEngine(t, cfg), mustEngine(t, cfg)
	// Three storage chunks of users and more, every session ending at the
	// pass.
	old := oracle.EventsFrom(r, []string{"t"}, 10_000, 2, 0, t0.UnixNano(), int64(time.Second))
	for _, e := range []*engine.Engine{live, sequential} {
		for _, d := range old {
			e.Apply(d.Tenant, &d.Ev)
		}
	}
	clock.t = t0.Add(time.Hour)
	// Fresh events of a third of the users, and of 2,000 new ones: the
	// others' sessions only the pass ends.
	fresh := slices.DeleteFunc(oracle.EventsFrom(r, []string{"t"}, 12_000, 2, 0, clock.t.UnixNano()-int64(20*time.Second), int64(time.Second)),
		func(d oracle.Delivered) bool {
			var u int
			fmt.Sscanf(d.Ev.UserID, "u%d", &u)
			return u >= 3_000 && u < 10_000
		})
	r.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })

	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, d := range fresh {
			live.Apply(d.Tenant, &d.Ev)
		}
	}()
	live.Expire(clock.t)
	<-done
	if n := sequential.Expire(clock.t); n < 2_000 {
		t.Fatalf("%d sessions expired: the test proves little", n)
	}
	for _, d := range fresh {
		sequential.Apply(d.Tenant, &d.Ev)
	}

	var got, want bytes.Buffer
	if err := live.WriteSnapshot(&got, engine.SnapshotInfo{}); err != nil {
		t.Fatal(err)
	}
	if err := sequential.WriteSnapshot(&want, engine.SnapshotInfo{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the state after expiring while applying differs from expiring then applying (connected %d, want %d)", connected(live), connected(sequential))
	}
	truth := oracle.StateAt(append(old, fresh...), int64(cfg.SessionTTL), clock.t.UnixNano())
	checkQuery(t, live, truth, "t", &engine.Filter{}, "after the pass")
	for i := range 30 {
		checkQuery(t, live, truth, "t", oracle.RandomFilter(r, oracle.Class(i%3), 12_000), "after the pass")
	}
	if connected(live) == 0 {
		t.Fatal("no one connected after the fresh events: the test proves little")
	}
}
