package ingest_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// startServer starts the embedded server on dir, listening on listen
// ("127.0.0.1:-1" for a random port). It is shut down at the end of the test.
func startServer(t testing.TB, dir, listen string) (*server.Server, string) {
	t.Helper()
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: listen, StoreDir: dir})
	if err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, url
}

// connect connects the way the program does, counting reconnects on reg.
func connect(t testing.TB, url string, reg prometheus.Registerer, extra ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := ingest.Connect(url, nil, reg, extra...)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	testenv.WaitFor(t, "the connection", nc.IsConnected)
	return nc
}

// publish does a plain core NATS publish, as most publishers do.
func publish(t testing.TB, nc *nats.Conn, subject, payload string) {
	t.Helper()
	if err := nc.Publish(subject, []byte(payload)); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

// record is one call of Apply, with a deep copy of the event.
type record struct {
	Tenant string
	Ev     presence.Event
}

// recorder is the Applier of the tests: it keeps what it was given. Users
// whose id starts with "stale" come back Stale, to exercise that result.
// With gate set, call number gateAt of Apply (from 0) waits for it to close;
// with gateUser set too, the first call for that user does instead.
type recorder struct {
	gate     chan struct{}
	gateAt   int32
	gateUser string
	entered  atomic.Int32 // calls of Apply begun
	gated    atomic.Bool
	resets   atomic.Int32 // calls of Reset

	mu   sync.Mutex
	recs []record
}

func (r *recorder) Apply(tenant string, ev *presence.Event) engine.Result {
	n := r.entered.Add(1)
	if r.gate != nil && (r.gateUser == "" && n-1 == r.gateAt ||
		r.gateUser != "" && ev.UserID == r.gateUser && r.gated.CompareAndSwap(false, true)) {
		<-r.gate
	}
	c := *ev
	c.GroupIDs = slices.Clone(ev.GroupIDs)
	c.ProjectIDs = slices.Clone(ev.ProjectIDs)
	c.RoutingGroupIDs = slices.Clone(ev.RoutingGroupIDs)
	c.UserID = strings.Clone(ev.UserID)
	r.mu.Lock()
	r.recs = append(r.recs, record{Tenant: strings.Clone(tenant), Ev: c})
	r.mu.Unlock()
	if strings.HasPrefix(ev.UserID, "stale") {
		return engine.Stale
	}
	return engine.Applied
}

// Reset forgets the records, as an engine forgets its state.
func (r *recorder) Reset() {
	r.resets.Add(1)
	r.mu.Lock()
	r.recs = nil
	r.mu.Unlock()
}

func (r *recorder) records() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// runner is an Ingester running in the background.
type runner struct {
	*ingest.Ingester
	rec    *recorder
	eng    *gatedEngine
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startIngester runs an Ingester on cfg, filling Applier and Registerer with
// a fresh recorder and registry when they are nil. It is stopped at the end
// of the test, and must then return nil.
func startIngester(t testing.TB, cfg ingest.Config) *runner {
	t.Helper()
	r := &runner{done: make(chan error, 1)}
	if cfg.Applier == nil {
		r.rec = &recorder{}
		cfg.Applier = r.rec
	} else if rec, ok := cfg.Applier.(*recorder); ok {
		r.rec = rec
	} else if eng, ok := cfg.Applier.(*gatedEngine); ok {
		r.eng = eng
	}
	if cfg.Registerer == nil {
		r.reg = prometheus.NewPedanticRegistry()
		cfg.Registerer = r.reg
	} else if reg, ok := cfg.Registerer.(*prometheus.Registry); ok {
		r.reg = reg
	}
	ing, err := ingest.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.Ingester = ing
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- ing.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// Applier returns the runner's engine, for the tests that gave it one.
func (r *runner) Applier(t testing.TB) *gatedEngine {
	t.Helper()
	if r.eng == nil {
		t.Fatal("the runner has no engine")
	}
	return r.eng
}

// stop cancels Run and checks that it returns nil. It may be called again.
func (r *runner) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(testenv.WaitTimeout):
		t.Fatalf("Run did not return within %v of cancel", testenv.WaitTimeout)
	}
}

// waitApplied waits until the ingester has applied the stream up to seq.
func (r *runner) waitApplied(t testing.TB, seq uint64) {
	t.Helper()
	testenv.WaitFor(t, "the stream to be applied", func() bool { return r.AppliedSeq() >= seq })
}

// streamMsgs returns every message of a stream, in order.
func streamMsgs(t testing.TB, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.WaitTimeout)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream %s message %d: %v", name, seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// lastSeq returns the last sequence of a stream.
func lastSeq(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.WaitTimeout)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().State.LastSeq
}

// waitStored waits until the stream holds seq, for tests that publish with a
// plain publish and must know the stream has everything.
func waitStored(t testing.TB, js jetstream.JetStream, name string, seq uint64) {
	t.Helper()
	testenv.WaitFor(t, "the stream to store the messages", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, name)
		return err == nil && s.CachedInfo().State.LastSeq >= seq
	})
}

func bufferLogger(buf *testenv.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
