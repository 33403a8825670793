package testenv

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
