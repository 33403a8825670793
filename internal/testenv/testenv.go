package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
)

// WaitTimeout bounds every wait: generous, because -race and a busy CI slow
// JetStream down, and a passing test never waits for it.
const WaitTimeout = 60 * time.Second

// WaitFor polls cond until it holds, failing the test after WaitTimeout
// (nats-server's checkFor, without its error plumbing).
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// StartJetStream starts the embedded NATS server on a random loopback port
// with its store in a temporary directory, connects to it, and returns the
// server's URL and a JetStream context; all end with the test.
func StartJetStream(tb testing.TB) (string, jetstream.JetStream) {
	tb.Helper()
	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:-1", StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("StartServer: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("nats.Connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream.New: %v", err)
	}
	return url, js
}

// Buffer is a bytes.Buffer that goroutines may write to (a logger's
// destination, a process's output) while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Metric reads one series, written exactly as series (name, then labels in
// exposition order), from the /metrics page served at addr.
func Metric(addr, series string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(rest, 64)
		}
	}
	return 0, fmt.Errorf("%s not found on /metrics", series)
}

// FilterInput is f as a GraphQL ConnectedUsersIndicatorFilters input object,
// keeping a nil list (no constraint) apart from an empty one (matches
// nothing).
func FilterInput(f *engine.Filter) map[string]any {
	m := map[string]any{}
	names := func(key string, n int, name func(int) string) {
		out := make([]string, n)
		for i := range out {
			out[i] = name(i)
		}
		m[key] = out
	}
	if f.AvailabilityStatus != nil {
		names("availabilityStatus", len(f.AvailabilityStatus), func(i int) string { return f.AvailabilityStatus[i].String() })
	}
	if f.ChatAvailability != nil {
		names("chatAvailability", len(f.ChatAvailability), func(i int) string { return f.ChatAvailability[i].String() })
	}
	if f.Roles != nil {
		names("roles", len(f.Roles), func(i int) string { return f.Roles[i].EnumName() })
	}
	for key, ids := range map[string][]string{"groupIds": f.GroupIDs, "projectIds": f.ProjectIDs,
		"routingGroupIds": f.RoutingGroupIDs, "userIds": f.UserIDs} {
		if ids != nil {
			m[key] = ids
		}
	}
	return m
}
