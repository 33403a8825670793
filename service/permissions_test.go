package service_test

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// TestPublisherPermissions runs the embedded server with examples/nats.conf:
// a tenant's desk publishes its own events, and is refused another's.
func TestPublisherPermissions(t *testing.T) {
	_, here, _, _ := runtime.Caller(0)
	cfg := testConfig(t.TempDir())
	cfg.NATSConfig = filepath.Join(filepath.Dir(here), "..", "examples", "nats.conf")
	cfg.NATSUser, cfg.NATSPassword = "presenced", "change-me-engine"
	svc := start(t, cfg)

	refused := make(chan error, 1)
	desk, err := nats.Connect(svc.NATSURL(), nats.UserInfo("desk-acme", "change-me-acme"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case refused <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer desk.Close()
	login := func(tenant string) {
		ev := presence.Event{Type: presence.Login, UserID: "agent-1", TS: time.Now().UnixNano(), Fields: presence.HasTS}
		subject, _ := presence.Subject("presence", tenant, presence.Login)
		if err := desk.Publish(subject, ev.AppendJSON(nil)); err != nil {
			t.Fatal(err)
		}
		if err := desk.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	login("globex")
	select {
	case err := <-refused:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("publishing for globex: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publishing for another tenant was not refused")
	}
	login("acme")
	testenv.WaitFor(t, "acme's login", func() bool { return eventsCounted(t, svc.HTTPAddr()) == 1 })
	for tenant, want := range map[string]int64{"acme": 1, "globex": 0} {
		got := indicator(t, svc.HTTPAddr(), "", map[string]string{"X-Tenant-Id": tenant}, &engine.Filter{})
		if got.ConnectedUsersCount != want {
			t.Errorf("%s: %d connected, want %d", tenant, got.ConnectedUsersCount, want)
		}
	}
}
