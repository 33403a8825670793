package service_test

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/service"
)

// startLogged is start with the service's log lines, Info and above, kept
// in a buffer as well as sent to the test log.
func startLogged(tb testing.TB, cfg service.Config) (*running, *testenv.Buffer) {
	tb.Helper()
	logs := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{tb}), &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc, err := service.Start(ctx, cfg, logger)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	r := &running{svc, cancel}
	tb.Cleanup(func() { r.cancel(); _ = r.Wait() })
	testenv.WaitFor(tb, "the service to be ready", svc.Ready)
	return r, logs
}

// recentEvents is oracle.Events moved to the last few minutes, so that a
// session TTL of an hour expires none of them.
func recentEvents(r *rand.Rand, users int) []oracle.Delivered {
	events := oracle.Events(r, e2eTenants, users, 6, 20)
	shift := time.Now().Add(-5*time.Minute).UnixNano() - 1_700_000_000_000_000_000
	for i := range events {
		events[i].Ev.TS += shift
	}
	return events
}

// sameAnswers compares two services' indicators for random filters of
// every class, and the oracle's over events.
func sameAnswers(t *testing.T, a, b string, events []oracle.Delivered, users int) {
	t.Helper()
	truth := oracle.State(events)
	r := rand.New(rand.NewPCG(41, 42))
	for i := range 150 {
		tn := e2eTenants[i%len(e2eTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		header := map[string]string{"X-Tenant-Id": tn}
		got, fresh := indicator(t, a, "", header, f), indicator(t, b, "", header, f)
		if want := oracle.Answer(truth[tn], f); got != want || fresh != want {
			t.Fatalf("tenant %s filter %+v:\n      got %+v\n    fresh %+v\n   oracle %+v", tn, *f, got, fresh, want)
		}
	}
}

// recreateStream deletes the event stream and creates it as presenced does.
func recreateStream(t *testing.T, js jetstream.JetStream) time.Time {
	t.Helper()
	ctx := context.Background()
	if err := js.DeleteStream(ctx, "PRESENCE"); err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRESENCE", Subjects: []string{"presence.*.*"},
		Storage: jetstream.FileStorage, MaxAge: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Created
}

func created(t *testing.T, js jetstream.JetStream) time.Time {
	t.Helper()
	s, err := js.Stream(context.Background(), "PRESENCE")
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Created
}

// TestRestartOnRecreatedStream stops presenced, recreates its stream with
// other events and starts it again on its data dir: the snapshot, of the old
// stream, is not used. The service says so in one Warn line naming both
// streams' creation times, replays the new stream from its first message,
// and answers as a fresh instance and the oracle do.
func TestRestartOnRecreatedStream(t *testing.T) {
	url, js := testenv.StartJetStream(t)
	cfg := testConfig(t.TempDir())
	cfg.NATSURL = url
	svc := start(t, cfg)
	nc := natsConnect(t, url)
	const users = 40
	r := rand.New(rand.NewPCG(31, 32))
	first := recentEvents(r, users)
	publishEvents(t, nc, first)
	testenv.WaitFor(t, "the first stream to be applied", func() bool { return eventsCounted(t, svc.HTTPAddr()) == len(first) })
	svc.stop(t) // writes the snapshot
	old := created(t, js)

	now := recreateStream(t, js)
	second := recentEvents(r, users/2)
	publishEvents(t, nc, second)
	svc, logs := startLogged(t, cfg)
	testenv.WaitFor(t, "the new stream to be applied", func() bool { return eventsCounted(t, svc.HTTPAddr()) == len(second) })

	fresh := testConfig(t.TempDir())
	fresh.NATSURL = url
	other := start(t, fresh)
	testenv.WaitFor(t, "the fresh instance", func() bool { return eventsCounted(t, other.HTTPAddr()) == len(second) })
	sameAnswers(t, svc.HTTPAddr(), other.HTTPAddr(), second, users/2)

	var warns []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") {
			warns = append(warns, line)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], old.UTC().Format(time.RFC3339Nano)) ||
		!strings.Contains(warns[0], now.UTC().Format(time.RFC3339Nano)) {
		t.Errorf("want one Warn line naming the snapshot's stream (%v) and the stream's (%v):\n%s", old, now, logs)
	}
	if got := metric(t, svc.HTTPAddr(), "presence_stream_resets_total"); got != 1 {
		t.Errorf("resets_total %v, want 1", got)
	}
}

// TestRestartWithAnotherTTL restarts presenced with another session TTL:
// its snapshot, written under the old one, is refused (the log names both
// TTLs) and the stream replayed from its first message.
func TestRestartWithAnotherTTL(t *testing.T) {
	url, _ := testenv.StartJetStream(t)
	cfg := testConfig(t.TempDir())
	cfg.NATSURL = url
	svc := start(t, cfg)
	const users = 30
	events := recentEvents(rand.New(rand.NewPCG(33, 34)), users)
	publishEvents(t, natsConnect(t, url), events)
	testenv.WaitFor(t, "the stream to be applied", func() bool { return eventsCounted(t, svc.HTTPAddr()) == len(events) })
	svc.stop(t)

	// The same TTL: the snapshot is used, nothing is replayed.
	svc = start(t, cfg)
	if got := eventsCounted(t, svc.HTTPAddr()); got != 0 {
		t.Fatalf("with the same TTL %d events replayed, want 0", got)
	}
	svc.stop(t)

	cfg.SessionTTL = time.Hour
	svc, logs := startLogged(t, cfg)
	testenv.WaitFor(t, "the replay", func() bool { return eventsCounted(t, svc.HTTPAddr()) == len(events) })
	if !strings.Contains(logs.String(), "written with session TTL 0s, the engine's is 1h0m0s") {
		t.Errorf("the log does not name both TTLs:\n%s", logs)
	}
	fresh := testConfig(t.TempDir())
	fresh.NATSURL, fresh.SessionTTL = url, time.Hour
	other := start(t, fresh)
	testenv.WaitFor(t, "the fresh instance", func() bool { return eventsCounted(t, other.HTTPAddr()) == len(events) })
	sameAnswers(t, svc.HTTPAddr(), other.HTTPAddr(), events, users)
}

// TestRestartAfterPurge stops presenced after its snapshot at 100, lets the
// stream go on to 600 and purges it up to 500: the restart logs the gap as
// an Error naming 101 to 499, counts it, and goes on from 500.
func TestRestartAfterPurge(t *testing.T) {
	url, js := testenv.StartJetStream(t)
	cfg := testConfig(t.TempDir())
	cfg.NATSURL = url
	svc := start(t, cfg)
	nc := natsConnect(t, url)
	const users = 60
	events := recentEvents(rand.New(rand.NewPCG(35, 36)), users) // 740
	rand.New(rand.NewPCG(39, 40)).Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	events = events[:600]
	publishEvents(t, nc, events[:100])
	testenv.WaitFor(t, "100 events applied", func() bool { return eventsCounted(t, svc.HTTPAddr()) == 100 })
	svc.stop(t)
	publishEvents(t, nc, events[100:])
	ctx := context.Background()
	stream, err := js.Stream(ctx, "PRESENCE")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "600 stored", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.LastSeq == 600
	})
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(500)); err != nil {
		t.Fatal(err)
	}

	svc, logs := startLogged(t, cfg)
	testenv.WaitFor(t, "the rest applied", func() bool { return eventsCounted(t, svc.HTTPAddr()) == 101 })
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "from=101 to=499") {
		t.Errorf("no Error line naming the gap 101 to 499:\n%s", logs)
	}
	if got := metric(t, svc.HTTPAddr(), "presence_stream_gaps_total"); got != 1 {
		t.Errorf("gaps_total %v, want 1", got)
	}
	// What the engine holds: the snapshot's 100 events and the stream's 500
	// to 600.
	kept := append(append([]oracle.Delivered(nil), events[:100]...), events[499:]...)
	truth := oracle.State(kept)
	r := rand.New(rand.NewPCG(37, 38))
	for i := range 100 {
		tn := e2eTenants[i%len(e2eTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		got := indicator(t, svc.HTTPAddr(), "", map[string]string{"X-Tenant-Id": tn}, f)
		if want := oracle.Answer(truth[tn], f); got != want {
			t.Fatalf("tenant %s filter %+v:\n got %+v\nwant %+v", tn, *f, got, want)
		}
	}
}
