package cluster

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are the metrics of contract section 7.
type nodeMetrics struct {
	forwardedVec *prometheus.CounterVec
}

func newNodeMetrics(reg prometheus.Registerer, n *Node) (*nodeMetrics, error) {
	m := &nodeMetrics{forwardedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "presence_forwarded_requests_total",
		Help: "Requests forwarded to the instance holding the tenant's partition, by result: ok, unavailable (no holder answered within 2 s) or error.",
	}, []string{"result"})}
	for _, r := range []string{"ok", "unavailable", "error"} {
		m.forwardedVec.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.forwardedVec,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "presence_partitions_held",
			Help: "Partitions this instance holds (caught up or catching up).",
		}, func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(len(n.holders))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "presence_cluster_instances",
			Help: "Instances of the stream this instance sees running, itself included.",
		}, func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(n.live)
		}),
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

func (m *nodeMetrics) forwarded(result string) { m.forwardedVec.WithLabelValues(result).Inc() }

// snapshotMetrics are a holder's snapshot metrics: how long each snapshot
// took, and when the last one ended.
type snapshotMetrics struct {
	duration prometheus.Histogram
	lastEnd  prometheus.Gauge
}

// newSnapshotMetrics makes partition p's snapshot metrics and registers
// them in reg (none if nil); with several partitions, they carry the
// partition label, as the ingest metrics do.
func newSnapshotMetrics(reg prometheus.Registerer, partitions, p int) (*snapshotMetrics, error) {
	m := &snapshotMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "presence_snapshot_duration_seconds",
			Help:    "Time to write one snapshot, from taking the cut to its copy in the object store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms to 65 s
		}),
		lastEnd: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "presence_snapshot_last_end_timestamp_seconds",
			Help: "Unix time at which the last snapshot written ended (0: none yet).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	if partitions > 1 {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"partition": strconv.Itoa(p)}, reg)
	}
	if err := reg.Register(m.duration); err != nil {
		return nil, err
	}
	if err := reg.Register(m.lastEnd); err != nil {
		reg.Unregister(m.duration)
		return nil, err
	}
	return m, nil
}

// written records a snapshot that began at start and has just ended.
func (m *snapshotMetrics) written(start time.Time) {
	end := time.Now()
	m.duration.Observe(end.Sub(start).Seconds())
	m.lastEnd.Set(float64(end.UnixNano()) / 1e9)
}
