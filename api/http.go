package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/presenced/presenced/engine"
)

// Engine is what the API reads of the presence engine; *engine.Engine is one.
type Engine interface {
	Query(tenant string, f *engine.Filter) engine.Indicator
	Breakdown(tenant string, by engine.Dimension, f *engine.Filter) []engine.Row
	Watch(tenant string, f *engine.Filter) *engine.Watch
	Stats() engine.Stats
}

var _ Engine = (*engine.Engine)(nil)

// Defaults of the zero Config fields.
const (
	DefaultQueryTimeout = 5 * time.Second
	// maxLimiters bounds the rate limiters kept (one per token or open-mode
	// tenant).
	maxLimiters = 4096
)

// Config configures a Server. Only Engine is required.
type Config struct {
	// Engine answers the queries and feeds the metrics.
	Engine Engine
	// Tokens are the bearer tokens of contract 3.3. Nil is open mode: the
	// tenant is the X-Tenant-Id header, or "default". The caller decides
	// whether open mode may listen where it does (see IsLoopback).
	Tokens *Tokens
	// Ready says whether /readyz answers 200 (else 503). Nil means always
	// ready.
	Ready func() bool
	// Registry receives the API's collectors and is what /metrics serves, so
	// that the caller may register its own there too. Nil means a new empty
	// registry (see Server.Registry).
	Registry *prometheus.Registry
	// Logger receives the API's logs; no token or secret is ever logged.
	// Nil means slog.Default().
	Logger *slog.Logger
	// RateLimit is the GraphQL requests per second allowed to one token (one
	// tenant in open mode); a request over it gets 429 with Retry-After.
	// Zero means no limit (contract section 5), as rate.Inf does.
	RateLimit rate.Limit
	// RateBurst is how many requests a client may send at once after a
	// quiet period. Zero means one second's worth of RateLimit (at least 1).
	RateBurst int
	// QueryTimeout bounds the execution of one GraphQL request. Zero means
	// DefaultQueryTimeout.
	QueryTimeout time.Duration

	// SubscriptionsPerSocket bounds the subscriptions open on one WebSocket;
	// one more gets an error message naming the limit. Zero means
	// DefaultSubscriptionsPerSocket.
	SubscriptionsPerSocket int
	// SubscriptionsPerClient bounds the subscriptions open over all the
	// WebSockets of one token (one tenant in open mode). Zero means
	// DefaultSubscriptionsPerClient.
	SubscriptionsPerClient int
	// InitTimeout is how long a WebSocket may take to send connection_init
	// before it is closed with 4408. Zero means DefaultInitTimeout (3 s,
	// contract 6.2).
	InitTimeout time.Duration
	// SocketWriteTimeout is how long one message to a WebSocket may take to
	// be written; past it the client, which does not read, is dropped with
	// 4429. Zero means DefaultSocketWriteTimeout.
	SocketWriteTimeout time.Duration
	// HistoryInterval is how often Run samples each tenant's totals for
	// GET /api/history and the dashboard's chart; HistoryWindow is how far
	// back the samples go. Zero means DefaultHistoryInterval and
	// DefaultHistoryWindow.
	HistoryInterval time.Duration
	HistoryWindow   time.Duration
}

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
	if cfg.Engine == nil {
		return nil, &ConfigError{Field: "Engine", Rule: "required"}
	}
	if cfg.Tokens != nil && cfg.Tokens.Len() == 0 {
		return nil, &ConfigError{Field: "Tokens", Rule: "must hold at least one token (nil is open mode)"}
	}
	switch {
	case cfg.RateLimit < 0 || math.IsNaN(float64(cfg.RateLimit)):
		return nil, &ConfigError{Field: "RateLimit", Rule: "must not be negative (0 is no limit)"}
	case cfg.RateLimit == 0:
		cfg.RateLimit = rate.Inf
	}
	switch {
	case cfg.RateBurst < 0:
		return nil, &ConfigError{Field: "RateBurst", Rule: "must not be negative (0 is the default)"}
	case cfg.RateBurst == 0:
		cfg.RateBurst = max(1, int(math.Min(math.Ceil(float64(cfg.RateLimit)), 1e6)))
	}
	switch {
	case cfg.QueryTimeout < 0:
		return nil, &ConfigError{Field: "QueryTimeout", Rule: "must not be negative (0 is the default)"}
	case cfg.QueryTimeout == 0:
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	for _, d := range []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{
		{"InitTimeout", &cfg.InitTimeout, DefaultInitTimeout},
		{"SocketWriteTimeout", &cfg.SocketWriteTimeout, DefaultSocketWriteTimeout},
		{"HistoryInterval", &cfg.HistoryInterval, DefaultHistoryInterval},
		{"HistoryWindow", &cfg.HistoryWindow, DefaultHistoryWindow},
	} {
		switch {
		case *d.v < 0:
			return nil, &ConfigError{Field: d.field, Rule: "must not be negative (0 is the default)"}
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if cfg.HistoryWindow < cfg.HistoryInterval || cfg.HistoryWindow/cfg.HistoryInterval > maxHistorySamples {
		return nil, &ConfigError{Field: "HistoryWindow", Rule: "must hold 1 to " + strconv.Itoa(maxHistorySamples) + " HistoryIntervals"}
	}
	for _, n := range []struct {
		field string
		v     *int
		def   int
	}{
		{"SubscriptionsPerSocket", &cfg.SubscriptionsPerSocket, DefaultSubscriptionsPerSocket},
		{"SubscriptionsPerClient", &cfg.SubscriptionsPerClient, DefaultSubscriptionsPerClient},
	} {
		switch {
		case *n.v < 0:
			return nil, &ConfigError{Field: n.field, Rule: "must not be negative (0 is the default)"}
		case *n.v == 0:
			*n.v = n.def
		}
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		tokens:   cfg.Tokens,
		limits:   newLimiters(cfg.RateLimit, cfg.RateBurst, maxLimiters),
		metrics:  newHTTPMetrics(),
		refusals: rate.NewLimiter(1, 10),
		live:     newLiveMetrics(),
		history:  newHistory(cfg.Engine, cfg.HistoryInterval, cfg.HistoryWindow),
	}
	var err error
	if s.schema, err = newSchema(cfg.Engine, cfg.Logger, s.live); err != nil {
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
	if err := cfg.Registry.Register(newStatsCollector(cfg.Engine)); err != nil {
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
// An http.Server made by NewHTTPServer for this handler closes the
// WebSockets when it shuts down; see Shutdown.
func (s *Server) Handler() http.Handler { return s.handler }

// handler is what Handler returns: the routes, and the Server whose sockets
// NewHTTPServer closes on shutdown.
type handler struct {
	http.Handler
	srv *Server
}

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
	return &handler{Handler: mux, srv: s}
}

// NewHTTPServer returns an http.Server for h on addr with timeouts, so that a
// slow or idle client cannot hold a connection forever. The timeouts do not
// apply to WebSockets: net/http clears a connection's deadlines when it is
// hijacked. When h is a Server's Handler, the http.Server's Shutdown also
// starts the Server's (closing its WebSockets with 1001), without waiting
// for it; call Server.Shutdown first to wait.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	hs := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second, // a 1 MiB body on a slow link
		WriteTimeout:      60 * time.Second, // the GraphiQL bundle on a slow link
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	if ah, ok := h.(*handler); ok {
		hs.RegisterOnShutdown(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			ah.srv.Shutdown(ctx)
		})
	}
	return hs
}

// gqlRequest is the body of POST /graphql (GraphQL over HTTP).
type gqlRequest struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
}

// admit authenticates r and takes one request from its rate limit. On
// failure it has written the response.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (identity, bool) {
	id, ok := s.authenticate(w, r)
	if !ok {
		return id, false
	}
	if ok, wait := s.limits.allow(id.limiter, time.Now()); !ok {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "RATE_LIMITED",
			"api: rate limit exceeded ("+strconv.FormatFloat(float64(s.cfg.RateLimit), 'g', -1, 64)+
				" requests/s); retry after "+strconv.Itoa(secs)+"s")
		return id, false
	}
	return id, true
}

func (s *Server) serveGraphQL(w http.ResponseWriter, r *http.Request) {
	id, ok := s.admit(w, r)
	if !ok {
		return
	}
	start := time.Now()
	req, status, msg := decodeRequest(w, r)
	if status != 0 {
		writeError(w, status, "BAD_REQUEST", msg)
		return
	}

	info := &execInfo{tenant: id.tenant}
	ctx, cancel := context.WithTimeout(withExec(r.Context(), info), s.cfg.QueryTimeout)
	defer cancel()

	var resp *graphql.Response
	if n := len(req.Query); n > MaxQueryLength {
		resp = &graphql.Response{Errors: []*gqlerrors.QueryError{{
			Message: "api: query: at most " + strconv.Itoa(MaxQueryLength) + " bytes, got " + strconv.Itoa(n) +
				"; pass long lists as variables",
			Extensions: map[string]any{"code": "LIMIT_EXCEEDED", "argument": "query", "limit": MaxQueryLength},
		}}}
	} else if vars, verr := coerceVariables(s.schema.AST(), req.Query, req.OperationName, req.Variables); verr != nil {
		resp = &graphql.Response{Errors: []*gqlerrors.QueryError{verr}}
	} else {
		resp = s.schema.Exec(ctx, req.Query, req.OperationName, vars)
		if len(resp.Errors) == 1 && resp.Errors[0].Message == "graphql-ws protocol header is missing" {
			// graphql-go's words for a subscription sent over HTTP.
			resp.Errors[0] = &gqlerrors.QueryError{Message: errNotSocket.Error(),
				Extensions: map[string]any{"code": "BAD_REQUEST"}}
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		resp = &graphql.Response{Errors: []*gqlerrors.QueryError{{
			Message:    "api: query timed out after " + s.cfg.QueryTimeout.String(),
			Extensions: map[string]any{"code": "TIMEOUT"},
		}}}
	}
	s.writeResponse(w, r, resp)

	op := info.label()
	if op == "" {
		op = req.OperationName // the query did not parse
	}
	s.metrics.duration.WithLabelValues(s.metrics.ops.label(op)).Observe(time.Since(start).Seconds())
}

// tooLarge is the message of a body over MaxBodyBytes.
var tooLarge = "api: request body: at most " + strconv.Itoa(MaxBodyBytes) + " bytes (1 MiB)"

// decodeRequest reads the JSON body of a GraphQL request. On failure it
// returns the HTTP status and message to answer.
//
// The body is read into a pooled buffer and unmarshalled at once, which
// costs less than a json.Decoder (its struct and its buffers, per request).
// On failure the bytes read are replayed through a json.Decoder, whose
// words for a bad body ("unexpected EOF", "more than one JSON value") are
// those this API has always answered.
func decodeRequest(w http.ResponseWriter, r *http.Request) (gqlRequest, int, string) {
	var req gqlRequest
	if r.ContentLength > MaxBodyBytes {
		return req, http.StatusRequestEntityTooLarge, tooLarge
	}
	// The media type is not checked: curl -d sends form-urlencoded, and a
	// body that is not JSON gets 400 anyway. Cross-site form posts cannot
	// read the answer nor change state: every operation is a read.
	buf := getBuffer()
	defer putBuffer(buf)
	_, readErr := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	err := readErr
	if err == nil {
		err = json.Unmarshal(buf.Bytes(), &req)
	}
	if err != nil {
		req, err = streamDecode(io.MultiReader(bytes.NewReader(buf.Bytes()), errReader{readErr}))
	}
	switch {
	case err != nil:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, http.StatusRequestEntityTooLarge, tooLarge
		}
		return req, http.StatusBadRequest, "api: request body: want one JSON object {query, variables, operationName}: " + err.Error()
	case strings.TrimSpace(req.Query) == "":
		return req, http.StatusBadRequest, "api: request body: query is required"
	}
	return req, 0, ""
}

// streamDecode decodes one JSON object from r and checks that nothing but
// white space follows it.
func streamDecode(r io.Reader) (gqlRequest, error) {
	var req gqlRequest
	dec := json.NewDecoder(r)
	err := dec.Decode(&req)
	if err == nil {
		if err = dec.Decode(&struct{}{}); err == io.EOF {
			err = nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	return req, err
}

// errReader returns err, or io.EOF when err is nil: the end of a body
// replayed from a buffer.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) {
	if r.err == nil {
		return 0, io.EOF
	}
	return 0, r.err
}

// maxPooledBuffer bounds the buffers kept for reuse, so that one large body
// does not stay in memory.
const maxPooledBuffer = 64 << 10

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuffer() *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		buffers.Put(b)
	}
}

const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
	// The Content-Type values, written whole rather than built per response.
	contentJSON            = mediaJSON + "; charset=utf-8"
	contentGraphQLResponse = mediaGraphQLResponse + "; charset=utf-8"
)

// writeResponse writes a GraphQL result. A client that accepts
// application/graphql-response+json gets it, with 400 for a request that
// could not execute (no data); others get application/json and 200, as
// GraphQL over HTTP says for that legacy media type.
func (s *Server) writeResponse(w http.ResponseWriter, r *http.Request, resp *graphql.Response) {
	// Encoded into a pooled buffer: json.Marshal would copy the result out
	// of its own pooled one.
	buf := getBuffer()
	defer putBuffer(buf)
	if err := json.NewEncoder(buf).Encode(resp); err != nil {
		s.log.Error("api: encoding a GraphQL response", "err", err)
		writeError(w, http.StatusInternalServerError, "INTERNAL", "api: encoding the response failed")
		return
	}
	buf.Truncate(buf.Len() - 1) // the newline Encode adds, which json.Marshal did not
	status, content := http.StatusOK, contentJSON
	if strings.Contains(r.Header.Get("Accept"), mediaGraphQLResponse) {
		content = contentGraphQLResponse
		if resp.Data == nil {
			status = http.StatusBadRequest
		}
	}
	w.Header().Set("Content-Type", content)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// writeError answers an HTTP-level failure in the shape of a GraphQL
// response without data, so that GraphQL clients show its message.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Errors []gqlerrors.QueryError `json:"errors"`
	}{[]gqlerrors.QueryError{{Message: msg, Extensions: map[string]any{"code": code}}}})
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	w.Write(body)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, text)
}

// instrument counts the requests of a route by status code and logs each at
// debug level (never a header: they may carry a token).
func (s *Server) instrument(name string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		sw.Header().Set("X-Content-Type-Options", "nosniff")
		h(sw, r)
		s.metrics.requests.WithLabelValues(name, strconv.Itoa(sw.code)).Inc()
		// Checked first: building the arguments allocates, even when the
		// level is off.
		if ctx := r.Context(); s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.DebugContext(ctx, "api: request", "handler", name, "method", r.Method, "path", r.URL.Path,
				"code", sw.code, "duration", time.Since(start))
		}
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flush, hijack).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
