package api

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/presenced/presenced/presence"
)

const (
	// maxHistorySamples bounds the samples kept per tenant.
	maxHistorySamples = 10000
	// maxHistoryTenants bounds the tenants with a history; past it, new
	// tenants get none (a tenant costs HistoryWindow/HistoryInterval
	// samples of 32 bytes: 5.6 KiB with the defaults).
	maxHistoryTenants = 4096
)

// Sample is one point of a tenant's history: its totals over all its
// connected users at a time. It is the JSON of GET /api/history.
type Sample struct {
	// Time is in milliseconds since the Unix epoch.
	Time int64 `json:"t"`
	// Connected is connectedUsersCount.
	Connected int64 `json:"connected"`
	// Available counts the connected users whose chat is AVAILABLE.
	Available int64 `json:"available"`
	// OccupancyRate is usersInProductionChatOccupancy.occupancyRate.
	OccupancyRate float64 `json:"occupancyRate"`
}

// HistoryResponse is the body of GET /api/history.
type HistoryResponse struct {
	// Tenant is the tenant of the request, whose totals these are.
	Tenant string `json:"tenant"`
	// IntervalSeconds is the time between two samples (Config.HistoryInterval).
	IntervalSeconds float64 `json:"intervalSeconds"`
	// WindowSeconds is how far back the samples go (Config.HistoryWindow).
	WindowSeconds float64 `json:"windowSeconds"`
	// Samples are the samples kept, oldest first; empty, never null, before
	// the first.
	Samples []Sample `json:"samples"`
}

// history keeps, per tenant, the last samples in a ring.
type history struct {
	engine   statsSource
	interval time.Duration
	window   time.Duration
	size     int

	mu      sync.RWMutex
	tenants map[string]*ring
}

type ring struct {
	buf  []Sample
	next int // where the next sample goes
	n    int // samples held
}

func newHistory(e statsSource, interval, window time.Duration) *history {
	return &history{engine: e, interval: interval, window: window,
		size: int(window / interval), tenants: make(map[string]*ring)}
}

// sample adds one sample of every tenant's totals, taken at now.
func (h *history) sample(now time.Time) {
	st := h.engine.Stats() // before the lock: it takes the engine's
	ms := now.UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range st.PerTenant {
		r := h.tenants[t.Tenant]
		if r == nil {
			if len(h.tenants) >= maxHistoryTenants {
				continue
			}
			r = &ring{buf: make([]Sample, h.size)}
			h.tenants[t.Tenant] = r
		}
		r.buf[r.next] = Sample{
			Time:          ms,
			Connected:     t.Total.Connected,
			Available:     t.Total.Chat[presence.Available],
			OccupancyRate: t.Total.OccupancyRate(),
		}
		r.next = (r.next + 1) % len(r.buf)
		r.n = min(r.n+1, len(r.buf))
	}
}

// of returns a copy of tenant's samples, oldest first.
func (h *history) of(tenant string) []Sample {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.tenants[tenant]
	if r == nil {
		return []Sample{}
	}
	out := make([]Sample, 0, r.n)
	start := (r.next - r.n + len(r.buf)) % len(r.buf)
	for i := range r.n {
		out = append(out, r.buf[(start+i)%len(r.buf)])
	}
	return out
}

// serveHistory answers GET /api/history for the tenant of the request,
// authenticated and rate-limited as POST /graphql.
func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := s.admit(w, r)
	if !ok {
		return
	}
	if _, local := s.engineFor(id.tenant); !local {
		s.forward(w, r, ForwardRequest{Kind: KindHistory, Tenant: id.tenant})
		return
	}
	s.writeHistory(w, id.tenant)
}

// writeHistory writes the history of tenant, which this instance holds.
func (s *Server) writeHistory(w http.ResponseWriter, tenant string) {
	body, err := json.Marshal(HistoryResponse{
		Tenant:          tenant,
		IntervalSeconds: s.history.interval.Seconds(),
		WindowSeconds:   s.history.window.Seconds(),
		Samples:         s.history.of(tenant),
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "api: encoding the history failed")
		return
	}
	w.Header().Set("Content-Type", mediaJSON+"; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(body)
}
