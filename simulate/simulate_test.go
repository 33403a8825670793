package simulate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
	"github.com/presenced/presenced/simulate"
)

// setup starts an embedded NATS server with the stream presenced creates, and
// returns a Publisher on it and the stream.
func setup(t testing.TB) (*publish.Publisher, jetstream.Stream) {
	t.Helper()
	_, js := testenv.StartJetStream(t)
	stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "PRESENCE", Subjects: []string{"presence.*.*"},
	})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}
	return pub, stream
}

// fakeClock advances one second per reading, that is per tick.
type fakeClock struct {
	start time.Time
	reads atomic.Int64
}

func (c *fakeClock) Now() time.Time {
	n := c.reads.Add(1)
	return c.start.Add(time.Duration(n-1) * time.Second)
}

func TestConfig(t *testing.T) {
	pub, _ := setup(t)
	tests := []struct {
		name string
		cfg  simulate.Config
		want string
	}{
		{"no agents", simulate.Config{Publisher: pub}, "Agents: must be from 1 to 100000, not 0"},
		{"negative agents", simulate.Config{Agents: -1, Publisher: pub}, "Agents: must be from 1 to 100000, not -1"},
		{"too many agents", simulate.Config{Agents: simulate.MaxAgents + 1, Publisher: pub}, "Agents: must be from 1 to 100000, not 100001"},
		{"no publisher", simulate.Config{Agents: 1}, "Publisher: required"},
		{"negative tick", simulate.Config{Agents: 1, Publisher: pub, Tick: -time.Second}, "Tick: must not be negative"},
		{"bad tenant", simulate.Config{Agents: 1, Publisher: pub, Tenant: "a.b"}, "Tenant: must be 1 to 64 characters of A-Z a-z 0-9 _ -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := simulate.Run(context.Background(), tt.cfg)
			if !errors.Is(err, simulate.ErrConfig) || err.Error() != "simulate: invalid config: "+tt.want {
				t.Fatalf("Run: %v, want ErrConfig: %s", err, tt.want)
			}
		})
	}
}

// model is the test's own view of an agent, built from the events alone.
type model struct {
	online    bool
	maxSlots  int // -1 until a login says it
	slots     int
	chat      presence.Status
	lastTS    int64
	loginSeen bool
}

// TestRun runs the simulator for a number of ticks, reads back what it
// published and checks it from the events alone.
func TestRun(t *testing.T) {
	const agents, ticks = 40, 150
	pub, stream := setup(t)
	clock := &fakeClock{start: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- simulate.Run(ctx, simulate.Config{
			Agents:    agents,
			Tenant:    "acme",
			Publisher: pub,
			Rand:      rand.New(rand.NewPCG(1, 2)),
			Tick:      time.Millisecond,
			Now:       clock.Now,
		})
	}()
	testenv.WaitFor(t, fmt.Sprintf("%d ticks", ticks), func() bool { return clock.reads.Load() >= ticks })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v on cancel, want nil", err)
		}
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("Run did not return after cancel")
	}

	models := map[string]*model{}
	for i := 1; i <= agents; i++ {
		models[fmt.Sprintf("agent-%04d", i)] = &model{maxSlots: -1}
	}
	counts := map[string]int{}
	online, maxOnline := 0, 0
	warmUpEnd := clock.start.Add(5 * time.Second).UnixNano()
	onlineAfterWarmUp := -1

	for _, m := range readStream(t, stream) {
		ev := &m.ev
		where := fmt.Sprintf("%s %s at %v", m.subject, ev.UserID, time.Unix(0, ev.TS).UTC())
		if m.tenant != "acme" {
			t.Fatalf("%s: tenant %q, want acme", where, m.tenant)
		}
		a, ok := models[ev.UserID]
		if !ok {
			t.Fatalf("%s: unknown agent", where)
		}
		if !ev.Has(presence.HasTS) || ev.TS < a.lastTS {
			t.Fatalf("%s: ts missing or before the agent's previous event", where)
		}
		if ev.TS > warmUpEnd && onlineAfterWarmUp < 0 {
			onlineAfterWarmUp = online
		}
		a.lastTS = ev.TS
		counts[ev.Type.String()]++

		switch ev.Type {
		case presence.Login:
			all := presence.HasRole | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups |
				presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots
			switch {
			case a.online:
				t.Fatalf("%s: login of an agent already in", where)
			case !ev.Has(all):
				t.Fatalf("%s: login without the whole profile: %+v", where, ev)
			case len(ev.GroupIDs) < 1 || len(ev.GroupIDs) > 3 || len(ev.ProjectIDs) != 1 ||
				len(ev.RoutingGroupIDs) < 1 || len(ev.RoutingGroupIDs) > 2:
				t.Fatalf("%s: login with ids %v %v %v", where, ev.GroupIDs, ev.ProjectIDs, ev.RoutingGroupIDs)
			case ev.MaxSlots < 2 || ev.MaxSlots > 5 || ev.CurrentSlots != 0:
				t.Fatalf("%s: login with slots %d/%d", where, ev.CurrentSlots, ev.MaxSlots)
			}
			a.online, a.loginSeen = true, true
			a.maxSlots = int(ev.MaxSlots)
			online++
		case presence.Logout:
			if a.online {
				online--
			}
			a.online = false
		default:
			if !a.online {
				t.Fatalf("%s: %s event of an agent out", where, ev.Type)
			}
		}
		if ev.Has(presence.HasCurrentSlots) {
			next := int(ev.CurrentSlots)
			if ev.Type == presence.Slots {
				switch next - a.slots {
				case 1:
					counts["conversation start"]++
				case -1:
					counts["conversation end"]++
				default:
					t.Fatalf("%s: currentSlots from %d to %d", where, a.slots, next)
				}
			}
			a.slots = next
		}
		if ev.Has(presence.HasChat) {
			a.chat = ev.Chat
		}
		if a.online && a.slots > a.maxSlots {
			t.Fatalf("%s: currentSlots %d over maxSlots %d", where, a.slots, a.maxSlots)
		}
		if a.online && a.chat == presence.Available && a.slots >= a.maxSlots {
			t.Fatalf("%s: chat AVAILABLE while full (%d/%d)", where, a.slots, a.maxSlots)
		}
		if online < 0 || online > agents {
			t.Fatalf("%s: %d agents in, want 0 to %d", where, online, agents)
		}
		maxOnline = max(maxOnline, online)
	}

	t.Logf("events: %v; agents in: %d at the end, %d at most, %d after the warm-up", counts, online, maxOnline, onlineAfterWarmUp)
	for _, what := range []string{"login", "logout", "status", "slots", "heartbeat", "conversation start", "conversation end"} {
		if counts[what] == 0 {
			t.Errorf("no %s in %d ticks", what, ticks)
		}
	}
	if onlineAfterWarmUp < agents/2 {
		t.Errorf("%d of %d agents in after the warm-up, want most", onlineAfterWarmUp, agents)
	}
	if online == 0 {
		t.Errorf("no agent in at the end")
	}
}

// A batch that is not acknowledged leaves the model as it was: without a
// stream Run logs the failure and keeps trying, and once the stream exists
// it publishes the first round again.
func TestRunWithoutStream(t *testing.T) {
	const agents = 5
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}

	logs := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- simulate.Run(ctx, simulate.Config{
			Agents: agents, Publisher: pub, Tick: time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		})
	}()
	testenv.WaitFor(t, "the failure to be logged", func() bool { return strings.Contains(logs.String(), "publish failed") })
	stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "PRESENCE", Subjects: []string{"presence.*.*"}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the recovery to be logged", func() bool { return strings.Contains(logs.String(), "publishing again") })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Round 0 has a login or a logout for every agent; it is the first event
	// of each, whatever the failed attempts stored.
	first := map[string]presence.Type{}
	for _, m := range readStream(t, stream) {
		if m.tenant != simulate.DefaultTenant {
			t.Fatalf("%s: tenant %q, want %q", m.subject, m.tenant, simulate.DefaultTenant)
		}
		if _, seen := first[m.ev.UserID]; !seen {
			first[m.ev.UserID] = m.ev.Type
		}
	}
	for i := 1; i <= agents; i++ {
		id := fmt.Sprintf("agent-%04d", i)
		if typ := first[id]; typ != presence.Login && typ != presence.Logout {
			t.Errorf("%s: first event %s, want login or logout", id, typ)
		}
	}
}

// message is one message of the stream, decoded.
type message struct {
	subject, tenant string
	ev              presence.Event
}

// readStream decodes every message of the stream; one that does not decode
// fails the test.
func readStream(t testing.TB, s jetstream.Stream) []message {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]message, 0, info.State.Msgs)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg %d: %v", seq, err)
		}
		tenant, typ, err := presence.ParseSubject("presence", m.Subject)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		ev := presence.Event{Type: typ}
		if err := presence.Decode(m.Data, &ev); err != nil {
			t.Fatalf("message %d %s: %v", seq, m.Data, err)
		}
		ev.GroupIDs = slices.Clone(ev.GroupIDs)
		ev.ProjectIDs = slices.Clone(ev.ProjectIDs)
		ev.RoutingGroupIDs = slices.Clone(ev.RoutingGroupIDs)
		out = append(out, message{m.Subject, tenant, ev})
	}
	return out
}
