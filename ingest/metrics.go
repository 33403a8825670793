package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/presence"
)

// result indexes the result label of presence_events_total.
type result uint8

const (
	resultApplied result = iota
	resultStale
	resultRejected
	numResults
)

var resultNames = [numResults]string{"applied", "stale", "rejected"}

// metrics are the ingester's own: events by outcome, apply latency, how far
// behind the stream it is, what happened to bad messages, and what went
// wrong with the stream itself. The counters are
// resolved once per label pair so that counting an event does no lookup.
type metrics struct {
	events      [presence.NumTypes][numResults]prometheus.Counter
	apply       prometheus.Histogram
	deadletters prometheus.Counter
	resets      prometheus.Counter
	gaps        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, ing *Ingester) (*metrics, error) {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "presence_events_total",
		Help: "Events read from the stream, by type and by what became of them (applied, stale or rejected).",
	}, []string{"type", "result"})
	m := &metrics{
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "presence_apply_duration_seconds",
			Help: "Time to decode one event and apply it to the engine.",
			// Decoding and applying take microseconds; the top buckets
			// catch lock contention and GC pauses.
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
		deadletters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_deadletters_total",
			Help: "Rejected events copied to the dead-letter stream.",
		}),
		resets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_stream_resets_total",
			Help: "Times the engine was emptied and rebuilt because the stream was not the one its state came from (recreated).",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_stream_gaps_total",
			Help: "Times messages the engine needed were gone from the stream (retention or a purge); its state misses them.",
		}),
	}
	// Every valid label pair exists from the start, at 0, so that rate() and
	// alerts see the first event. The unknown type "_" is only ever rejected.
	for t := presence.Type(0); t < presence.NumTypes; t++ {
		for r := result(0); r < numResults; r++ {
			if t == 0 && r != resultRejected {
				continue
			}
			m.events[t][r] = events.WithLabelValues(t.String(), resultNames[r])
		}
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		events, m.apply, m.deadletters, m.resets, m.gaps,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "presence_stream_pending_messages",
			Help: "Stream messages not yet applied, as of the last message read.",
		}, func() float64 { return float64(ing.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "presence_stream_applied_sequence",
			Help: "Last stream sequence whose effect is visible to queries.",
		}, func() float64 { return float64(ing.AppliedSeq()) }),
	}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

// count records what became of one event of type t (0 when unknown).
func (m *metrics) count(t presence.Type, r result) {
	if int(t) >= len(m.events) {
		t = 0
	}
	if c := m.events[t][r]; c != nil {
		c.Inc()
	}
}
