package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/presenced/presenced/engine"
)

// Router places the tenants when several instances share them (contract
// section 7): each tenant is answered from this instance's own state when it
// holds the tenant's partition and is caught up, else by an instance that
// does. Config.Router nil: this instance answers every tenant from
// Config.Engine.
type Router interface {
	// Local returns the engine that answers for tenant here, when this
	// instance holds the tenant's partition and is caught up with it.
	Local(tenant string) (Engine, bool)
	// Forward has an instance that holds the tenant's partition answer req,
	// and returns the answer as that instance wrote it; ErrUnavailable when
	// none answered in time.
	Forward(ctx context.Context, req ForwardRequest) (Forwarded, error)
	// Follow watches f for tenant wherever its partition is held, from here
	// or through a holder, across the moves of the partition.
	Follow(ctx context.Context, tenant string, f *engine.Filter) (Watcher, error)
	// Stats are those of the tenants this instance holds: its metrics and
	// its history are theirs.
	Stats() engine.Stats
}

// statsSource is what the metrics and the history read: Config.Engine, or
// the Router.
type statsSource interface{ Stats() engine.Stats }

func (c *Config) stats() statsSource {
	if c.Router != nil {
		return c.Router
	}
	return c.Engine
}

// Watcher follows the indicator of a filter, as engine.Watch does, and may
// fail: a watch relayed from another instance ends when no holder of the
// partition can be reached.
type Watcher interface {
	// Next returns the current value and a channel closed when it next
	// changes, or when the watch fails (then Err says why); a nil channel
	// never fires.
	Next() (engine.Indicator, <-chan struct{})
	// Err is nil while the watch goes on.
	Err() error
	Close()
}

// localWatch is an engine watch, which cannot fail.
type localWatch struct{ *engine.Watch }

func (localWatch) Err() error { return nil }

// The kinds of ForwardRequest.
const (
	KindGraphQL = "graphql" // POST /graphql; Body is the request's body
	KindHistory = "history" // GET /api/history; no Body
)

// ForwardRequest is a request of a client of this instance for a tenant
// held elsewhere, after its identity and rate limit were checked here.
type ForwardRequest struct {
	Kind   string
	Tenant string
	// Accept is the client's Accept header: GraphQL over HTTP answers by it.
	Accept string
	Body   []byte
}

// Forwarded is the answer of the instance that served a ForwardRequest,
// byte for byte.
type Forwarded struct {
	Status      int
	ContentType string
	RetryAfter  string
	Body        []byte
}

// ErrUnavailable is what a Router returns when no instance holding the
// tenant's partition answered in time: the client gets 503 UNAVAILABLE
// (contract section 7), never a wrong number.
var ErrUnavailable = errors.New("api: no instance holding the tenant's partition answered within 2 s")

// unavailable is the answer to a client when no holder answered.
const unavailable = "api: no instance holding this tenant's partition is available now; try again"

// engineFor returns the engine that answers for tenant here, and false
// when the tenant is held elsewhere.
func (s *Server) engineFor(tenant string) (Engine, bool) {
	if s.cfg.Router == nil {
		return s.cfg.Engine, true
	}
	return s.cfg.Router.Local(tenant)
}

// watch follows f for tenant: in the engine, or through the Router.
func (s *Server) watch(ctx context.Context, tenant string, f *engine.Filter) (Watcher, error) {
	if s.cfg.Router == nil {
		return localWatch{s.cfg.Engine.Watch(tenant, f)}, nil
	}
	return s.cfg.Router.Follow(ctx, tenant, f)
}

// forward answers w with the answer of the instance holding req's tenant.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, req ForwardRequest) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()
	a, err := s.cfg.Router.Forward(ctx, req)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			s.log.Warn("api: forwarding a request failed", "kind", req.Kind, "err", err)
		}
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", unavailable)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	if a.RetryAfter != "" {
		h.Set("Retry-After", a.RetryAfter)
	}
	w.WriteHeader(a.Status)
	w.Write(a.Body)
}

// ServeForwarded answers a request that another instance forwarded here,
// from this instance's own state: as the HTTP handler would, without
// checking identity or rate limit again (the front did). A tenant whose
// partition this instance does not hold (it moved meanwhile) gets 503
// UNAVAILABLE.
func (s *Server) ServeForwarded(ctx context.Context, req ForwardRequest) Forwarded {
	eng, ok := s.engineFor(req.Tenant)
	rec := &recorder{header: http.Header{}}
	switch {
	case !ok:
		writeError(rec, http.StatusServiceUnavailable, "UNAVAILABLE", unavailable)
	case req.Kind == KindHistory:
		s.writeHistory(rec, req.Tenant)
	case req.Kind == KindGraphQL:
		ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
		defer cancel()
		s.answer(ctx, rec, req.Tenant, eng, req.Accept, req.Body, time.Now())
	default:
		writeError(rec, http.StatusBadRequest, "BAD_REQUEST", "api: unknown kind of forwarded request "+req.Kind)
	}
	return Forwarded{Status: rec.status, ContentType: rec.header.Get("Content-Type"),
		RetryAfter: rec.header.Get("Retry-After"), Body: rec.body}
}

// recorder is the http.ResponseWriter of a forwarded request.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}
