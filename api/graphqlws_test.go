package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/wsclient"
)

// graphqlWSDir holds the Node client of TestGraphQLWSClient, its pinned
// dependencies installed by npm ci (.ci/run does it).
const graphqlWSDir = "testdata/graphql-ws"

// nodeClient returns the node binary, or skips the test when node or the
// client's node_modules are missing. In CI (CI=true) it fails instead: the
// test must not go green there without running.
func nodeClient(tb testing.TB) string {
	tb.Helper()
	node, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node is not installed"
	default:
		if _, err := os.Stat(filepath.Join(graphqlWSDir, "node_modules", "graphql-ws", "package.json")); err != nil {
			missing = "the graphql-ws client is not installed: npm ci --prefix api/" + graphqlWSDir
		}
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true and %s", missing)
		}
		tb.Skip(missing)
	}
	return node
}

// TestGraphQLWSClient runs the stock npm graphql-ws client (subscribe.mjs)
// against the socket: operations that declare defaults and send no
// variables, explicit nulls, operationName among several operations.
func TestGraphQLWSClient(t *testing.T) {
	node := nodeClient(t)
	ts, intervals := observedServer(t)
	all := oracle("acme", filters{}).ConnectedUsersCount
	bots := oracle("acme", filters{Roles: []string{"BOT"}}).ConnectedUsersCount
	operators := oracle("acme", filters{Roles: []string{"OPERATOR"}}).ConnectedUsersCount

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "subscribe.mjs", wsclient.URL(ts.URL))
	cmd.Dir = graphqlWSDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node subscribe.mjs: %v\n%s%s", err, out, stderr.Bytes())
	}

	type result struct {
		Name   string
		Result *struct {
			Data struct {
				ConnectedUsersIndicatorUpdated *struct{ ConnectedUsersCount int }
			}
			Errors []json.RawMessage
		}
		Errors []struct {
			Message    string
			Extensions map[string]any
		}
	}
	got := map[string]result{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got[r.Name] = r
		order = append(order, r.Name)
	}

	cases := []struct {
		name     string
		count    int
		interval time.Duration // 0: a query
		err      string        // in the error's message, with BAD_USER_INPUT
	}{
		{"defaults not sent", bots, 100 * time.Millisecond, ""},
		{"defaults, explicit nulls", all, time.Second, ""},
		{"no defaults, not sent", all, time.Second, ""},
		{"operationName chooses the subscription", bots, 100 * time.Millisecond, ""},
		{"operationName chooses the query", operators, 0, ""},
		{"negative default", 0, 0, "minIntervalMs: must not be negative"},
	}
	if len(order) != len(cases) {
		t.Fatalf("%d results, want %d:\n%s%s", len(order), len(cases), out, stderr.Bytes())
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, ok := got[c.name]
			if !ok || order[i] != c.name {
				t.Fatalf("no result %q in order; got %v", c.name, order)
			}
			if c.err != "" {
				if len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, c.err) || r.Errors[0].Extensions["code"] != "BAD_USER_INPUT" {
					t.Fatalf("errors %+v, want %q with BAD_USER_INPUT", r.Errors, c.err)
				}
				return
			}
			if r.Result == nil || len(r.Errors) > 0 || len(r.Result.Errors) > 0 || r.Result.Data.ConnectedUsersIndicatorUpdated == nil {
				t.Fatalf("result %+v, errors %+v", r.Result, r.Errors)
			}
			if n := r.Result.Data.ConnectedUsersIndicatorUpdated.ConnectedUsersCount; n != c.count {
				t.Errorf("connectedUsersCount %d, want %d", n, c.count)
			}
			if c.interval == 0 {
				return
			}
			select {
			case d := <-intervals: // in the order of the subscriptions
				if d != c.interval {
					t.Errorf("throttle interval %v, want %v", d, c.interval)
				}
			default:
				t.Fatal("the resolver reported no interval")
			}
		})
	}
}
