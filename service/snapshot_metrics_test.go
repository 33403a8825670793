package service_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
)

// TestSnapshotMetrics checks that a snapshot written shows on /metrics: the
// duration histogram counts it and the last end is the time it ended.
func TestSnapshotMetrics(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SnapshotInterval = 100 * time.Millisecond
	svc := start(t, cfg)
	addr := svc.HTTPAddr()
	if got := metric(t, addr, "presence_snapshot_duration_seconds_count"); got != 0 {
		t.Fatalf("snapshots counted before any event: %v, want 0 (nothing to snapshot)", got)
	}
	if got := metric(t, addr, "presence_snapshot_last_end_timestamp_seconds"); got != 0 {
		t.Fatalf("last snapshot end before any: %v, want 0", got)
	}
	before := time.Now()
	publishAcked(t, svc.NATSURL(), oracle.Events(rand.New(rand.NewPCG(1, 2)), e2eTenants, 50, 3, 0))
	testenv.WaitFor(t, "two snapshots counted", func() bool {
		return metric(t, addr, "presence_snapshot_duration_seconds_count") >= 2
	})
	end := metric(t, addr, "presence_snapshot_last_end_timestamp_seconds")
	if lo, hi := float64(before.UnixNano())/1e9, float64(time.Now().UnixNano())/1e9; end < lo || end > hi {
		t.Errorf("last snapshot end %.3f, want within [%.3f, %.3f]", end, lo, hi)
	}
	if sum := metric(t, addr, "presence_snapshot_duration_seconds_sum"); sum <= 0 || sum > 10 {
		t.Errorf("snapshot durations sum to %v s, want more than 0 and at most 10", sum)
	}
	svc.stop(t)
}
