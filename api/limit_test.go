package api

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
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

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		wait time.Duration
		want int
	}{
		{0, 1},
		{time.Nanosecond, 1},
		{200 * time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{9*time.Second + 500*time.Microsecond, 10}, // wait.Seconds()+0.999 said 9
		{10 * time.Second, 10},
		{time.Duration(math.MaxInt64), math.MaxInt64/int(time.Second) + 1},
	} {
		if got := retryAfterSeconds(tc.wait); got != tc.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", tc.wait, got, tc.want)
		}
	}
}

// TestTakeRequest checks the refusal of takeRequest at exact instants, and
// how HTTP and the socket write it.
func TestTakeRequest(t *testing.T) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	id := identity{tenant: "acme", limiter: "tenant:acme"}

	five, err := New(Config{Engine: e, RateLimit: 5}) // burst 5
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if r := five.takeRequest(id, now); r != nil {
			t.Fatalf("5/s, request %d refused: %v", i, r)
		}
	}
	if r := five.takeRequest(id, now); r == nil || r.retryAfter != 1 {
		t.Fatalf("5/s, sixth request: %+v, want a refusal saying 1", r)
	}

	slow, err := New(Config{Engine: e, RateLimit: 0.1, RateBurst: 2})
	if err != nil {
		t.Fatal(err)
	}
	slow.takeRequest(id, now)
	slow.takeRequest(id, now)
	for _, tc := range []struct {
		after time.Duration
		want  int // 0: allowed
	}{
		{0, 10},
		{3500 * time.Millisecond, 7},
		{9250 * time.Millisecond, 1},
		{10 * time.Second, 0},
		{10 * time.Second, 10}, // that took the token
	} {
		r := slow.takeRequest(id, now.Add(tc.after))
		switch {
		case tc.want == 0 && r != nil:
			t.Errorf("after %v: %v, want allowed", tc.after, r)
		case tc.want != 0 && (r == nil || r.retryAfter != tc.want):
			t.Errorf("after %v: %+v, want a refusal saying %d", tc.after, r, tc.want)
		}
	}

	r := &rateLimitError{limit: 0.1, retryAfter: 10}
	const msg = "api: rate limit exceeded (0.1 requests/s); retry after 10s"
	rec := httptest.NewRecorder()
	r.writeHTTP(rec)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "10" ||
		rec.Body.String() != `{"errors":[{"message":"`+msg+`","extensions":{"code":"RATE_LIMITED"}}]}` {
		t.Errorf("HTTP: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if b, _ := json.Marshal(r.queryError()); string(b) != `{"message":"`+msg+`","extensions":{"code":"RATE_LIMITED","retryAfterSeconds":10}}` {
		t.Errorf("socket: %s", b)
	}
}
