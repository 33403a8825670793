package api

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/presenced/presenced/engine"
)

func TestLimitersBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLimiters(10, 2, 100)
	// A flood of distinct keys never grows the map past its bound.
	for i := range 1000 {
		if ok, _ := l.allow("tenant:"+strconv.Itoa(i), now); !ok {
			t.Fatalf("new key %d refused", i)
		}
		if len(l.m) > 100 {
			t.Fatalf("%d limiters, bound 100", len(l.m))
		}
	}
	// A bucket is per key.
	l = newLimiters(1, 1, 3)
	l.allow("busy", now)
	if ok, _ := l.allow("busy", now); ok {
		t.Fatal("second request within the burst allowed")
	}
	later := now.Add(10 * time.Millisecond)
	for _, k := range []string{"a", "b"} {
		l.allow(k, later)
	}
	// The map is full: "c" evicts nobody idle long enough, so one arbitrary
	// key goes; the bound holds.
	l.allow("c", later)
	if len(l.m) > 3 {
		t.Fatalf("%d limiters, bound 3", len(l.m))
	}
	// Idle keys (full buckets) are dropped first, losslessly.
	much := later.Add(time.Hour)
	l.allow("d", much)
	if len(l.m) != 1 {
		t.Errorf("after an hour, %d limiters kept, want only the new one", len(l.m))
	}
}

func TestLimiterRetryAfter(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLimiters(0.5, 1, 10) // one request per 2 s
	if ok, _ := l.allow("k", now); !ok {
		t.Fatal("first refused")
	}
	ok, wait := l.allow("k", now)
	if ok || wait <= time.Second || wait > 2*time.Second {
		t.Errorf("second: %v, wait %v; want refused for about 2s", ok, wait)
	}
	// The refusal did not consume a token: after 2 s, allowed.
	if ok, _ := l.allow("k", now.Add(2*time.Second)); !ok {
		t.Error("refused after the wait")
	}
	if ok, _ := newLimiters(rate.Inf, 1, 1).allow("k", now); !ok {
		t.Error("rate.Inf refused")
	}
}

// TestClientSlotsForget checks that a client's subscription count goes with
// its last subscription: the keys are tokens' hashes or, in open mode, any
// tenant a client names.
func TestClientSlotsForget(t *testing.T) {
	var c clientSlots
	for i := range 100 {
		key := "tenant:" + strconv.Itoa(i%10)
		if !c.acquire(key, 10) {
			t.Fatalf("%s refused under its limit", key)
		}
	}
	if c.acquire("tenant:0", 10) {
		t.Fatal("an eleventh slot of tenant:0 allowed")
	}
	for i := range 100 {
		c.release("tenant:" + strconv.Itoa(i%10))
	}
	if len(c.n) != 0 {
		t.Fatalf("%d clients kept with no subscription", len(c.n))
	}
}

func TestCollectAndLint(t *testing.T) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(newStatsCollector(e))
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	m := newHTTPMetrics()
	m.requests.WithLabelValues("graphql", "200").Inc()
	m.duration.WithLabelValues("x").Observe(0.01)
	for _, c := range []interface {
		Describe(chan<- *prometheus.Desc)
		Collect(chan<- prometheus.Metric)
	}{m.requests, m.duration} {
		if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %+v", err, problems)
		}
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"Dashboard": true, "_x1": true, "a": true, "": false, "1a": false, "a-b": false, "é": false,
		"a b": false, string(make([]byte, 65)): false,
	} {
		if validName(s) != want {
			t.Errorf("validName(%q) = %v", s, !want)
		}
	}
}
