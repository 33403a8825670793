package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/service"
)

// running is a service started by a test, stopped at the end of the test.
type running struct {
	*service.Service
	cancel context.CancelFunc
}

func (r *running) stop(tb testing.TB) {
	tb.Helper()
	r.cancel()
	if err := r.Wait(); err != nil {
		tb.Fatalf("service stopped with %v", err)
	}
}

// testConfig is a service on random loopback ports with its data in dir.
func testConfig(dir string) service.Config {
	cfg := service.Defaults()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:-1"
	cfg.DataDir = dir
	cfg.SnapshotInterval = 0
	cfg.RateLimit = 0
	cfg.LogLevel = "warn"
	return cfg
}

func start(tb testing.TB, cfg service.Config) *running {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := service.Start(ctx, cfg, logger)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	r := &running{svc, cancel}
	tb.Cleanup(func() { r.cancel(); _ = r.Wait() })
	testenv.WaitFor(tb, "the service to be ready", svc.Ready)
	return r
}

// testWriter sends the service's log lines to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// writeTokens writes a tokens file admitting one new token per tenant.
func writeTokens(tb testing.TB, dir string, tenants ...string) (path string, tokens map[string]string) {
	tb.Helper()
	tokens = map[string]string{}
	var lines []string
	for _, tn := range tenants {
		tok := api.NewToken()
		line, err := api.TokenLine(tn, tok)
		if err != nil {
			tb.Fatal(err)
		}
		tokens[tn] = tok
		lines = append(lines, line)
	}
	path = filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte("# test tokens\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path, tokens
}

func natsConnect(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// publishEvents publishes each event with a plain NATS publish.
func publishEvents(tb testing.TB, nc *nats.Conn, events []oracle.Delivered) {
	tb.Helper()
	for _, d := range events {
		subject, err := presence.Subject("presence", d.Tenant, d.Ev.Type)
		if err != nil {
			tb.Fatal(err)
		}
		if err := nc.Publish(subject, d.Ev.AppendJSON(nil)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// variables turns a filter into the variables of testenv.IndicatorQuery ($f).
func variables(f *engine.Filter) map[string]any {
	return map[string]any{"f": testenv.FilterInput(f)}
}

// graphql posts a query and returns the HTTP status and the raw body.
func graphql(tb testing.TB, addr, token string, header map[string]string, query string, vars map[string]any) (int, []byte) {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// indicator asks connectedUsersIndicator with f and decodes the answer.
func indicator(tb testing.TB, addr, token string, header map[string]string, f *engine.Filter) oracle.Indicator {
	tb.Helper()
	code, body := graphql(tb, addr, token, header, testenv.IndicatorQuery, variables(f))
	var resp struct {
		Data   struct{ ConnectedUsersIndicator oracle.Indicator }
		Errors []any
	}
	if err := json.Unmarshal(body, &resp); code != http.StatusOK || err != nil || len(resp.Errors) > 0 {
		tb.Fatalf("status %d, err %v: %s", code, err, body)
	}
	return resp.Data.ConnectedUsersIndicator
}

// checkBreakdown asks connectedUsersIndicatorBreakdown by by with f and
// compares it with the oracle's over users: the same keys, sorted, with the
// same indicators.
func checkBreakdown(tb testing.TB, addr, token string, header map[string]string, users map[string]*oracle.User, by engine.Dimension, f *engine.Filter, what string) {
	tb.Helper()
	vars := variables(f)
	vars["by"] = testenv.DimensionNames[by]
	code, body := graphql(tb, addr, token, header, testenv.BreakdownQuery, vars)
	var resp struct {
		Data struct {
			ConnectedUsersIndicatorBreakdown []struct {
				Key       string
				Indicator oracle.Indicator
			}
		}
		Errors []any
	}
	if err := json.Unmarshal(body, &resp); code != http.StatusOK || err != nil || len(resp.Errors) > 0 {
		tb.Fatalf("%s: %d %v: %s", what, code, err, body)
	}
	got, want := resp.Data.ConnectedUsersIndicatorBreakdown, oracle.Breakdown(users, by, f)
	if len(got) != len(want) {
		tb.Fatalf("%s: by %s %+v: %d rows, want %d", what, testenv.DimensionNames[by], *f, len(got), len(want))
	}
	for j, row := range got {
		if j > 0 && got[j-1].Key >= row.Key {
			tb.Fatalf("%s: rows not sorted by key: %s then %s", what, got[j-1].Key, row.Key)
		}
		if w, ok := want[row.Key]; !ok || row.Indicator != oracle.AnswerOf(w) {
			tb.Fatalf("%s: by %s %+v key %s: %+v, want %+v", what, testenv.DimensionNames[by], *f, row.Key, row.Indicator, oracle.AnswerOf(w))
		}
	}
}

// metric returns the value of the series written exactly as series (name
// and labels in exposition order) on /metrics, or -1 when it cannot be read.
func metric(tb testing.TB, addr, series string) float64 {
	tb.Helper()
	v, err := testenv.Metric(addr, series)
	if err != nil {
		return -1
	}
	return v
}

// eventsCounted sums presence_events_total over every type and the results
// given, all of them when none is.
func eventsCounted(tb testing.TB, addr string, results ...string) int {
	tb.Helper()
	if results == nil {
		results = []string{"applied", "stale", "rejected"}
	}
	total := 0.0
	for _, typ := range []string{"_", "login", "logout", "status", "slots", "profile", "heartbeat"} {
		for _, res := range results {
			if v := metric(tb, addr, `presence_events_total{result="`+res+`",type="`+typ+`"}`); v > 0 {
				total += v
			}
		}
	}
	return int(total)
}
