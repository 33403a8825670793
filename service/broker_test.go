package service_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// TestBrokerRestart kills the external NATS server in the middle of ingest
// and starts it again: presenced reports not ready while cut off, then
// applies every event exactly once.
func TestBrokerRestart(t *testing.T) {
	broker := startNATSProcess(t)
	cfg := testConfig(t.TempDir())
	cfg.NATSURL = broker.url()
	cfg.SnapshotInterval = 200 * time.Millisecond // snapshots race the outage too
	svc := start(t, cfg)
	addr := svc.HTTPAddr()

	r := rand.New(rand.NewPCG(21, 22))
	events := oracle.Events(r, e2eTenants, 1000, 10, 500)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	half := len(events) / 2
	publishAcked(t, broker.url(), events[:half])

	t.Logf("NATS killed with %v of %d stream messages applied", metric(t, addr, "presence_stream_applied_sequence"), half)
	broker.stop()
	testenv.WaitFor(t, "/readyz to say 503 while NATS is down", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	broker.start()
	publishAcked(t, broker.url(), events[half:])

	testenv.WaitFor(t, "every event to be counted", func() bool { return eventsCounted(t, addr) >= len(events) })
	testenv.WaitFor(t, "ready again", svc.Ready)
	if got := eventsCounted(t, addr); got != len(events) {
		t.Fatalf("%d events counted, want exactly %d", got, len(events))
	}
	if v := metric(t, addr, "presence_nats_reconnects_total"); v < 1 {
		t.Fatalf("presence_nats_reconnects_total = %v, want at least 1", v)
	}
	truth := oracle.State(events)
	tokens := map[string]string{} // open mode: the tenant from X-Tenant-Id
	for i := range 200 {
		tn := e2eTenants[i%2]
		f := oracle.RandomFilter(r, oracle.Class(i%3), 1000)
		got := indicator(t, addr, tokens[tn], map[string]string{"X-Tenant-Id": tn}, f)
		if want := oracle.Answer(truth[tn], f); got != want {
			t.Fatalf("tenant %s filter %+v:\n got %+v\nwant %+v", tn, *f, got, want)
		}
	}
}

// publishAcked publishes events with JetStream, waiting for every
// acknowledgement, so that each one is known to be in the stream.
func publishAcked(t *testing.T, url string, events []oracle.Delivered) {
	t.Helper()
	nc := natsConnect(t, url)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(len(events)+1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var acks []jetstream.PubAckFuture
	for _, d := range events {
		subject, _ := presence.Subject("presence", d.Tenant, d.Ev.Type)
		f, err := js.PublishAsync(subject, d.Ev.AppendJSON(nil))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("no acknowledgement")
		}
	}
	nc.Close()
}
