package bench_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/bench"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// TestMain serves the query scenario's api, or the peers scenario's presenced, when the test binary is
// re-executed as its server process (bench.ServeEnv).
func TestMain(m *testing.M) {
	bench.MaybeServe()
	os.Exit(m.Run())
}

// logWriter sends the scenario's tables to the test log.
type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestScenariosShort runs every scenario in its smoke size, so that the
// bench keeps working; the peers whose server is not installed are skipped
// by the scenario itself. Then it draws the charts from the results.
func TestScenariosShort(t *testing.T) {
	dir := t.TempDir()
	ran := 0
	for _, name := range []string{"ingest", "query", "freshness", "peers", "soak", "recovery", "cluster"} {
		t.Run(name, func(t *testing.T) {
			ran++
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The command's soak settings, shrunk by Short.
			o := bench.Options{Short: true, Out: dir, Log: logWriter{t}, Soak: bench.DefaultSoak()}
			res, err := bench.Scenarios[name](ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Tables) == 0 || len(res.Tables[0].Rows) == 0 {
				t.Fatalf("%s printed no table", name)
			}
			if _, err := os.Stat(filepath.Join(dir, name+".json")); err != nil {
				t.Fatal(err)
			}
			if d, ok := res.Data.(*bench.SoakData); ok {
				checkSoak(t, d)
			}
		})
	}
	if ran < 7 || t.Failed() {
		return // the charts need every scenario's results
	}
	if err := bench.Charts(dir); err != nil {
		t.Fatal(err)
	}
	for _, png := range []string{"ingest_rates.png", "peers_latency_a.png", "peers_latency_all.png"} {
		if fi, err := os.Stat(filepath.Join(dir, png)); err != nil || fi.Size() == 0 {
			t.Errorf("chart %s: %v", png, err)
		}
	}
}

// checkSoak checks the short soak's numbers: a snapshot every 500 ms over
// 2 s marks some seconds, the probe saw every change, queries were answered.
func checkSoak(t *testing.T, d *bench.SoakData) {
	t.Helper()
	marked := 0
	for _, sec := range d.Seconds {
		if sec.Snapshot {
			marked++
		}
	}
	switch {
	case len(d.Snapshots) < 2 || marked == 0:
		t.Errorf("soak: %d snapshots seen, %d seconds marked; want 2 or more with a snapshot every 500 ms over 2 s", len(d.Snapshots), marked)
	case d.Freshness.N < 5 || d.FreshnessSnapshot.N == 0 || d.ProbesLost > 0:
		t.Errorf("soak: %d probes, %d in snapshot seconds, %d lost; want 5 or more, some in snapshot seconds, none lost", d.Freshness.N, d.FreshnessSnapshot.N, d.ProbesLost)
	case d.Queries == 0 || d.Errors > 0 || d.Latency.N != d.Queries:
		t.Errorf("soak: %d queries, %d errors, %d latencies", d.Queries, d.Errors, d.Latency.N)
	case d.HeapStart == 0 || d.GoroutinesStart == 0:
		t.Errorf("soak: presenced's heap %d B and goroutines %d not read", d.HeapStart, d.GoroutinesStart)
	}
}

func TestFiltersAreOfTheirClass(t *testing.T) {
	pop := bench.NewPopulation(10_000, 1)
	for _, c := range bench.Classes {
		fs := pop.Filters(c, 100)
		distinct := map[*engine.Filter]bool{}
		for _, f := range fs {
			distinct[f] = true
			dims := 0
			ids := 0
			for _, l := range [][]string{f.GroupIDs, f.ProjectIDs, f.RoutingGroupIDs} {
				if l != nil {
					dims++
					ids += len(l)
				}
			}
			switch c {
			case bench.ClassA:
				if f.UserIDs != nil || dims > 1 || ids > 1 {
					t.Errorf("class a filter %+v", *f)
				}
			case bench.ClassB:
				if len(f.UserIDs) == 0 {
					t.Errorf("class b filter without userIds %+v", *f)
				}
			case bench.ClassC:
				if f.UserIDs != nil || ids < 2 {
					t.Errorf("class c filter %+v", *f)
				}
			}
		}
		if c == bench.ClassC && len(distinct) != 16 {
			t.Errorf("class c: %d distinct filters, want 16 asked again", len(distinct))
		}
	}
}

func TestEventsReachTheirCount(t *testing.T) {
	pop := bench.NewPopulation(1_000, 1)
	for _, n := range []int{10, 1_000, 5_000} {
		evs := pop.Events(n)
		if len(evs) != n {
			t.Fatalf("Events(%d) gave %d", n, len(evs))
		}
		for i := range evs {
			if err := evs[i].Validate(); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			if i > 0 && evs[i].TS <= evs[i-1].TS {
				t.Fatalf("event %d: ts not increasing", i)
			}
		}
	}
}

func TestTrafficLogsInEveryoneThenNewUsers(t *testing.T) {
	pop := bench.NewPopulation(1_000, 1)
	pop.Offline = 0
	tr := pop.Traffic(0.05)
	for i := range pop.Users {
		if ev := tr.Next(); ev.Type != presence.Login || ev.UserID != bench.UserID(i) {
			t.Fatalf("event %d: %v of %s, want the login of %s", i, ev.Type, ev.UserID, bench.UserID(i))
		}
	}
	newUsers := map[string]bool{}
	for range 10_000 {
		ev := tr.Next()
		ev.TS, ev.Fields = 1, ev.Fields|presence.HasTS
		if err := ev.Validate(); err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(ev.UserID[1:]); n >= pop.Users {
			newUsers[ev.UserID] = true
		}
	}
	// 5% of 10,000 events, each the first of a new user.
	if n := len(newUsers); tr.Users() != pop.Users+n || n < 400 || n > 600 {
		t.Errorf("%d users after events naming %d new ones, want about 500 new of %d", tr.Users(), n, pop.Users)
	}
}
