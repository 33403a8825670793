package cluster

import (
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
