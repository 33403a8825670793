package api

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/presence"
)

// statsCollector turns one engine.Stats snapshot per scrape into the gauges of
// contract section 4: the engine knows nothing of Prometheus, and the numbers
// are those of the moment of the scrape.
type statsCollector struct {
	engine statsSource

	connected, chatUsers, inProduction, chatSlots *prometheus.Desc
	tracked, tenants, ids, views, viewLookups     *prometheus.Desc
}

func newStatsCollector(e statsSource) *statsCollector {
	return &statsCollector{
		engine: e,
		connected: prometheus.NewDesc("presence_connected_users",
			"Connected users of a tenant.", []string{"tenant"}, nil),
		chatUsers: prometheus.NewDesc("presence_chat_users",
			"Connected users of a tenant by chat availability.", []string{"tenant", "availability"}, nil),
		inProduction: prometheus.NewDesc("presence_in_production_users",
			"Connected users of a tenant in production on chat (chat AVAILABLE or BUSY).", []string{"tenant"}, nil),
		chatSlots: prometheus.NewDesc("presence_chat_slots",
			"Sum of chat slots over a tenant's users in production; kind is max (capacity) or current (conversations).",
			[]string{"tenant", "kind"}, nil),
		tracked: prometheus.NewDesc("presence_tracked_users",
			"Users held in memory, connected or not, over all tenants.", nil, nil),
		tenants: prometheus.NewDesc("presence_tenants",
			"Tenants held in memory.", nil, nil),
		ids: prometheus.NewDesc("presence_interned_ids",
			"Group, project and routing-group ids held in memory, over all tenants: those events named, never those only requests did.",
			nil, nil),
		views: prometheus.NewDesc("presence_views",
			"Filter views kept by the engine.", nil, nil),
		viewLookups: prometheus.NewDesc("presence_view_lookups_total",
			"Queries answered from an existing filter view (hit) or that built one (miss).", []string{"result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.chatUsers, c.inProduction, c.chatSlots,
		c.tracked, c.tenants, c.ids, c.views, c.viewLookups} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.engine.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, t := range st.PerTenant {
		ind := t.Total
		gauge(c.connected, float64(ind.Connected), t.Tenant)
		for s := presence.Status(0); s < presence.NumStatuses; s++ {
			gauge(c.chatUsers, float64(ind.Chat[s]), t.Tenant, s.String())
		}
		gauge(c.inProduction, float64(ind.InProduction), t.Tenant)
		gauge(c.chatSlots, float64(ind.MaxSlots), t.Tenant, "max")
		gauge(c.chatSlots, float64(ind.CurrentSlots), t.Tenant, "current")
	}
	gauge(c.tracked, float64(st.Users))
	gauge(c.tenants, float64(st.Tenants))
	gauge(c.ids, float64(st.IDs))
	gauge(c.views, float64(st.Views))
	ch <- prometheus.MustNewConstMetric(c.viewLookups, prometheus.CounterValue, float64(st.ViewHits), "hit")
	ch <- prometheus.MustNewConstMetric(c.viewLookups, prometheus.CounterValue, float64(st.ViewMisses), "miss")
}

// httpMetrics are the API's own metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec   // handler, code
	duration *prometheus.HistogramVec // operation
	ops      *opLabels
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_http_requests_total",
			Help: "HTTP requests answered, by handler and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "presence_graphql_request_duration_seconds",
			Help: "Time to answer a GraphQL request, from its decoded body to its written response, by operation.",
			// Queries are answered from counters: most take well under a millisecond.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		ops: newOpLabels(),
	}
}

func (m *httpMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// opOther is the operation label of a request whose operation name is unknown
// or was admitted too late.
const opOther = "other"

// maxOpLabels bounds the operation label values, so that clients choosing
// operation names cannot blow up the number of series.
const maxOpLabels = 64

// opLabels admits operation names as label values, first come first served,
// up to maxOpLabels; the schema's root fields are always admitted.
type opLabels struct {
	mu    sync.Mutex
	names map[string]bool
	fixed int
}

func newOpLabels() *opLabels {
	l := &opLabels{names: map[string]bool{}}
	for _, f := range []string{"connectedUsersIndicator", "connectedUsersIndicatorBreakdown", "__schema", "__type", "__typename"} {
		l.names[f] = true
	}
	l.fixed = len(l.names)
	return l
}

// label returns name if it is, or may become, a label value; else opOther.
func (l *opLabels) label(name string) string {
	if !validName(name) {
		return opOther
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.names[name] {
		return name
	}
	if len(l.names)-l.fixed >= maxOpLabels {
		return opOther
	}
	l.names[name] = true
	return name
}

// validName reports whether s is a GraphQL name of at most 64 bytes.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// liveMetrics are the metrics of the GraphQL WebSockets.
type liveMetrics struct {
	open     prometheus.Gauge
	messages prometheus.Counter
	dropped  *prometheus.CounterVec // reason
	sockets  prometheus.Gauge
}

func newLiveMetrics() *liveMetrics {
	m := &liveMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "presence_subscriptions_open",
			Help: "GraphQL subscriptions open over WebSocket.",
		}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_subscription_messages_total",
			Help: "Values pushed to subscriptions (next messages written).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_subscription_clients_dropped_total",
			Help: "GraphQL WebSockets closed by the server because of the client, by reason: slow (did not read its messages), " +
				"init_timeout, forbidden (missing or unknown token), protocol (a message breaking graphql-transport-ws), ping_timeout.",
		}, []string{"reason"}),
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "presence_websocket_connections",
			Help: "GraphQL WebSockets open.",
		}),
	}
	for _, r := range dropReasons {
		m.dropped.WithLabelValues(r) // every reason shows, at 0 until it happens
	}
	return m
}

func (m *liveMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.open, m.messages, m.dropped, m.sockets} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
