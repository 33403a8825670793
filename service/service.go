package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/publish"
	"github.com/presenced/presenced/simulate"
	"github.com/presenced/presenced/snapshot"
)

// Service is a running presenced. Start it with Start; it stops when the
// context given to Start ends, and Wait returns once it has.
type Service struct {
	cfg       Config
	log       *slog.Logger
	engine    *engine.Engine
	snapshots *snapshot.Dir
	natsSrv   *server.Server // nil with an external NATS server
	bucket    *snapshot.Bucket
	natsURL   string
	conn      *nats.Conn
	js        jetstream.JetStream
	ingester  *ingest.Ingester
	api       *api.Server
	http      *http.Server
	httpAddr  string

	done chan struct{}
	err  error
}

// Start validates cfg, loads the newest snapshot, starts (or connects to)
// NATS, and serves HTTP. It returns once the HTTP listener is bound; the
// stream is then read in the background and /readyz turns 200 when it has
// caught up. Everything stops when ctx ends. A nil logger discards the logs.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: logger, done: make(chan struct{})}
	if err := s.start(ctx); err != nil {
		s.closeNATS()
		return nil, err
	}
	return s, nil
}

// Run starts the service and waits until ctx ends and it has stopped.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	s, err := Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return s.Wait()
}

func (s *Service) start(ctx context.Context) error {
	cfg := s.cfg
	var tokens *api.Tokens
	if cfg.Tokens != "" {
		var err error
		if tokens, err = api.LoadTokens(cfg.Tokens); err != nil {
			return err
		}
	} else if !cfg.InsecureOpen && !api.IsLoopback(cfg.HTTPAddr) {
		return fmt.Errorf("-http-addr %s is not a loopback address: open mode (no -tokens) needs -insecure-open there", cfg.HTTPAddr)
	}

	var err error
	// Events stored at most -max-clock-skew after their ts are applied as in
	// ts order under session expiry (contract 1.3).
	if s.engine, err = engine.New(engine.Config{SessionTTL: cfg.SessionTTL, MaxLate: cfg.MaxClockSkew}); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	s.natsURL = cfg.NATSURL
	if s.natsURL == "" {
		s.natsSrv, s.natsURL, err = ingest.StartServer(ingest.ServerConfig{
			Listen:     cfg.NATSListen,
			StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
			ConfigFile: cfg.NATSConfig,
			Logger:     s.log,
		})
		if err != nil {
			return err
		}
		s.log.Info("embedded NATS server started", "url", s.natsURL)
	}
	opts := []nats.Option{nats.Name("presenced")}
	switch {
	case cfg.NATSCreds != "":
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	case cfg.NATSUser != "":
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
	}
	if s.conn, err = ingest.Connect(s.natsURL, s.log, reg, opts...); err != nil {
		return err
	}
	if s.js, err = jetstream.New(s.conn); err != nil {
		return err
	}
	s.snapshots = &snapshot.Dir{Path: filepath.Join(cfg.DataDir, "snapshots"), Logger: s.log}
	s.bucket = snapshot.NewBucket(s.js, cfg.Stream+"_SNAPSHOTS")
	info, err := s.loadSnapshot(ctx)
	if err != nil {
		return err
	}

	s.ingester, err = ingest.New(ingest.Config{
		Conn:          s.conn,
		Applier:       s.engine,
		Prefix:        cfg.SubjectPrefix,
		Stream:        cfg.Stream,
		MaxAge:        cfg.StreamMaxAge,
		MaxClockSkew:  cfg.MaxClockSkew,
		StartSeq:      info.Sequence + 1,
		StreamCreated: info.StreamCreated,
		Logger:        s.log,
		Registerer:    reg,
	})
	if err != nil {
		return err
	}

	apiSrv, err := api.New(api.Config{
		Engine:    s.engine,
		Tokens:    tokens,
		Ready:     s.ingester.Ready,
		Registry:  reg,
		Logger:    s.log,
		RateLimit: rate.Limit(cfg.RateLimit),
	})
	if err != nil {
		return err
	}
	s.api = apiSrv
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("-http-addr: %w", err)
	}
	s.httpAddr = ln.Addr().String()
	s.http = apiSrv.HTTPServer(cfg.HTTPAddr)
	s.log.Info("serving HTTP", "addr", s.httpAddr, "mode", map[bool]string{true: "tokens", false: "open"}[tokens != nil])

	go s.run(ctx, ln)
	return nil
}

// loadSnapshot loads the newest valid snapshot of the data dir, or else the
// one in the object store bucket (a new instance with an empty data dir), or
// none: the stream is then read from its first message.
//
// The engine refuses a snapshot written with another session TTL, and
// accept one of another stream name. Whether the snapshot is of the stream
// as it is now (not of one deleted and created again under the name) only
// NATS can tell: the ingester checks the creation time recorded in the
// snapshot against the stream's, and rebuilds the engine from the stream's
// first message when they differ.
func (s *Service) loadSnapshot(ctx context.Context) (engine.SnapshotInfo, error) {
	accept := func(info engine.SnapshotInfo) error {
		if info.Stream != "" && info.Stream != s.cfg.Stream {
			return fmt.Errorf("taken of stream %s, and -stream is %s", info.Stream, s.cfg.Stream)
		}
		return nil
	}
	info, err := s.snapshots.Load(s.engine, accept)
	if err != nil {
		return info, err
	}
	from := "data dir"
	if info.Sequence == 0 {
		from = "object store"
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		info, err = s.bucket.Load(lctx, s.engine, accept)
		cancel()
		if err != nil {
			s.log.Warn("no snapshot from the object store: reading the whole stream", "err", err)
			return engine.SnapshotInfo{}, nil
		}
	}
	if info.Sequence > 0 {
		created := "unknown"
		if !info.StreamCreated.IsZero() {
			created = info.StreamCreated.UTC().Format(time.RFC3339Nano)
		}
		s.log.Info("loaded snapshot", "from", from, "sequence", info.Sequence, "stream_created", created,
			"format", info.Version, "written", info.Written, "users", s.engine.Stats().Users)
	}
	return info, nil
}

// run serves until ctx ends, then shuts down in order: HTTP first (finish
// the requests in flight), then ingest (finish the message in hand), then
// the final snapshot, then NATS.
func (s *Service) run(ctx context.Context, ln net.Listener) {
	defer close(s.done)
	var errs []error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	work.Go(func() {
		if err := s.ingester.Run(workCtx); err != nil {
			fail(err)
			stopWork() // without ingest the service is useless: stop it all
		}
	})
	work.Go(func() { s.expireLoop(workCtx) })
	work.Go(func() { s.api.Run(workCtx) }) // the dashboard's history
	work.Go(func() { s.snapshotLoop(workCtx) })
	if s.cfg.Simulate > 0 {
		work.Go(func() {
			if err := s.simulate(workCtx); err != nil {
				fail(err)
			}
		})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.Serve(ln) }()

	select {
	case <-ctx.Done():
	case <-workCtx.Done():
	case err := <-serveErr:
		fail(err)
	}
	s.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := s.api.Shutdown(shutCtx); err != nil { // WebSockets closed with 1001
		fail(err)
	}
	if err := s.http.Shutdown(shutCtx); err != nil {
		fail(err)
	}
	cancel()
	stopWork()
	work.Wait()
	if err := s.snapshot(); err != nil {
		fail(err)
	}
	s.closeNATS()
	s.err = errors.Join(errs...)
}

func (s *Service) closeNATS() {
	if s.conn != nil {
		s.conn.Close()
	}
	if s.natsSrv != nil {
		s.natsSrv.Shutdown()
		s.natsSrv.WaitForShutdown()
	}
}

// expireLoop ends expired sessions every tenth of the TTL (at most every
// second, at least every minute), so a session outlives its TTL by at most
// that much.
func (s *Service) expireLoop(ctx context.Context) {
	ttl := s.cfg.SessionTTL
	if ttl == 0 {
		return
	}
	tick := time.NewTicker(min(max(ttl/10, time.Second), time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if n := s.engine.Expire(now); n > 0 {
				s.log.Debug("sessions expired", "count", n)
			}
		}
	}
}

func (s *Service) snapshotLoop(ctx context.Context) {
	if s.cfg.SnapshotInterval == 0 {
		return
	}
	tick := time.NewTicker(s.cfg.SnapshotInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := s.snapshot(); err != nil {
				s.log.Error("snapshot failed", "err", err)
			}
		}
	}
}

// snapshot writes the engine state as of the last applied message, with the
// stream it counts in. Ingest waits only while the state is copied to
// memory, not for the disk.
func (s *Service) snapshot() error {
	var buf bytes.Buffer
	var info engine.SnapshotInfo
	var err error
	s.ingester.Checkpoint(func(pos ingest.Position) {
		info = engine.SnapshotInfo{Sequence: pos.Seq, Written: time.Now(), Stream: s.cfg.Stream, StreamCreated: pos.StreamCreated}
		err = s.engine.WriteSnapshot(&buf, info)
	})
	if err != nil || info.Sequence == 0 {
		return err
	}
	if err := s.snapshots.Save(buf.Bytes(), info); err != nil {
		return err
	}
	// The bucket is a convenience for new instances: failing to update it
	// leaves them a longer replay, not a wrong state.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch err := s.bucket.Save(ctx, buf.Bytes(), info); {
	case errors.Is(err, snapshot.ErrNotNewer):
		s.log.Debug("snapshot not copied to the object store: another instance's is as new", "err", err)
	case err != nil:
		s.log.Warn("snapshot not copied to the object store", "err", err)
	}
	return nil
}

// simulate publishes the -simulate agents through the service's own NATS
// connection, as any publisher would.
func (s *Service) simulate(ctx context.Context) error {
	pub, err := publish.New(s.js, s.cfg.SubjectPrefix)
	if err != nil {
		return err
	}
	s.log.Info("simulating agents", "agents", s.cfg.Simulate, "tenant", simulate.DefaultTenant)
	return simulate.Run(ctx, simulate.Config{Agents: s.cfg.Simulate, Publisher: pub, Logger: s.log})
}

// Wait blocks until the service has stopped and returns what went wrong, if
// anything.
func (s *Service) Wait() error {
	<-s.done
	return s.err
}

// HTTPAddr is the address the HTTP server listens on.
func (s *Service) HTTPAddr() string { return s.httpAddr }

// NATSURL is the URL of the NATS server in use, embedded or external.
func (s *Service) NATSURL() string { return s.natsURL }

// Ready reports whether the service has caught up with the stream.
func (s *Service) Ready() bool { return s.ingester.Ready() }
