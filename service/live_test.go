package service_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/internal/wsclient"
)

const liveSubscription = `subscription Live($f: ConnectedUsersIndicatorFilters, $ms: Int) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $ms) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`

// liveDial opens a graphql-transport-ws socket to the service and sends
// connection_init with payload; with ack it waits for connection_ack.
func liveDial(tb testing.TB, addr string, payload any) *wsclient.Conn {
	tb.Helper()
	c, _, err := wsclient.Dial(tb.Context(), "ws://"+addr+"/graphql", nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.CloseNow() })
	if err := c.Init(tb.Context(), payload, 10*time.Second); err != nil {
		tb.Fatal(err)
	}
	return c
}

// pushed decodes a next message of liveSubscription.
func pushed(tb testing.TB, m wsclient.Message) oracle.Indicator {
	tb.Helper()
	var p struct {
		Data   struct{ ConnectedUsersIndicatorUpdated oracle.Indicator }
		Errors []any
	}
	if m.Type != "next" || json.Unmarshal(m.Payload, &p) != nil || len(p.Errors) > 0 {
		tb.Fatalf("want a value, got %s %s %s", m.Type, m.ID, m.Payload)
	}
	return p.Data.ConnectedUsersIndicatorUpdated
}

// liveSub is one subscription of a test and the values it received.
type liveSub struct {
	tenant string
	id     string
	f      *engine.Filter
	conn   *wsclient.Conn
	values []oracle.Indicator
}

// drain moves the messages every connection holds to their subscriptions.
func drain(tb testing.TB, subs []*liveSub) {
	tb.Helper()
	byConn := map[*wsclient.Conn]map[string]*liveSub{}
	for _, s := range subs {
		if byConn[s.conn] == nil {
			byConn[s.conn] = map[string]*liveSub{}
		}
		byConn[s.conn][s.id] = s
	}
	for c, ids := range byConn {
		for c.Pending() > 0 {
			m, err := c.Next(time.Second)
			if err != nil {
				tb.Fatal(err)
			}
			s := ids[m.ID]
			if s == nil {
				tb.Fatalf("message for no subscription: %s %s %s", m.Type, m.ID, m.Payload)
			}
			s.values = append(s.values, pushed(tb, m))
		}
	}
}

// awaitFinal reads until every subscription's last value is want(s).
func awaitFinal(tb testing.TB, subs []*liveSub, want func(*liveSub) oracle.Indicator, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		drain(tb, subs)
		behind := 0
		for _, s := range subs {
			if len(s.values) == 0 || s.values[len(s.values)-1] != want(s) {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, s := range subs {
				if w := want(s); len(s.values) == 0 || s.values[len(s.values)-1] != w {
					tb.Fatalf("%d subscriptions never reached their final value; %s of %s (%+v): %d values, want %+v",
						behind, s.id, s.tenant, *s.f, len(s.values), w)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLiveEndToEnd subscribes over WebSocket to the real service, publishes
// events over NATS, and checks each value pushed against the oracle: every
// value must be the oracle's after some prefix of the events in the order
// they were published (the stream's order), later values after longer
// prefixes, and the last one after all of them. It checks the breakdowns
// too, and that shutdown closes the sockets with 1001.
func TestLiveEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tokensFile, tokens := writeTokens(t, dir, e2eTenants...)
	cfg := testConfig(dir)
	cfg.Tokens = tokensFile
	svc := start(t, cfg)
	addr := svc.HTTPAddr()
	ctx := t.Context()

	t.Run("auth", func(t *testing.T) {
		for _, payload := range []any{nil, map[string]any{"Authorization": "Bearer not-a-token"}} {
			c, _, err := wsclient.Dial(ctx, "ws://"+addr+"/graphql", nil)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]any{"type": "connection_init"}
			if payload != nil {
				m["payload"] = payload
			}
			c.Send(ctx, m)
			if code, _ := c.WaitClose(10 * time.Second); code != 4403 {
				t.Errorf("payload %v: closed with %d, want 4403", payload, code)
			}
		}
	})

	r := rand.New(rand.NewPCG(41, 42))
	const users = 50
	var subs []*liveSub
	conns := map[string]*wsclient.Conn{}
	for _, tn := range e2eTenants {
		conns[tn] = liveDial(t, addr, map[string]any{"Authorization": "Bearer " + tokens[tn]})
	}
	for i := range 20 {
		s := &liveSub{tenant: e2eTenants[i%2], id: fmt.Sprint(i), f: oracle.RandomFilter(r, oracle.Class(i%3), users)}
		s.conn = conns[s.tenant]
		vars := variables(s.f)
		vars["ms"] = []int{0, 0, 0, 50}[i%4]
		if err := s.conn.Subscribe(ctx, s.id, liveSubscription, vars); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	// The first values: all users still unknown.
	awaitFinal(t, subs, func(*liveSub) oracle.Indicator { return oracle.AnswerOf(engine.Indicator{}) }, 10*time.Second)

	events := oracle.Events(r, e2eTenants, users, 8, 60)
	nc := natsConnect(t, svc.NATSURL())
	for lo := 0; lo < len(events); lo += 10 {
		publishEvents(t, nc, events[lo:min(lo+10, len(events))])
		time.Sleep(2 * time.Millisecond) // let values out between batches
	}
	final := oracle.State(events)
	awaitFinal(t, subs, func(s *liveSub) oracle.Indicator { return oracle.Answer(final[s.tenant], s.f) }, 30*time.Second)

	prefixes := make([]oracle.Tenants, len(events)+1)
	for k := range prefixes {
		prefixes[k] = oracle.State(events[:k])
	}
	total := 0
	for _, s := range subs {
		k := 0
		for i, v := range s.values {
			if i > 0 && v == s.values[i-1] {
				t.Fatalf("subscription %s pushed the same value twice in a row: %+v", s.id, v)
			}
			for k <= len(events) && oracle.Answer(prefixes[k][s.tenant], s.f) != v {
				k++
			}
			if k > len(events) {
				t.Fatalf("subscription %s of %s (%+v): value %d %+v is the oracle's after no prefix of the events following the previous value's",
					s.id, s.tenant, *s.f, i, v)
			}
		}
		total += len(s.values)
	}
	if total < 4*len(subs) {
		t.Errorf("%d values for %d subscriptions: the events changed too little to prove anything", total, len(subs))
	}

	t.Run("breakdown", func(t *testing.T) {
		for i := range 120 {
			tn := e2eTenants[i%2]
			by := engine.Dimension(i % 6)
			f := oracle.RandomFilter(r, oracle.Class(i/6%3), users)
			checkBreakdown(t, addr, tokens[tn], nil, final[tn], by, f, tn)
		}
	})

	t.Run("query over the socket", func(t *testing.T) {
		c := conns["acme"]
		f := oracle.RandomFilter(r, oracle.ClassC, users)
		c.Subscribe(ctx, "q", testenv.IndicatorQuery, variables(f))
		var m wsclient.Message
		for m.ID != "q" { // values of the subscriptions may come first
			var err error
			if m, err = c.Next(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		var p struct {
			Data struct{ ConnectedUsersIndicator oracle.Indicator }
		}
		json.Unmarshal(m.Payload, &p)
		if want := oracle.Answer(final["acme"], f); m.Type != "next" || p.Data.ConnectedUsersIndicator != want {
			t.Fatalf("%s %s, want %+v", m.Type, m.Payload, want)
		}
		if m, _ := c.Next(10 * time.Second); m.ID != "q" || m.Type != "complete" {
			t.Fatalf("after the answer: %s %s", m.Type, m.ID)
		}
	})

	// Shutdown closes every socket with 1001.
	svc.stop(t)
	for tn, c := range conns {
		if code, _ := c.WaitClose(15 * time.Second); code != websocket.StatusGoingAway {
			t.Errorf("%s's socket closed with %d at shutdown, want 1001", tn, code)
		}
	}
}

// TestLiveThousandSubscribers opens 1000 subscriptions of one filter on the
// real service: one engine view serves them all, and every one of them
// receives the final value.
func TestLiveThousandSubscribers(t *testing.T) {
	svc := start(t, testConfig(t.TempDir()))
	addr := svc.HTTPAddr()
	ctx := t.Context()
	// Ids of two dimensions: a filter only a view answers.
	f := &engine.Filter{GroupIDs: []string{"g1", "g2", "g3"}, ProjectIDs: []string{"p0", "p1"}}
	var subs []*liveSub
	for range 20 {
		c := liveDial(t, addr, nil)
		for i := range 50 {
			s := &liveSub{tenant: "default", id: fmt.Sprint(i), f: f, conn: c}
			vars := variables(f)
			if i%2 == 0 {
				vars["ms"] = 0
			} // else the default 1000
			if err := c.Subscribe(ctx, s.id, liveSubscription, vars); err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
	}
	awaitFinal(t, subs, func(*liveSub) oracle.Indicator { return oracle.AnswerOf(engine.Indicator{}) }, 20*time.Second)
	if v := metric(t, addr, "presence_subscriptions_open"); v != 1000 {
		t.Fatalf("presence_subscriptions_open = %v", v)
	}

	r := rand.New(rand.NewPCG(51, 52))
	events := oracle.Events(r, []string{"default"}, 200, 6, 50)
	publishEvents(t, natsConnect(t, svc.NATSURL()), events)
	want := oracle.Answer(oracle.State(events)["default"], f)
	if want.ConnectedUsersCount == 0 {
		t.Fatal("the events connect nobody the filter matches: the test proves nothing")
	}
	awaitFinal(t, subs, func(*liveSub) oracle.Indicator { return want }, 30*time.Second)
	// engine.Stats().Views, as /metrics reads it: one view for the 1000.
	if v := metric(t, addr, "presence_views"); v != 1 {
		t.Errorf("presence_views = %v, want 1", v)
	}
	if v := metric(t, addr, "presence_subscription_messages_total"); v < 2000 {
		t.Errorf("presence_subscription_messages_total = %v, want at least two values each", v)
	}
	if v := metric(t, addr, `presence_subscription_clients_dropped_total{reason="slow"}`); v != 0 {
		t.Errorf("%v clients dropped as slow", v)
	}
}
