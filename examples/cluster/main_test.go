package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

// TestCluster runs the example as a user would (it builds presenced itself)
// on free ports, and checks that every instance is ready, answers every
// tenant the same once the simulation has connected agents, and that the
// whole cluster stops when asked.
func TestCluster(t *testing.T) {
	o := options{dir: t.TempDir(), tenants: []string{"acme", "globex", "initech"}, agents: 20, partitions: 4, copies: 2}
	for range size {
		o.natsPorts = append(o.natsPorts, testenv.FreePort(t))
		o.routePorts = append(o.routePorts, testenv.FreePort(t))
		o.httpPorts = append(o.httpPorts, testenv.FreePort(t))
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, out) }()
	stopped := false
	stop := func() {
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Errorf("the cluster did not stop within 2 minutes")
		}
	}
	defer func() {
		if !stopped {
			stop()
		}
		if t.Failed() {
			t.Logf("output:\n%s", out)
		}
	}()

	testenv.WaitFor(t, "the cluster printed its instances", func() bool {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("run ended early: %v\n%s", err, out)
		default:
		}
		return strings.Contains(out.String(), "Ctrl-C stops everything")
	})
	for _, tenant := range o.tenants {
		testenv.WaitFor(t, "every instance answers "+tenant+" the same, with connected agents", func() bool {
			var first []byte
			for _, port := range o.httpPorts {
				body, ok := count(t, port, tenant)
				if !ok || (first != nil && !bytes.Equal(body, first)) {
					return false
				}
				first = body
			}
			return !bytes.Contains(first, []byte(`"connectedUsersCount":0}`))
		})
	}
	stop()
	if !strings.Contains(out.String(), "stopping") {
		t.Errorf("no stop message in the output")
	}
}

// count asks the instance on port for tenant's connected users and returns
// the body of a 200 answer without errors.
func count(t *testing.T, port int, tenant string) ([]byte, bool) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(port)+"/graphql",
		strings.NewReader(`{"query":"{ connectedUsersIndicator { connectedUsersCount } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var answer struct{ Errors []any }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &answer) != nil || len(answer.Errors) > 0 {
		return nil, false
	}
	return body, true
}
