package service

import (
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
	"github.com/presenced/presenced/cluster"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/publish"
	"github.com/presenced/presenced/simulate"
)

// Service is a running presenced. Start it with Start; it stops when the
// context given to Start ends, and Wait returns once it has.
type Service struct {
	cfg      Config
	log      *slog.Logger
	natsSrv  *server.Server // nil with an external NATS server
	natsURL  string
	conn     *nats.Conn
	js       jetstream.JetStream
	node     *cluster.Node
	api      *api.Server
	http     *http.Server
	httpAddr string

	done chan struct{}
	err  error
}

// Start validates cfg, starts (or connects to) NATS, makes sure of the
// streams, joins the instances of the stream and takes its partitions, and
// serves HTTP. It returns once the HTTP listener is bound; each partition is
// then read in the background and /readyz turns 200 when every partition
// held has caught up. Everything stops when ctx ends. A nil logger discards
// the logs.
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
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

	// The streams first: a stream of another partition count, or that does
	// not capture the events, stops the start here, naming why.
	icfg := ingest.Config{
		Prefix:       cfg.SubjectPrefix,
		Stream:       cfg.Stream,
		MaxAge:       cfg.StreamMaxAge,
		MaxClockSkew: cfg.MaxClockSkew,
		Partitions:   cfg.Partitions,
		Replicas:     cfg.StreamReplicas,
		Logger:       s.log,
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = ingest.Prepare(pctx, s.js, icfg)
	cancel()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("-http-addr: %w", err)
	}
	s.httpAddr = ln.Addr().String()
	instance, err := cfg.instanceName(s.httpAddr)
	if err != nil {
		ln.Close()
		return err
	}
	s.node, err = cluster.Start(ctx, cluster.Config{
		Conn:       s.conn,
		JS:         s.js,
		Instance:   instance,
		HTTPAddr:   s.httpAddr,
		Partitions: cfg.Partitions,
		Copies:     cfg.Copies,
		Replicas:   cfg.StreamReplicas,
		// Events stored at most -max-clock-skew after their ts are
		// applied as in ts order under session expiry (contract 1.3).
		Engine:           engine.Config{SessionTTL: cfg.SessionTTL, MaxLate: cfg.MaxClockSkew},
		Ingest:           icfg,
		DataDir:          cfg.DataDir,
		SnapshotInterval: cfg.SnapshotInterval,
		Logger:           s.log,
		Registerer:       reg,
	})
	if err != nil {
		ln.Close()
		return err
	}
	apiSrv, err := api.New(api.Config{
		Router:    s.node,
		Tokens:    tokens,
		Ready:     s.node.Ready,
		Registry:  reg,
		Logger:    s.log,
		RateLimit: rate.Limit(cfg.RateLimit),
	})
	if err != nil {
		ln.Close()
		return err
	}
	s.api = apiSrv
	s.node.SetExecutor(apiSrv)
	s.http = apiSrv.HTTPServer(cfg.HTTPAddr)
	s.log.Info("serving HTTP", "addr", s.httpAddr, "instance", instance, "partitions", cfg.Partitions,
		"mode", map[bool]string{true: "tokens", false: "open"}[tokens != nil])

	go s.run(ctx, ln)
	return nil
}

// run serves until ctx ends, then shuts down in order: the partitions
// (handed over to the other instances, each with a final snapshot), then
// HTTP (finish the requests in flight), then NATS.
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
	work.Go(func() { s.api.Run(workCtx) }) // the dashboard's history
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
	case err := <-s.node.Failed(): // without ingest the service is useless: stop it all
		fail(err)
	case err := <-serveErr:
		fail(err)
	}
	s.log.Info("shutting down")
	// The partitions first, while HTTP still serves: their next holders
	// take them over meanwhile, and what this instance is asked is answered
	// (forwarded once it holds nothing). /readyz says 503 from now on.
	if err := s.node.Leave(context.Background()); err != nil {
		fail(err)
	}
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

// Ready reports whether the service has caught up with every partition it
// holds.
func (s *Service) Ready() bool { return s.node.Ready() }
