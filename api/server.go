package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/presenced/presenced/engine"
)

// Engine is what the API reads of the presence engine; *engine.Engine is one.
type Engine interface {
	Query(tenant string, f *engine.Filter) engine.Indicator
	Breakdown(tenant string, by engine.Dimension, f *engine.Filter) []engine.Row
	Users(tenant string, f *engine.Filter, page engine.Page) (engine.UserPage, error)
	Watch(tenant string, f *engine.Filter) *engine.Watch
	Stats() engine.Stats
}

var _ Engine = (*engine.Engine)(nil)

// Server is the HTTP API: GraphQL over HTTP and WebSocket, GraphiQL, the
// dashboard and its history, health and metrics. It is safe for concurrent
// use. Run samples the history; Shutdown closes the WebSockets.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tokens  *Tokens
	schema  *graphql.Schema
	limits  *limiters
	metrics *httpMetrics
	// refusals bounds the log lines of refused tokens.
	refusals *rate.Limiter
	page     []byte
	board    []byte
	handler  http.Handler

	live    *liveMetrics
	sockets sockets
	clients clientSlots
	history *history

	// onFollow, set by tests before serving, is told the throttle interval
	// of each subscription the resolver starts: the one value of a
	// subscription a client cannot see without a clock.
	onFollow func(interval time.Duration)
}

// New checks cfg, fills in the defaults and registers the API's collectors.
// Its errors name the Config field and match ErrConfig, or come from the
// registry.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		tokens:   cfg.Tokens,
		limits:   newLimiters(cfg.RateLimit, cfg.RateBurst, maxLimiters),
		metrics:  newHTTPMetrics(),
		refusals: rate.NewLimiter(1, 10),
		live:     newLiveMetrics(),
		history:  newHistory(cfg.stats(), cfg.HistoryInterval, cfg.HistoryWindow),
	}
	var err error
	if s.schema, err = newSchema(s); err != nil {
		return nil, err // the embedded schema does not fit the resolvers: a bug
	}
	if s.page, err = renderHTML(graphiqlFS, "graphiql/index.html", cfg.Tokens != nil); err != nil {
		return nil, err
	}
	if s.board, err = renderHTML(dashboardFS, "dashboard/index.html", cfg.Tokens != nil); err != nil {
		return nil, err
	}
	if err := s.metrics.register(cfg.Registry); err != nil {
		return nil, err
	}
	if err := s.live.register(cfg.Registry); err != nil {
		return nil, err
	}
	if err := cfg.Registry.Register(newStatsCollector(cfg.stats())); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// Registry returns the registry /metrics serves (Config.Registry or the one
// New made).
func (s *Server) Registry() *prometheus.Registry { return s.cfg.Registry }

// Handler returns the API's routes:
//
//	POST /graphql          GraphQL over HTTP (JSON body of at most 1 MiB)
//	GET  /graphql          with Upgrade: websocket, GraphQL over WebSocket
//	                       (graphql-transport-ws): subscriptions and queries
//	GET  /graphql          otherwise the GraphiQL page, served offline
//	GET  /graphiql/{file}  the assets of that page
//	GET  /                 the live dashboard
//	GET  /dashboard/{file} the assets of the dashboard
//	GET  /api/history      the tenant's totals over the last HistoryWindow (JSON)
//	GET  /healthz          200 while the process runs
//	GET  /readyz           200 when Config.Ready says so, else 503
//	GET  /metrics          Prometheus exposition of Config.Registry
//
// Serve it with HTTPServer, whose Shutdown also closes the WebSockets.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /graphql", s.instrument("graphql", s.serveGraphQL))
	socket, page := s.instrument("graphql-ws", s.serveSocket), s.instrument("graphiql", s.servePage)
	mux.Handle("GET /graphql", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocket(r) {
			socket.ServeHTTP(w, r)
			return
		}
		page.ServeHTTP(w, r)
	}))
	mux.Handle("GET /graphiql/{file}", s.instrument("graphiql", serveAsset))
	mux.Handle("GET /{$}", s.instrument("dashboard", s.serveDashboard))
	mux.Handle("GET /dashboard/{file}", s.instrument("dashboard", serveDashboardAsset))
	mux.Handle("GET /api/history", s.instrument("history", s.serveHistory))
	mux.Handle("GET /healthz", s.instrument("healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	}))
	mux.Handle("GET /readyz", s.instrument("readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Ready() {
			writeText(w, http.StatusOK, "ready\n")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "not ready\n")
	}))
	mux.Handle("GET /metrics", s.instrument("metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	return mux
}

// shutdownWait bounds the Shutdown that the Shutdown of an http.Server of
// HTTPServer starts.
const shutdownWait = 15 * time.Second

// HTTPServer returns an http.Server for s's Handler on addr, with the
// timeouts of NewHTTPServer. Its Shutdown also starts s's (closing the
// WebSockets with 1001), without waiting for it: net/http does not know
// hijacked connections. Call Server.Shutdown first to wait.
func (s *Server) HTTPServer(addr string) *http.Server {
	hs := NewHTTPServer(addr, s.Handler())
	hs.RegisterOnShutdown(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		s.Shutdown(ctx)
	})
	return hs
}

// NewHTTPServer returns an http.Server for h on addr with timeouts, so that a
// slow or idle client cannot hold a connection forever. The timeouts do not
// apply to WebSockets: net/http clears a connection's deadlines when it is
// hijacked. It knows nothing of a Server: for a Server's Handler, use
// Server.HTTPServer, whose Shutdown closes the WebSockets too.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // a 1 MiB body on a slow link
		WriteTimeout:      60 * time.Second, // the GraphiQL bundle on a slow link
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// Run samples every tenant's totals into the history of GET /api/history
// once at once, then every Config.HistoryInterval, until ctx ends. Run it
// in a goroutine of its own for as long as the Server serves.
func (s *Server) Run(ctx context.Context) {
	h := s.history
	h.sample(time.Now())
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			h.sample(now)
		}
	}
}

// Shutdown closes every GraphQL WebSocket with 1001 (going away), refuses new
// ones, and waits until they are closed or ctx ends. Call it before
// http.Server.Shutdown, which does not know hijacked connections. It is safe
// to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, k := range s.sockets.shut() {
		k.close(CloseGoingAway, "server shutting down", "")
	}
	done := make(chan struct{})
	go func() {
		s.sockets.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
