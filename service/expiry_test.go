package service_test

import (
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
