package ingest_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
)

// TestLiveTail holds the stream's reader inside Apply and checks that events
// carrying a ts are applied from the live subscription meanwhile, once each,
// and counted once, with their outcome, when the stream delivers them.
func TestLiveTail(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	reg := prometheus.NewPedanticRegistry()
	nc := connect(t, url, reg)
	js, _ := jetstream.New(nc)
	rec := &recorder{gate: make(chan struct{}), gateUser: "u0"}
	r := startIngester(t, ingest.Config{Conn: nc, Registerer: reg, Applier: rec})
	testenv.WaitFor(t, "readiness on an empty stream", r.Ready)

	ts := time.Now().UTC().Format(time.RFC3339Nano)
	future := time.Now().Add(4 * time.Minute).UTC().Format(time.RFC3339Nano)
	msgs := []struct{ subject, payload string }{
		// No ts: only the stream can time it. Its reader holds it in Apply.
		{"presence.acme.heartbeat", `{"userId":"u0"}`},
		{"presence.acme.login", `{"userId":"u1","ts":"` + ts + `"}`},
		{"presence.acme.login", `{"userId":"u1","ts":"` + ts + `"}`}, // the same message again
		{"presence.acme.profile", `{"userId":"stale-2","ts":"` + ts + `","role":"bot"}`},
		// Within the allowed skew of the stored time, but not of half of
		// it: left to the stream, which applies it.
		{"presence.acme.status", `{"userId":"u3","ts":"` + future + `","availabilityStatus":"BUSY"}`},
		// Bad: only the stream rejects and dead-letters.
		{"presence.acme.slots", `{"userId":"u4","ts":"` + ts + `","chat":{"maxSlots":-1}}`},
	}
	for _, m := range msgs {
		publish(t, nc, m.subject, m.payload)
	}
	waitStored(t, js, "PRESENCE", uint64(len(msgs)))

	testenv.WaitFor(t, "the tail to apply u1 and stale-2", func() bool { return rec.len() == 2 })
	if got := r.AppliedSeq(); got != 0 {
		t.Fatalf("AppliedSeq %d while the stream's reader is held at 1", got)
	}
	for _, rc := range rec.records() {
		if rc.Ev.UserID != "u1" && rc.Ev.UserID != "stale-2" {
			t.Errorf("applied ahead of the stream: %+v", rc)
		}
	}
	if got := counterValue(t, reg, "presence_events_ahead_total"); got != 2 {
		t.Errorf("presence_events_ahead_total %v, want 2", got)
	}

	close(rec.gate)
	r.waitApplied(t, uint64(len(msgs)))
	var users []string
	for _, rc := range rec.records() {
		users = append(users, rc.Ev.UserID)
	}
	// u1 twice: once by the tail, and its repeat by the stream.
	want := map[string]int{"u0": 1, "u1": 2, "stale-2": 1, "u3": 1}
	got := map[string]int{}
	for _, u := range users {
		got[u]++
	}
	if len(got) != len(want) {
		t.Errorf("applied %v, want %v", got, want)
	}
	for u, n := range want {
		if got[u] != n {
			t.Errorf("applied %v, want %v", got, want)
			break
		}
	}
	for _, c := range []struct {
		typ, result string
		want        float64
	}{
		{"heartbeat", "applied", 1},
		{"login", "applied", 2},
		{"profile", "stale", 1}, // the outcome the tail had
		{"profile", "applied", 0},
		{"status", "applied", 1},
		{"slots", "rejected", 1},
	} {
		if v, err := eventsCounter(reg, c.typ, c.result); err != nil || v != c.want {
			t.Errorf("presence_events_total{type=%q,result=%q} = %v (%v), want %v", c.typ, c.result, v, err, c.want)
		}
	}
	if got := len(streamMsgs(t, js, "PRESENCE_DEADLETTER")); got != 1 {
		t.Errorf("%d dead letters, want 1", got)
	}
}
