package service_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// TestSessionExpiry wires -session-ttl: a user with no event for the TTL is
// disconnected by the timer, and only a later login connects it again.
func TestSessionExpiry(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SessionTTL = 3 * time.Second
	svc := start(t, cfg)
	addr := svc.HTTPAddr()
	nc := natsConnect(t, svc.NATSURL())
	sent := 0
	send := func(typ presence.Type, user string) {
		ev := presence.Event{Type: typ, UserID: user, TS: time.Now().UnixNano(), Fields: presence.HasTS}
		publishEvents(t, nc, []oracle.Delivered{{Tenant: "default", Ev: ev}})
		sent++
	}
	connected := func() int64 { return indicator(t, addr, "", nil, &engine.Filter{}).ConnectedUsersCount }

	send(presence.Login, "quiet")
	send(presence.Login, "busy")
	testenv.WaitFor(t, "both logins", func() bool { return connected() == 2 })
	// Keep one session alive with heartbeats until the other has expired.
	deadline := time.Now().Add(20 * time.Second)
	for connected() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the quiet session did not expire")
		}
		send(presence.Heartbeat, "busy")
		time.Sleep(200 * time.Millisecond)
	}
	send(presence.Heartbeat, "busy")
	send(presence.Heartbeat, "quiet")
	testenv.WaitFor(t, "the heartbeats", func() bool { return eventsCounted(t, addr) == sent })
	if got := connected(); got != 1 {
		t.Fatalf("after a heartbeat of the expired session: %d connected, want 1 (only a login reconnects)", got)
	}
	send(presence.Login, "quiet")
	testenv.WaitFor(t, "the new login", func() bool { return connected() == 2 })
}

// TestSessionExpiryLateEvents publishes, in a shuffled order, events whose
// ts lie up to 4.5 minutes in the past (within -max-clock-skew of the time
// the stream stores them), with silences under and over the TTL, and checks
// every user, random filters and breakdowns against the oracle of contract
// 1.3 in ts order: live; after a restart from the shutdown snapshot, with
// the second half of the events published then; and after a replay of the
// whole stream. A user's last event is either well within the TTL of now or
// well past it, so that the checks do not depend on when they run.
func TestSessionExpiryLateEvents(t *testing.T) {
	const ttl = 2 * time.Minute
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SessionTTL = ttl
	now := time.Now()
	r := rand.New(rand.NewPCG(5, 5))
	tenants := []string{"acme", "globex"}
	const users = 60
	gen := oracle.EventsFrom(r, tenants, users, 7, 0, now.Add(-270*time.Second).UnixNano(), int64(4*ttl/3))
	var events []oracle.Delivered
	last := map[[2]string]int64{}
	for _, d := range gen {
		if d.Ev.TS <= now.UnixNano() {
			events = append(events, d)
			k := [2]string{d.Tenant, d.Ev.UserID}
			last[k] = max(last[k], d.Ev.TS)
		}
	}
	for k, ts := range last {
		if age := now.Sub(time.Unix(0, ts)); age > 20*time.Second && age < ttl+20*time.Second {
			hb := presence.Event{Type: presence.Heartbeat, UserID: k[1], TS: now.Add(-10 * time.Second).UnixNano(), Fields: presence.HasTS}
			events = append(events, oracle.Delivered{Tenant: k[0], Ev: hb})
		}
	}
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	half := len(events) / 2

	check := func(addr string, upTo int, what string) {
		t.Helper()
		truth := oracle.StateAt(events[:upTo], int64(ttl), time.Now().UnixNano())
		online := 0
		for _, tn := range tenants {
			header := map[string]string{"X-Tenant-Id": tn}
			ask := func(f *engine.Filter) {
				t.Helper()
				if got, want := indicator(t, addr, "", header, f), oracle.Answer(truth[tn], f); got != want {
					t.Fatalf("%s: tenant %s filter %+v:\n got %+v\nwant %+v", what, tn, *f, got, want)
				}
			}
			for u := range users {
				f := &engine.Filter{UserIDs: []string{fmt.Sprint("u", u)}}
				ask(f)
				online += int(oracle.Query(truth[tn], f).Connected)
			}
			for i := range 60 {
				ask(oracle.RandomFilter(r, oracle.Class(i%3), users))
			}
			for by := range testenv.DimensionNames {
				checkBreakdown(t, addr, "", header, truth[tn], engine.Dimension(by), &engine.Filter{}, what)
			}
		}
		if online == 0 {
			t.Fatalf("%s: nobody online: the check proves little", what)
		}
	}

	svc := start(t, cfg)
	nc := natsConnect(t, svc.NATSURL())
	publishEvents(t, nc, events[:half])
	testenv.WaitFor(t, "the first half", func() bool { return eventsCounted(t, svc.HTTPAddr()) == half })
	check(svc.HTTPAddr(), half, "live")
	svc.stop(t)

	svc = start(t, cfg) // from the shutdown snapshot
	nc = natsConnect(t, svc.NATSURL())
	publishEvents(t, nc, events[half:])
	testenv.WaitFor(t, "the second half", func() bool { return eventsCounted(t, svc.HTTPAddr()) == len(events)-half })
	check(svc.HTTPAddr(), len(events), "restarted from a snapshot")
	svc.stop(t)

	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	svc = start(t, cfg) // the whole stream again
	check(svc.HTTPAddr(), len(events), "replayed")
}
