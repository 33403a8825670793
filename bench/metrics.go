package bench

import (
	"context"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsClient reads presenced's /metrics; a page that does not come within
// its timeout is an error, not a hang.
var metricsClient = &http.Client{Timeout: 10 * time.Second}

// metric returns the sum of the series of the family name, on the /metrics
// page served at addr, whose labels include each name, value pair of labels
// (none: every series).
func metric(addr, name string, labels ...string) (float64, error) {
	sum, _, err := series(addr, name, labels...)
	return sum, err
}

// series is metric, with the number of series summed; a family missing from
// the page is an error. A summary's series counts its observations (for
// go_gc_duration_seconds: the garbage collections so far).
func series(addr, name string, labels ...string) (sum float64, n int, err error) {
	mf, err := family(addr, name)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range mf.GetMetric() {
		if hasLabels(m, labels) {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue() + float64(m.GetSummary().GetSampleCount())
			n++
		}
	}
	return sum, n, nil
}

// histogram returns the observations and their sum, over every series, of
// the histogram family name on the /metrics page served at addr.
func histogram(addr, name string) (count uint64, sum float64, err error) {
	mf, err := family(addr, name)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range mf.GetMetric() {
		count += m.GetHistogram().GetSampleCount()
		sum += m.GetHistogram().GetSampleSum()
	}
	return count, sum, nil
}

// family reads the family name from the /metrics page served at addr; one
// missing from the page is an error.
func family(addr, name string) (*dto.MetricFamily, error) {
	resp, err := metricsClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("/metrics: %w", err)
	}
	mf, ok := families[name]
	if !ok {
		return nil, fmt.Errorf("%s not found on /metrics", name)
	}
	return mf, nil
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}

// waitApplied waits until the presenced serving /metrics at addr has
// applied its stream up to sequence seq; with several partitions, labels
// names the one ("partition", "3").
func waitApplied(ctx context.Context, addr string, seq uint64, timeout time.Duration, labels ...string) error {
	return waitFor(ctx, fmt.Sprintf("presenced to apply the stream up to %d", seq), timeout, 2*time.Millisecond, func() bool {
		applied, err := metric(addr, "presence_stream_applied_sequence", labels...)
		return err == nil && uint64(applied) >= seq
	})
}
