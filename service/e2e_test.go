package service_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/service"
)

// badMessage is a message that breaks the contract, with the field its
// dead letter's Presence-Error must name and the dead-letter subject.
type badMessage struct {
	subject, body, field, deadLetter string
}

func badMessages() []badMessage {
	ids := make([]string, 257)
	for i := range ids {
		ids[i] = fmt.Sprintf("%q", fmt.Sprint("g", i))
	}
	return []badMessage{
		{"presence.acme.login", `{"ts":"2026-11-25T10:00:00Z"}`, "userId", "deadletter.presence.acme.login"},
		{"presence.acme.status", `{"userId":"u1","availabilityStatus":"SLEEPING"}`, "availabilityStatus", "deadletter.presence.acme.status"},
		{"presence.acme.slots", `{"userId":"u1","chat":{"maxSlots":1001}}`, "chat.maxSlots", "deadletter.presence.acme.slots"},
		{"presence.acme.nope", `{"userId":"u2"}`, "type", "deadletter.presence.acme._"},
		{"presence.ac$me.login", `{"userId":"u3"}`, "tenantId", "deadletter.presence._.login"},
		{"presence.globex.login", `not json`, "json", "deadletter.presence.globex.login"},
		{"presence.globex.profile", `{"userId":"u1","groupIds":[` + strings.Join(ids, ",") + `]}`, "groupIds", "deadletter.presence.globex.profile"},
		{"presence.globex.login", `{"userId":"u1","ts":"yesterday"}`, "ts", "deadletter.presence.globex.login"},
		{"presence.globex.login", `{"userId":"u1","ts":"2100-01-01T00:00:00Z"}`, "ts", "deadletter.presence.globex.login"},
	}
}

var e2eTenants = []string{"acme", "globex"}

// publishMixed publishes events and bad messages, shuffled together.
func publishMixed(t *testing.T, nc *nats.Conn, r *rand.Rand, events []oracle.Delivered, bad []badMessage) {
	t.Helper()
	type msg struct {
		ev  *oracle.Delivered
		bad *badMessage
	}
	var all []msg
	for i := range events {
		all = append(all, msg{ev: &events[i]})
	}
	for i := range bad {
		all = append(all, msg{bad: &bad[i]})
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, m := range all {
		if m.ev != nil {
			publishEvents(t, nc, []oracle.Delivered{*m.ev})
		} else if err := nc.Publish(m.bad.subject, []byte(m.bad.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// checkAgainstOracle asks random filters of every class for each tenant
// over HTTP and compares every indicator with the oracle.
func checkAgainstOracle(t *testing.T, addr string, tokens map[string]string, r *rand.Rand, truth oracle.Tenants, users, n int) {
	t.Helper()
	for i := range n {
		tn := e2eTenants[i%len(e2eTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		got, want := indicator(t, addr, tokens[tn], nil, f), oracle.Answer(truth[tn], f)
		if got != want {
			t.Fatalf("tenant %s filter %+v:\n got %+v\nwant %+v", tn, *f, got, want)
		}
	}
}

func TestEndToEndEmbedded(t *testing.T) {
	testEndToEnd(t, "")
}

func TestEndToEndExternalNATS(t *testing.T) {
	testEndToEnd(t, startNATSServer(t))
}

// testEndToEnd runs the real service (with the embedded NATS server when
// natsURL is empty), publishes a randomized set of events for two tenants
// with duplicates and bad messages, and checks the API, the dead letters and
// the metrics against the oracle, then again after a restart.
func testEndToEnd(t *testing.T, natsURL string) {
	dir := t.TempDir()
	tokensFile, tokens := writeTokens(t, dir, e2eTenants...)
	cfg := testConfig(dir)
	cfg.Tokens, cfg.NATSURL = tokensFile, natsURL
	svc := start(t, cfg)
	addr := svc.HTTPAddr()

	r := rand.New(rand.NewPCG(11, 12))
	const users = 80
	events := oracle.Events(r, e2eTenants, users, 10, 200)
	bad := badMessages()
	nc := natsConnect(t, svc.NATSURL())
	publishMixed(t, nc, r, events, bad)
	total := len(events) + len(bad)
	testenv.WaitFor(t, "every message to be counted", func() bool { return eventsCounted(t, addr) == total })

	truth := oracle.State(events)
	checkAgainstOracle(t, addr, tokens, r, truth, users, 300)

	t.Run("auth", func(t *testing.T) {
		if code, body := graphql(t, addr, "", nil, testenv.IndicatorQuery, nil); code != http.StatusUnauthorized || strings.Contains(string(body), `"data"`) {
			t.Fatalf("no token: %d %s", code, body)
		}
		if code, _ := graphql(t, addr, "not-a-token", nil, testenv.IndicatorQuery, nil); code != http.StatusUnauthorized {
			t.Fatalf("unknown token: %d", code)
		}
		// A token sees its own tenant, whatever X-Tenant-Id says.
		got := indicator(t, addr, tokens["acme"], map[string]string{"X-Tenant-Id": "globex"}, &engine.Filter{})
		if want := oracle.Answer(truth["acme"], &engine.Filter{}); got != want {
			t.Fatalf("acme's token with X-Tenant-Id globex: %+v, want acme's %+v", got, want)
		}
	})

	t.Run("dead letters", func(t *testing.T) {
		checkDeadLetters(t, nc, bad)
	})

	t.Run("metrics", func(t *testing.T) {
		rejected := 0.0
		for _, typ := range []string{"_", "login", "status", "slots", "profile"} {
			if v := metric(t, addr, `presence_events_total{result="rejected",type="`+typ+`"}`); v > 0 {
				rejected += v
			}
		}
		if rejected != float64(len(bad)) {
			t.Fatalf("rejected %v, want %d", rejected, len(bad))
		}
		for _, tn := range e2eTenants {
			ind := oracle.Query(truth[tn], &engine.Filter{})
			for series, want := range map[string]int64{
				`presence_connected_users{tenant="` + tn + `"}`:                      ind.Connected,
				`presence_in_production_users{tenant="` + tn + `"}`:                  ind.InProduction,
				`presence_chat_users{availability="AVAILABLE",tenant="` + tn + `"}`:  ind.Chat[1],
				`presence_chat_users{availability="BUSY",tenant="` + tn + `"}`:       ind.Chat[2],
				`presence_chat_users{availability="TOGGLE_OFF",tenant="` + tn + `"}`: ind.Chat[0],
				`presence_chat_slots{kind="max",tenant="` + tn + `"}`:                ind.MaxSlots,
				`presence_chat_slots{kind="current",tenant="` + tn + `"}`:            ind.CurrentSlots,
			} {
				if got := metric(t, addr, series); got != float64(want) {
					t.Errorf("%s = %v, want %d", series, got, want)
				}
			}
		}
	})

	// Restart on the same data dir: the same answers, nothing applied twice,
	// no dead letter written again. With an external server, events
	// published while presenced is down are applied when it is back.
	svc.stop(t)
	var more []oracle.Delivered
	if natsURL != "" {
		more = oracle.Events(rand.New(rand.NewPCG(13, 14)), e2eTenants, users, 3, 0)
		publishEvents(t, natsConnect(t, natsURL), more)
		events = append(events, more...)
		truth = oracle.State(events)
	}
	svc = start(t, cfg)
	// The shutdown snapshot covers what was applied: only the events
	// published while down are read again.
	if got := eventsCounted(t, svc.HTTPAddr()); got != len(more) {
		t.Fatalf("after restart %d events counted, want %d", got, len(more))
	}
	checkAgainstOracle(t, svc.HTTPAddr(), tokens, r, truth, users, 150)
	checkDeadLetters(t, natsConnect(t, svc.NATSURL()), bad)
	svc.stop(t)

	if natsURL != "" {
		// A new instance with an empty data dir starts from the snapshot in
		// the object store: it reads nothing from the stream.
		fresh := cfg
		fresh.DataDir = t.TempDir()
		svc = start(t, fresh)
		if got := eventsCounted(t, svc.HTTPAddr()); got != 0 {
			t.Fatalf("a new instance read %d events; the object store snapshot covers them all", got)
		}
		checkAgainstOracle(t, svc.HTTPAddr(), tokens, r, truth, users, 150)
		svc.stop(t)
	}
}

// checkDeadLetters reads the dead-letter stream: one dead letter per bad
// message, body unchanged, with the contract's subject and headers.
func checkDeadLetters(t *testing.T, nc *nats.Conn, bad []badMessage) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, "PRESENCE_DEADLETTER")
	if err != nil {
		t.Fatal(err)
	}
	if n := stream.CachedInfo().State.Msgs; n != uint64(len(bad)) {
		t.Fatalf("%d dead letters, want %d", n, len(bad))
	}
	want := map[string]badMessage{}
	for _, b := range bad {
		want[b.body] = b
	}
	for seq := uint64(1); seq <= uint64(len(bad)); seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		b, ok := want[string(m.Data)]
		if !ok {
			t.Fatalf("dead letter %d has a body that was never published: %q", seq, m.Data)
		}
		delete(want, string(m.Data))
		if m.Subject != b.deadLetter || m.Header.Get("Presence-Subject") != b.subject ||
			!strings.HasPrefix(m.Header.Get("Presence-Error"), "presence: "+b.field) {
			t.Errorf("dead letter of %s %s: subject %s, headers %v", b.subject, b.field, m.Subject, m.Header)
		}
	}
}

// TestOpenMode checks the tenant of open mode: X-Tenant-Id, else default.
func TestOpenMode(t *testing.T) {
	svc := start(t, testConfig(t.TempDir()))
	events := oracle.Events(rand.New(rand.NewPCG(1, 2)), []string{"default", "acme"}, 20, 5, 0)
	publishEvents(t, natsConnect(t, svc.NATSURL()), events)
	testenv.WaitFor(t, "the events", func() bool { return eventsCounted(t, svc.HTTPAddr()) == len(events) })
	truth := oracle.State(events)
	for header, tenant := range map[string]string{"": "default", "acme": "acme"} {
		h := map[string]string{}
		if header != "" {
			h["X-Tenant-Id"] = header
		}
		got := indicator(t, svc.HTTPAddr(), "", h, &engine.Filter{})
		if want := oracle.Answer(truth[tenant], &engine.Filter{}); got != want {
			t.Fatalf("X-Tenant-Id %q: %+v, want %s's %+v", header, got, tenant, want)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.HTTPAddr = "0.0.0.0:0"
	if _, err := service.Start(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "insecure-open") {
		t.Fatalf("open mode on every interface: %v", err)
	}
}
