package engine_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
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

func TestNoTTLNeverExpires(t *testing.T) {
	e := mustEngine(t, engine.Config{})
	e.Apply("t", event(presence.Login, "u", t0))
	if n := e.Expire(t0.Add(1000 * time.Hour)); n != 0 || connected(e) != 1 {
		t.Fatalf("expired %d, connected %d", n, connected(e))
	}
}

// timelineConnected is the oracle of contract section 1.3 for one user: walk
// the events in ts order; a connected session ends at newest ts + TTL when the
// next event (or now) comes later than that; only a login reconnects.
func timelineConnected(events []*presence.Event, ttl, now int64) bool {
	events = slices.Clone(events)
	slices.SortFunc(events, func(a, b *presence.Event) int { return int(a.TS - b.TS) })
	on, last := false, int64(0)
	for i, ev := range events {
		if on && i > 0 && ev.TS > last+ttl {
			on = false
		}
		switch ev.Type {
		case presence.Login:
			on = true
		case presence.Logout:
			on = false
		}
		last = ev.TS
	}
	return on && last+ttl >= now
}

// TestExpiryTimeline delivers each user's events in ts order, interleaved
// across users, with expiry ticks in between (as live) or with the clock far
// ahead (as a replay after a restart), and checks against the timeline oracle.
func TestExpiryTimeline(t *testing.T) {
	const ttl = int64(5 * time.Minute)
	r := rand.New(rand.NewPCG(3, 9))
	perUser := map[string][]*presence.Event{}
	var all []*presence.Event
	for u := range 200 {
		id := fmt.Sprint("u", u)
		ts := t0.UnixNano()
		for range 15 {
			ts += r.Int64N(2 * ttl) // gaps both under and over the TTL
			typ := []presence.Type{presence.Login, presence.Logout, presence.Heartbeat, presence.StatusChange}[r.IntN(4)]
			ev := event(typ, id, time.Unix(0, ts))
			perUser[id] = append(perUser[id], ev)
			all = append(all, ev)
		}
	}
	slices.SortStableFunc(all, func(a, b *presence.Event) int { return int(a.TS - b.TS) })
	// Stop the clock at the median event, so that some sessions are live and
	// some are over; what comes later is never delivered.
	end := all[len(all)/2].TS
	all = all[:len(all)/2+1]
	for id, evs := range perUser {
		perUser[id] = slices.DeleteFunc(evs, func(ev *presence.Event) bool { return ev.TS > end })
	}

	want := int64(0)
	for _, evs := range perUser {
		if timelineConnected(evs, ttl, end) {
			want++
		}
	}
	if want == 0 {
		t.Fatal("oracle says nobody is connected: the test would prove little")
	}

	t.Run("live", func(t *testing.T) {
		clock := &fakeClock{}
		e := mustEngine(t, engine.Config{SessionTTL: time.Duration(ttl), Now: clock.Now})
		for i, ev := range all {
			clock.t = time.Unix(0, ev.TS)
			e.Apply("t", ev)
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
		for _, ev := range all {
			e.Apply("t", ev)
		}
		e.Expire(clock.t)
		if got := connected(e); got != want {
			t.Fatalf("%d connected, oracle says %d", got, want)
		}
	})
}
