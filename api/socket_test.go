package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	brute "github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/internal/wsclient"
	"github.com/presenced/presenced/presence"
)

const liveQuery = `subscription Live($f: ConnectedUsersIndicatorFilters, $ms: Int) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $ms) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`

// testConfig fills what cfg leaves out for a test: an engine (the
// fixture's), no rate limit, a logger that discards.
func testConfig(tb testing.TB, cfg api.Config) api.Config {
	if cfg.Engine == nil {
		cfg.Engine = newEngine(tb)
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = rate.Inf
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// liveServer serves a Server of cfg (see testConfig) on an httptest
// server until the test ends.
func liveServer(tb testing.TB, cfg api.Config) (*api.Server, *httptest.Server) {
	tb.Helper()
	s, err := api.New(testConfig(tb, cfg))
	if err != nil {
		tb.Fatal(err)
	}
	return s, serveTest(tb, s)
}

// serveTest serves s on an httptest server, shut down when the test ends.
func serveTest(tb testing.TB, s *api.Server) *httptest.Server {
	ts := httptest.NewServer(s.Handler())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		ts.Close()
	})
	return ts
}

func dial(tb testing.TB, ts *httptest.Server, opts *wsclient.Options) *wsclient.Conn {
	tb.Helper()
	c, _, err := wsclient.Dial(tb.Context(), wsclient.URL(ts.URL), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.CloseNow() })
	return c
}

// acked dials and completes connection_init with payload.
func acked(tb testing.TB, ts *httptest.Server, payload any) *wsclient.Conn {
	tb.Helper()
	c := dial(tb, ts, nil)
	if err := c.Init(tb.Context(), payload, 5*time.Second); err != nil {
		tb.Fatal(err)
	}
	return c
}

// next returns the next message, which must be of type typ for id.
func next(tb testing.TB, c *wsclient.Conn, id, typ string) wsclient.Message {
	tb.Helper()
	m, err := c.Next(5 * time.Second)
	if err != nil {
		tb.Fatalf("waiting for %s %s: %v", typ, id, err)
	}
	if m.ID != id || m.Type != typ {
		tb.Fatalf("want %s %s, got %s %s %s", typ, id, m.Type, m.ID, m.Payload)
	}
	return m
}

// anyNext returns the next message, whatever it is.
func anyNext(tb testing.TB, c *wsclient.Conn) wsclient.Message {
	tb.Helper()
	m, err := c.Next(5 * time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// value decodes the indicator of a next message of liveQuery.
func value(tb testing.TB, m wsclient.Message) brute.Indicator {
	tb.Helper()
	var p struct {
		Data   struct{ ConnectedUsersIndicatorUpdated brute.Indicator }
		Errors []any
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil || len(p.Errors) > 0 {
		tb.Fatalf("next payload %s: %v", m.Payload, err)
	}
	return p.Data.ConnectedUsersIndicatorUpdated
}

// errorsOf decodes the payload of an error message.
func errorsOf(tb testing.TB, m wsclient.Message) []struct {
	Message    string
	Extensions map[string]any
} {
	tb.Helper()
	var errs []struct {
		Message    string
		Extensions map[string]any
	}
	if err := json.Unmarshal(m.Payload, &errs); err != nil || len(errs) == 0 {
		tb.Fatalf("error payload %s: %v", m.Payload, err)
	}
	return errs
}

// silent checks that no message comes within d.
func silent(tb testing.TB, c *wsclient.Conn, d time.Duration) {
	tb.Helper()
	if m, err := c.Next(d); !errors.Is(err, wsclient.ErrTimeout) {
		tb.Fatalf("want no message for %v, got %s %s %s (%v)", d, m.Type, m.ID, m.Payload, err)
	}
}

func closesWith(tb testing.TB, c *wsclient.Conn, code websocket.StatusCode, reason string) {
	tb.Helper()
	got, why := c.WaitClose(10 * time.Second)
	if got != code || !strings.Contains(why, reason) {
		tb.Fatalf("closed with %d %q, want %d %q", got, why, code, reason)
	}
}

// clock hands out increasing event times.
type clock struct{ ts int64 }

func (c *clock) event(typ presence.Type, user string) *presence.Event {
	c.ts += int64(time.Millisecond)
	return &presence.Event{Type: typ, UserID: user, TS: c.ts, Fields: presence.HasTS}
}

// withChat sets the chat fields of ev.
func withChat(ev *presence.Event, chat presence.Status, maxSlots, cur uint16) *presence.Event {
	ev.Fields |= presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots
	ev.Chat, ev.MaxSlots, ev.CurrentSlots = chat, maxSlots, cur
	return ev
}

func TestSocketProtocol(t *testing.T) {
	e, tr := newTruth(t)
	_, ts := liveServer(t, api.Config{Engine: e})
	ctx := t.Context()
	c := acked(t, ts, map[string]any{"X-Tenant-Id": "acme"})
	if c.Subprotocol() != api.WSProtocol {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}

	// ping, with and without a payload
	c.Send(ctx, map[string]any{"type": "ping", "payload": map[string]any{"n": 1}})
	if m := next(t, c, "", "pong"); string(m.Payload) != `{"n":1}` {
		t.Errorf("pong payload %s", m.Payload)
	}
	c.Send(ctx, map[string]any{"type": "ping"})
	next(t, c, "", "pong")
	c.Send(ctx, map[string]any{"type": "pong"}) // a heartbeat: no answer
	silent(t, c, 50*time.Millisecond)

	// A query over the socket: one next, the same as over HTTP, then complete.
	c.Subscribe(ctx, "q1", indicatorQuery, map[string]any{"f": map[string]any{"groupIds": []string{"g1"}}})
	m := next(t, c, "q1", "next")
	overHTTP := query(t, ts.URL, indicatorQuery, map[string]any{"f": map[string]any{"groupIds": []string{"g1"}}}, "X-Tenant-Id: acme")
	if string(m.Payload) != overHTTP.raw {
		t.Errorf("query over the socket %s, over HTTP %s", m.Payload, overHTTP.raw)
	}
	next(t, c, "q1", "complete")

	// A breakdown over the socket.
	c.Subscribe(ctx, "q2", `{ connectedUsersIndicatorBreakdown(by: ROLE) { key indicator { connectedUsersCount } } }`, nil)
	m = next(t, c, "q2", "next")
	if want := `{"data":{"connectedUsersIndicatorBreakdown":[{"key":"EXPERT","indicator":{"connectedUsersCount":1}},` +
		`{"key":"MANAGER","indicator":{"connectedUsersCount":1}},{"key":"OPERATOR","indicator":{"connectedUsersCount":2}}]}}`; string(m.Payload) != want {
		t.Errorf("breakdown %s\nwant %s", m.Payload, want)
	}
	next(t, c, "q2", "complete")

	// A subscription: the current value at once; complete stops it, and
	// its id may be used again.
	c.Subscribe(ctx, "s1", liveQuery, nil)
	if got, want := value(t, next(t, c, "s1", "next")), tr.answer("acme", &engine.Filter{}); got != want {
		t.Fatalf("first value %+v, want %+v", got, want)
	}
	c.Complete(ctx, "s1")
	c.Complete(ctx, "nobody") // unknown: ignored
	clk := &clock{ts: t0.Add(time.Hour).UnixNano()}
	tr.apply("acme", withChat(clk.event(presence.Login, "new"), presence.Available, 2, 1))
	silent(t, c, 100*time.Millisecond)
	c.Subscribe(ctx, "s1", liveQuery, map[string]any{"ms": 0})
	if got := value(t, next(t, c, "s1", "next")); got.ConnectedUsersCount != 6 {
		t.Fatalf("after a login: %+v", got)
	}

	// Request errors come as error messages, without complete.
	for _, tc := range []struct{ name, query, want string }{
		{"negative minIntervalMs", `subscription { connectedUsersIndicatorUpdated(minIntervalMs: -1) { connectedUsersCount } }`,
			"api: minIntervalMs: must not be negative"},
		{"syntax", `subscription {`, "syntax error"},
		{"unknown field", `subscription { nope }`, "nope"},
		{"too many ids", `subscription($u: [ID!]) { connectedUsersIndicatorUpdated(filters: {userIds: $u}) { connectedUsersCount } }`,
			"api: filters.userIds: at most 10000 values"},
	} {
		vars := map[string]any{}
		if strings.Contains(tc.query, "$u") {
			vars["u"] = ids(api.MaxListLen + 1)
		}
		c.Subscribe(ctx, tc.name, tc.query, vars)
		errs := errorsOf(t, next(t, c, tc.name, "error"))
		if !strings.Contains(errs[0].Message, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, errs[0].Message, tc.want)
		}
		if tc.name == "negative minIntervalMs" && (errs[0].Extensions["argument"] != "minIntervalMs" || errs[0].Extensions["code"] != "BAD_USER_INPUT") {
			t.Errorf("extensions %v", errs[0].Extensions)
		}
	}
	silent(t, c, 50*time.Millisecond)

	// null minIntervalMs is accepted, and the change pushed to both
	// subscriptions (that null holds it for exactly 1 s, and 0 not at all,
	// is TestSubscriptionThrottle's, on a fake clock).
	c.Subscribe(ctx, "null", liveQuery, map[string]any{"ms": nil})
	next(t, c, "null", "next")
	tr.apply("acme", clk.event(presence.Logout, "new"))
	pushed := map[string]brute.Indicator{}
	for range 2 {
		m := anyNext(t, c)
		pushed[m.ID] = value(t, m)
	}
	want := tr.answer("acme", &engine.Filter{})
	if pushed["s1"] != want || pushed["null"] != want {
		t.Errorf("after a logout: %+v, want %+v for s1 and null", pushed, want)
	}

	// A subscription sent over HTTP is refused with a pointer to the socket.
	res := query(t, ts.URL, liveQuery, nil)
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, "WebSocket at /graphql") {
		t.Errorf("subscription over HTTP: %s", res.raw)
	}
}

func TestSocketProtocolErrors(t *testing.T) {
	_, ts := liveServer(t, api.Config{})
	ctx := t.Context()
	cases := []struct {
		name   string
		init   bool
		send   string
		code   websocket.StatusCode
		reason string
	}{
		{"not JSON", false, `nope`, api.CloseBadMessage, "Invalid message"},
		{"unknown type", true, `{"type":"start","id":"1"}`, api.CloseBadMessage, `unknown type "start"`},
		{"type not a string", true, `{"type":1}`, api.CloseBadMessage, "Invalid message"},
		{"subscribe without id", true, `{"type":"subscribe","payload":{"query":"{__typename}"}}`, api.CloseBadMessage, "id"},
		{"subscribe without query", true, `{"type":"subscribe","id":"1","payload":{}}`, api.CloseBadMessage, "payload.query"},
		{"subscribe payload not an object", true, `{"type":"subscribe","id":"1","payload":"{__typename}"}`, api.CloseBadMessage, "payload"},
		{"init payload not an object", false, `{"type":"connection_init","payload":[1]}`, api.CloseBadMessage, "payload"},
		{"subscribe before ack", false, `{"type":"subscribe","id":"1","payload":{"query":"{__typename}"}}`, api.CloseUnauthorized, "Unauthorized"},
		{"second init", true, `{"type":"connection_init"}`, api.CloseTooManyRequests, "Too many initialisation requests"},
		{"bad tenant", false, `{"type":"connection_init","payload":{"x-tenant-id":"a b"}}`, api.CloseBadMessage, "X-Tenant-Id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *wsclient.Conn
			if tc.init {
				c = acked(t, ts, nil)
			} else {
				c = dial(t, ts, nil)
			}
			c.SendRaw(ctx, tc.send)
			closesWith(t, c, tc.code, tc.reason)
		})
	}

	t.Run("duplicate id", func(t *testing.T) {
		c := acked(t, ts, nil)
		c.Subscribe(ctx, "x", liveQuery, nil)
		next(t, c, "x", "next")
		c.Subscribe(ctx, "x", liveQuery, nil)
		closesWith(t, c, api.CloseDuplicateID, "Subscriber for x already exists")
	})
	t.Run("binary frame", func(t *testing.T) {
		ws, _, err := websocket.Dial(ctx, wsclient.URL(ts.URL), &websocket.DialOptions{Subprotocols: []string{api.WSProtocol}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		ws.Write(ctx, websocket.MessageBinary, []byte(`{"type":"connection_init"}`))
		_, _, err = ws.Read(ctx)
		if websocket.CloseStatus(err) != api.CloseBadMessage {
			t.Fatalf("binary frame: %v", err)
		}
	})
	t.Run("no subprotocol", func(t *testing.T) {
		c := dial(t, ts, &wsclient.Options{Subprotocols: []string{}})
		closesWith(t, c, api.CloseSubprotocol, "Subprotocol not acceptable")
	})
	t.Run("cross-origin page", func(t *testing.T) {
		_, resp, err := wsclient.Dial(ctx, wsclient.URL(ts.URL), &wsclient.Options{Header: http.Header{"Origin": {"http://evil.example"}}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-origin upgrade: %v %v", resp, err)
		}
	})
	t.Run("plain GET still serves GraphiQL", func(t *testing.T) {
		res, err := http.Get(ts.URL + "/graphql")
		if err != nil || res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%v %v", res, err)
		}
		res.Body.Close()
	})
}

func TestSocketAuth(t *testing.T) {
	tok := api.NewToken()
	e, tr := newTruth(t)
	_, ts := liveServer(t, api.Config{Engine: e, Tokens: mustTokens(t, "acme "+sha(tok)+"\n")})
	ctx := t.Context()
	for name, payload := range map[string]any{
		"no payload":      nil,
		"empty payload":   map[string]any{},
		"unknown token":   map[string]any{"Authorization": "Bearer nope"},
		"not bearer":      map[string]any{"Authorization": "Basic " + tok},
		"not a string":    map[string]any{"Authorization": 42},
		"header ignored":  map[string]any{"X-Tenant-Id": "acme"},
		"token alone":     map[string]any{"Authorization": tok},
		"empty bearer":    map[string]any{"Authorization": "Bearer "},
		"null payload":    json.RawMessage("null"),
		"token elsewhere": map[string]any{"headers": map[string]any{"Authorization": "Bearer " + tok}},
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, ts, &wsclient.Options{Header: http.Header{"Authorization": {"Bearer " + tok}}})
			m := map[string]any{"type": "connection_init"}
			if payload != nil {
				m["payload"] = payload
			}
			c.Send(ctx, m)
			closesWith(t, c, api.CloseForbidden, "Forbidden")
		})
	}
	// The key is matched case-insensitively; the token decides the tenant.
	c := acked(t, ts, map[string]any{"authorization": "bearer " + tok, "X-Tenant-Id": "globex"})
	c.Subscribe(ctx, "1", liveQuery, nil)
	if got, want := value(t, next(t, c, "1", "next")), tr.answer("acme", &engine.Filter{}); got != want {
		t.Fatalf("token of acme: %+v, want acme's %+v", got, want)
	}

	t.Run("open mode", func(t *testing.T) {
		_, ts := liveServer(t, api.Config{Engine: e})
		cases := []struct {
			header  string
			payload any
			tenant  string
		}{
			{"", nil, "default"},
			{"globex", nil, "globex"},
			{"globex", map[string]any{"x-tenant-id": "acme"}, "acme"},
			{"", map[string]any{"X-Tenant-Id": "acme"}, "acme"},
		}
		for _, tc := range cases {
			opts := &wsclient.Options{}
			if tc.header != "" {
				opts.Header = http.Header{"X-Tenant-Id": {tc.header}}
			}
			c := dial(t, ts, opts)
			if err := c.Init(ctx, tc.payload, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			c.Subscribe(ctx, "1", liveQuery, nil)
			if got, want := value(t, next(t, c, "1", "next")), tr.answer(tc.tenant, &engine.Filter{}); got != want {
				t.Errorf("header %q payload %v: %+v, want %s's %+v", tc.header, tc.payload, got, tc.tenant, want)
			}
		}
	})
}

// TestSocketInitTimeout waits the contract's 3 s for connection_init, to
// the nanosecond on the fake clock of a synctest bubble.
func TestSocketInitTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		b := newBubble(t, api.Config{Registry: reg})
		start := time.Now()
		c := b.dial(t, nil, true)
		time.Sleep(api.DefaultInitTimeout - time.Nanosecond)
		c.quiet()
		c.open()
		code, reason := c.waitClose()
		if code != api.CloseInitTimeout || reason != "Connection initialisation timeout" {
			t.Errorf("closed with %d %q, want 4408", code, reason)
		}
		if d := time.Since(start); d != api.DefaultInitTimeout {
			t.Errorf("closed after %v, want %v", d, api.DefaultInitTimeout)
		}
		// A socket that sent connection_init in time stays.
		c = b.dial(t, nil, true)
		time.Sleep(time.Second)
		c.init(nil)
		time.Sleep(api.DefaultInitTimeout)
		c.quiet()
		c.open()
		if v := testutil.ToFloat64(counterOf(t, reg, "presence_subscription_clients_dropped_total", "init_timeout")); v != 1 {
			t.Errorf("dropped{init_timeout} = %v", v)
		}
	})
}

// counterOf gathers one series of reg as a collector for testutil.
func counterOf(tb testing.TB, reg *prometheus.Registry, name, reason string) prometheus.Collector {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x", Help: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	tb.Fatalf("no %s{reason=%q}", name, reason)
	return nil
}

// TestSubscriptionThrottle checks the throttle of contract 6.2 through the
// socket and the resolver, on the fake clock of a synctest bubble: every
// value must arrive at its exact instant.
func TestSubscriptionThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, tr := newTruth(t)
		b := newBubble(t, api.Config{Engine: e})
		clk := &clock{ts: t0.Add(time.Hour).UnixNano()}
		apply := func(ev *presence.Event) { tr.apply("acme", ev) }
		current := func() brute.Indicator { return tr.answer("acme", &engine.Filter{}) }
		c := b.acked(t, map[string]any{"X-Tenant-Id": "acme"})
		const interval = 400 * time.Millisecond
		c.subscribe("t", liveQuery, map[string]any{"ms": interval.Milliseconds()})
		v0 := c.nextOf("t", "next")
		if v0.At != time.Now() {
			t.Fatalf("first value at %v, subscribed at %v: not at once", v0.At, time.Now())
		}

		// Changes inside the interval: held, and only the latest goes, when
		// the interval ends, to the nanosecond.
		time.Sleep(50 * time.Millisecond)
		apply(withChat(clk.event(presence.Login, "n1"), presence.Available, 3, 1))
		time.Sleep(100 * time.Millisecond)
		apply(withChat(clk.event(presence.Login, "n2"), presence.Busy, 2, 2))
		time.Sleep(v0.At.Add(interval - time.Nanosecond).Sub(time.Now()))
		c.quiet()
		held := c.nextOf("t", "next")
		if d := held.At.Sub(v0.At); d != interval {
			t.Errorf("held value after %v, want %v", d, interval)
		}
		if got, want := value(t, held), current(); got != want {
			t.Errorf("held value %+v, want the latest %+v", got, want)
		}

		// After a quiet interval a change goes at once.
		time.Sleep(interval + 100*time.Millisecond)
		applied := time.Now()
		apply(clk.event(presence.Logout, "n1"))
		if m := c.nextOf("t", "next"); m.At != applied {
			t.Errorf("change after a quiet interval came %v after it, not at once", m.At.Sub(applied))
		}
		// A change undone inside the interval: nothing to push, ever.
		apply(clk.event(presence.Login, "n1"))
		apply(clk.event(presence.Logout, "n1"))
		time.Sleep(interval + 300*time.Millisecond)
		c.quiet()

		// Only what the client receives counts: a change of fields it did
		// not ask for is not pushed, and starts no interval.
		c.subscribe("count", `subscription { connectedUsersIndicatorUpdated(minIntervalMs: 400) { connectedUsersCount } }`, nil)
		c.nextOf("count", "next")
		time.Sleep(interval + 50*time.Millisecond)
		slots := time.Now()
		apply(withChat(clk.event(presence.Slots, "n2"), presence.Available, 5, 0))
		if m := c.nextOf("t", "next"); m.At != slots { // the full indicator changed
			t.Errorf("slots change pushed %v after it, not at once", m.At.Sub(slots))
		}
		time.Sleep(200 * time.Millisecond)
		c.quiet()
		applied = time.Now()
		apply(clk.event(presence.Logout, "n2"))
		got := map[string]wsclient.Message{}
		for range 2 {
			m := c.next()
			got[m.ID] = m
		}
		if d := got["count"].At.Sub(applied); d != 0 {
			t.Errorf("count changed after a quiet interval, pushed after %v, want at once", d)
		}
		if d := got["t"].At.Sub(slots); d != interval {
			t.Errorf("t pushed %v after its last value, want %v", d, interval)
		}

		// null and absent minIntervalMs are 1000 ms, not 0.
		for _, tc := range []struct {
			id   string
			q    string
			vars map[string]any
		}{
			{"null", liveQuery, map[string]any{"ms": nil}},
			{"unset variable", liveQuery, map[string]any{}},
			{"absent", `subscription { connectedUsersIndicatorUpdated { connectedUsersCount } }`, nil},
		} {
			c.subscribe(tc.id, tc.q, tc.vars)
			first := c.nextOf(tc.id, "next")
			time.Sleep(100 * time.Millisecond)
			apply(clk.event(presence.Login, "d-"+tc.id))
			apply(clk.event(presence.Login, "e-"+tc.id))
			time.Sleep(first.At.Add(api.DefaultMinInterval - time.Nanosecond).Sub(time.Now()))
			for {
				synctest.Wait()
				if len(c.in) == 0 {
					break
				}
				if m := c.next(); m.ID == tc.id { // the others' pushes may come
					t.Fatalf("%s: pushed after %v, want %v", tc.id, m.At.Sub(first.At), api.DefaultMinInterval)
				}
			}
			for {
				m := c.next()
				if m.ID != tc.id {
					continue
				}
				if d := m.At.Sub(first.At); d != api.DefaultMinInterval {
					t.Errorf("%s minIntervalMs: pushed after %v, want %v", tc.id, d, api.DefaultMinInterval)
				}
				if got := value(t, m).ConnectedUsersCount; got != current().ConnectedUsersCount {
					t.Errorf("%s: %d connected, want the latest %d", tc.id, got, current().ConnectedUsersCount)
				}
				break
			}
			c.send(map[string]any{"id": tc.id, "type": "complete"})
		}
		c.send(map[string]any{"id": "t", "type": "complete"})
		c.send(map[string]any{"id": "count", "type": "complete"})
		time.Sleep(2 * time.Second) // the held pushes of t and count, if any, are stopped
		synctest.Wait()
		for len(c.in) > 0 {
			c.next()
		}

		// 0 pushes every change, at once.
		c.subscribe("zero", liveQuery, map[string]any{"ms": 0})
		last := value(t, c.nextOf("zero", "next"))
		for i := range 5 {
			time.Sleep(30 * time.Millisecond)
			applied := time.Now()
			apply(clk.event(presence.Login, fmt.Sprint("z", i)))
			m := c.nextOf("zero", "next")
			if v := value(t, m); v.ConnectedUsersCount != last.ConnectedUsersCount+1 || m.At != applied {
				t.Fatalf("change %d: %+v after %+v, %v after it", i, v, last, m.At.Sub(applied))
			}
			last = value(t, m)
		}

		// The final value of a burst is never dropped: five changes inside
		// the interval, and the last goes when it ends.
		c.subscribe("burst", liveQuery, map[string]any{"ms": 250})
		bFirst := c.nextOf("burst", "next")
		for i := range 5 {
			time.Sleep(10 * time.Millisecond)
			apply(clk.event(presence.Login, fmt.Sprint("b", i)))
		}
		for {
			m := c.next()
			if m.ID != "burst" {
				continue
			}
			if d := m.At.Sub(bFirst.At); d != 250*time.Millisecond || value(t, m) != current() {
				t.Errorf("burst: %+v after %v, want the final %+v after 250ms", value(t, m), d, current())
			}
			break
		}
	})
}

// TestSubscriptionsAgainstOracle applies random events while subscriptions
// of random filters and intervals follow them, in a synctest bubble so that
// the pauses between events let every value due out whatever the load of
// the machine, and checks every value
// pushed: it must be the oracle's value after some prefix of the events,
// later pushes after longer prefixes, each differing from the one before;
// and the last must be the final value.
func TestSubscriptionsAgainstOracle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { subscriptionsAgainstOracle(t) })
}

func subscriptionsAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const users = 40
	events := brute.Events(r, []string{"acme"}, users, 12, 40)
	e, _ := engine.New(engine.Config{})
	b := newBubble(t, api.Config{Engine: e})

	type sub struct {
		id     string
		f      *engine.Filter
		pushes []brute.Indicator
	}
	var subs []*sub
	conns := []*pipeClient{b.acked(t, map[string]any{"X-Tenant-Id": "acme"}), b.acked(t, map[string]any{"X-Tenant-Id": "acme"})}
	for i := range 24 {
		s := &sub{id: fmt.Sprint(i), f: brute.RandomFilter(r, brute.Class(i%3), users)}
		subs = append(subs, s)
		vars := variablesOf(s.f)
		vars["ms"] = []int{0, 0, 20}[i%3]
		conns[i%2].subscribe(s.id, liveQuery, vars)
	}
	for i := range events {
		e.Apply("acme", &events[i].Ev)
		if i%4 == 0 {
			time.Sleep(200 * time.Microsecond) // let the values out between events
		}
	}
	final := brute.State(events)["acme"]
	byID := map[string]*sub{}
	for _, s := range subs {
		byID[s.id] = s
	}
	// Read until every subscription shows the final value.
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range subs {
		want := brute.Answer(final, s.f)
		for len(s.pushes) == 0 || s.pushes[len(s.pushes)-1] != want {
			if time.Now().After(deadline) {
				t.Fatalf("subscription %s (%+v) never reached %+v: %v", s.id, *s.f, want, s.pushes)
			}
			synctest.Wait()
			for _, c := range conns {
				for len(c.in) > 0 {
					m := c.next()
					if m.Type != "next" {
						t.Fatalf("unexpected %s %s %s", m.Type, m.ID, m.Payload)
					}
					byID[m.ID].pushes = append(byID[m.ID].pushes, value(t, m))
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The oracle after every prefix of the events.
	prefixes := make([]brute.Tenants, len(events)+1)
	for k := range prefixes {
		prefixes[k] = brute.State(events[:k])
	}
	total := 0
	for _, s := range subs {
		k := 0
		for i, v := range s.pushes {
			if i > 0 && v == s.pushes[i-1] {
				t.Fatalf("subscription %s pushed the same value twice in a row: %+v", s.id, v)
			}
			for k <= len(events) && brute.Answer(prefixes[k]["acme"], s.f) != v {
				k++
			}
			if k > len(events) {
				t.Fatalf("subscription %s (%+v) push %d %+v is the oracle's after no prefix following the previous push's",
					s.id, *s.f, i, v)
			}
		}
		total += len(s.pushes)
	}
	if total < 3*len(subs) {
		t.Errorf("%d pushes for %d subscriptions: the events changed too little to prove anything", total, len(subs))
	}
}

// variablesOf turns a filter into the variables of liveQuery ($f).
func variablesOf(f *engine.Filter) map[string]any {
	return map[string]any{"f": testenv.FilterInput(f)}
}

// TestSlowClient drops a client that does not read, at exactly the default
// SocketWriteTimeout, while the engine and another client go on. It runs on
// the fake clock of a synctest bubble, over pipes: the first message to the
// client that does not read blocks at once, as it would once the TCP
// buffers are full.
func TestSlowClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, _ := engine.New(engine.Config{})
		tr := &truth{e: e}
		reg := prometheus.NewRegistry()
		b := newBubble(t, api.Config{Engine: e, Registry: reg})
		dropped := func() float64 {
			return testutil.ToFloat64(counterOf(t, reg, "presence_subscription_clients_dropped_total", "slow"))
		}
		start := time.Now()

		slow := b.dial(t, nil, false)
		slow.send(map[string]any{"type": "connection_init"}) // its ack is the write that blocks
		for i := range 100 {
			// Distinct filters, each pushing every change.
			slow.subscribe(fmt.Sprint(i), liveQuery, map[string]any{"ms": 0, "f": map[string]any{"userIds": []string{"nobody" + fmt.Sprint(i), "u1", "u2"}}})
		}
		good := b.acked(t, nil)
		good.subscribe("g", liveQuery, map[string]any{"ms": 0, "f": map[string]any{"userIds": []string{"u1", "u2"}}})
		good.nextOf("g", "next")
		synctest.Wait()
		if time.Now() != start {
			t.Fatalf("setting up took %v of fake time: the slow client's first write did not start at %v", time.Since(start), start)
		}

		// Events while the client does not read: none waits for it (in a
		// bubble, time passes only when every goroutine is blocked, so an
		// Apply that waited would see the clock move).
		clk := &clock{ts: 1}
		for i := range 2000 {
			before := time.Now()
			tr.apply("default", withChat(clk.event(presence.Login, fmt.Sprint("u", 1+i%2)), presence.Available, uint16(i%1000), uint16(i%7)))
			if waited := time.Since(before); waited != 0 {
				t.Fatalf("event %d waited %v for the client that does not read", i, waited)
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the writers run
			}
		}

		// Dropped at exactly SocketWriteTimeout after its write began.
		time.Sleep(start.Add(api.DefaultSocketWriteTimeout - time.Nanosecond).Sub(time.Now()))
		synctest.Wait()
		if n := dropped(); n != 0 {
			t.Fatalf("dropped %v times %v after its write began, before the %v timeout", n, time.Since(start), api.DefaultSocketWriteTimeout)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := dropped(); n != 1 {
			t.Fatalf("dropped %v times at the %v timeout, want once", n, api.DefaultSocketWriteTimeout)
		}

		// The good client still follows, to the final value.
		want := tr.answer("default", &engine.Filter{UserIDs: []string{"u1", "u2"}})
		for v := value(t, good.nextOf("g", "next")); v != want; v = value(t, good.nextOf("g", "next")) {
		}
		// The slow client, once it reads, gets 4429 with the reason.
		slow.startReading()
		code, reason := slow.waitClose()
		if code != api.CloseTooManyRequests || reason != "slow client: a message was not read in 10s" {
			t.Errorf("slow client closed with %d %q, want 4429 and the reason", code, reason)
		}
		if n := dropped(); n != 1 {
			t.Errorf("dropped %v times, want once", n)
		}
	})
}

// TestShutdown closes the sockets with 1001, with Shutdown or with the
// Shutdown of the http.Server of Server.HTTPServer, and refuses new ones.
func TestShutdown(t *testing.T) {
	srv, ts := liveServer(t, api.Config{})
	a, b := acked(t, ts, nil), acked(t, ts, nil)
	a.Subscribe(t.Context(), "1", liveQuery, nil)
	next(t, a, "1", "next")
	silent(t, b, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	closesWith(t, a, api.CloseGoingAway, "shutting down")
	closesWith(t, b, api.CloseGoingAway, "shutting down")
	if _, resp, err := wsclient.Dial(t.Context(), wsclient.URL(ts.URL), nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upgrade after shutdown: %v %v", resp, err)
	}

	t.Run("http.Server.Shutdown", func(t *testing.T) {
		s, err := api.New(api.Config{Engine: newEngine(t), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		hs, url := serveHTTP(t, s.HTTPServer("127.0.0.1:0"))
		c, _, err := wsclient.Dial(t.Context(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.Init(t.Context(), nil, 5*time.Second)
		if err := hs.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		closesWith(t, c, api.CloseGoingAway, "shutting down")
	})
}

// serveHTTP serves hs on a loopback port and returns it and its ws:// URL.
func serveHTTP(tb testing.TB, hs *http.Server) (*http.Server, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go hs.Serve(ln)
	tb.Cleanup(func() { hs.Close() })
	return hs, "ws://" + ln.Addr().String() + "/graphql"
}

// TestSocketOutlivesHTTPTimeouts runs a subscription on an http.Server with
// read and write timeouts far shorter than its life: they must not apply to
// a WebSocket.
func TestSocketOutlivesHTTPTimeouts(t *testing.T) {
	e := newEngine(t)
	s, err := api.New(api.Config{Engine: e, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer("127.0.0.1:0")
	hs.ReadTimeout, hs.WriteTimeout, hs.ReadHeaderTimeout, hs.IdleTimeout = 150*time.Millisecond, 150*time.Millisecond, 150*time.Millisecond, 150*time.Millisecond
	_, url := serveHTTP(t, hs)
	c, _, err := wsclient.Dial(t.Context(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx := t.Context()
	if err := c.Init(ctx, map[string]any{"X-Tenant-Id": "acme"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Subscribe(ctx, "1", liveQuery, map[string]any{"ms": 0})
	first := value(t, next(t, c, "1", "next"))
	clk := &clock{ts: t0.Add(time.Hour).UnixNano()}
	for i := range 4 {
		time.Sleep(250 * time.Millisecond) // past both timeouts, each time
		e.Apply("acme", clk.event(presence.Login, fmt.Sprint("late", i)))
		if v := value(t, next(t, c, "1", "next")); v.ConnectedUsersCount != first.ConnectedUsersCount+int64(i)+1 {
			t.Fatalf("after %d logins: %+v", i+1, v)
		}
		if err := c.Send(ctx, map[string]any{"type": "ping"}); err != nil {
			t.Fatal(err)
		}
		next(t, c, "", "pong")
	}
}

func TestSubscriptionLimits(t *testing.T) {
	tok := api.NewToken()
	_, ts := liveServer(t, api.Config{Tokens: mustTokens(t, "acme "+sha(tok)), SubscriptionsPerSocket: 3, SubscriptionsPerClient: 4})
	auth := map[string]any{"Authorization": "Bearer " + tok}
	ctx := t.Context()
	a := acked(t, ts, auth)
	for i := range 3 {
		a.Subscribe(ctx, fmt.Sprint(i), liveQuery, nil)
		next(t, a, fmt.Sprint(i), "next")
	}
	a.Subscribe(ctx, "3", liveQuery, nil)
	if errs := errorsOf(t, next(t, a, "3", "error")); errs[0].Message != "api: subscriptions: at most 3 open per WebSocket" ||
		errs[0].Extensions["code"] != "LIMIT_EXCEEDED" {
		t.Errorf("%+v", errs)
	}
	// Queries are not subscriptions.
	a.Subscribe(ctx, "q", `{ __typename }`, nil)
	next(t, a, "q", "next")
	next(t, a, "q", "complete")

	b := acked(t, ts, auth)
	b.Subscribe(ctx, "0", liveQuery, nil)
	next(t, b, "0", "next")
	b.Subscribe(ctx, "1", liveQuery, nil)
	if errs := errorsOf(t, next(t, b, "1", "error")); errs[0].Message != "api: subscriptions: at most 4 open per token" {
		t.Errorf("%+v", errs)
	}
	// Completing one frees its slot.
	a.Complete(ctx, "0")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.Subscribe(ctx, "1", liveQuery, nil)
		m, err := b.Next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "next" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot was not freed: %s", m.Payload)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Closing a socket frees all of its slots: b takes one (its third), a
	// new socket the last one of the token.
	a.Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		b.Subscribe(ctx, "2", liveQuery, nil)
		m, _ := b.Next(5 * time.Second)
		if m.Type == "next" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed socket's slots were not freed: %s %s", m.Type, m.Payload)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := acked(t, ts, auth)
	d.Subscribe(ctx, "0", liveQuery, nil)
	next(t, d, "0", "next")
	d.Subscribe(ctx, "1", liveQuery, nil)
	if errs := errorsOf(t, next(t, d, "1", "error")); errs[0].Message != "api: subscriptions: at most 4 open per token" {
		t.Errorf("%+v", errs)
	}
}

// TestSubscriptionRateLimit checks that a subscribe message counts against
// the rate limit as an HTTP request does, and is refused with the same
// exact wait, on the fake clock of a synctest bubble.
func TestSubscriptionRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, api.Config{RateLimit: 0.1, RateBurst: 2})
		c := b.acked(t, nil)
		c.subscribe("1", `{ __typename }`, nil)
		c.nextOf("1", "next")
		c.nextOf("1", "complete")
		c.subscribe("2", liveQuery, nil)
		c.nextOf("2", "next")
		for _, tc := range []struct {
			id    string
			sleep time.Duration
			secs  int
		}{
			{"3", 0, 10},
			{"3b", 999500 * time.Microsecond, 10}, // 9.0005 s, which the socket once rounded to 9
			{"4", 2500500 * time.Microsecond, 7},  // 6.5 s
			{"5", 5750 * time.Millisecond, 1},     // 0.75 s
		} {
			time.Sleep(tc.sleep)
			c.subscribe(tc.id, liveQuery, nil)
			errs := errorsOf(t, c.nextOf(tc.id, "error"))
			msg := "api: rate limit exceeded (0.1 requests/s); retry after " + fmt.Sprint(tc.secs) + "s"
			if len(errs) != 1 || errs[0].Message != msg || len(errs[0].Extensions) != 2 ||
				errs[0].Extensions["code"] != "RATE_LIMITED" || errs[0].Extensions["retryAfterSeconds"] != float64(tc.secs) {
				t.Errorf("subscribe %s: %+v, want %q RATE_LIMITED retryAfterSeconds %d", tc.id, errs, msg, tc.secs)
			}
		}
		// One bucket for both transports: HTTP says the same.
		if res := b.post(t, indicatorQuery); res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "1" {
			t.Errorf("HTTP after the socket's refusals: %d Retry-After %q, want 429 and 1", res.status, res.header.Get("Retry-After"))
		}
		time.Sleep(750 * time.Millisecond)
		c.subscribe("6", `{ __typename }`, nil)
		c.nextOf("6", "next")
		c.nextOf("6", "complete")
	})
}

// TestLiveMetrics checks the subscription metrics and lints them.
func TestLiveMetrics(t *testing.T) {
	e := newEngine(t)
	reg := prometheus.NewRegistry()
	_, ts := liveServer(t, api.Config{Engine: e, Registry: reg})
	ctx := t.Context()
	c := acked(t, ts, map[string]any{"X-Tenant-Id": "acme"})
	for i := range 3 {
		c.Subscribe(ctx, fmt.Sprint(i), liveQuery, map[string]any{"ms": 0})
		next(t, c, fmt.Sprint(i), "next")
	}
	c.Subscribe(ctx, "q", `{ __typename }`, nil)
	next(t, c, "q", "next")
	next(t, c, "q", "complete")
	e.Apply("acme", (&clock{ts: t0.Add(time.Hour).UnixNano()}).event(presence.Login, "m1"))
	for range 3 {
		anyNext(t, c)
	}
	bad := dial(t, ts, nil)
	bad.SendRaw(ctx, "nope")
	bad.WaitClose(5 * time.Second)
	waitMetric := func(line string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for out := scrape(t, ts.URL); !strings.Contains(out, line); out = scrape(t, ts.URL) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in\n%s", line, grep(out, "presence_subscription|presence_websocket"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, line := range []string{
		"presence_subscriptions_open 3\n",
		"presence_subscription_messages_total 6\n",
		"presence_websocket_connections 1\n",
		`presence_subscription_clients_dropped_total{reason="protocol"} 1` + "\n",
		`presence_subscription_clients_dropped_total{reason="slow"} 0` + "\n",
	} {
		waitMetric(line)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	c.Close()
	waitMetric("presence_subscriptions_open 0\n")
	waitMetric("presence_websocket_connections 0\n")
}

// TestSubscriptionExpiry: a change caused by session expiry alone is pushed
// like any other (contract 6.2).
func TestSubscriptionExpiry(t *testing.T) {
	now := t0
	e, err := engine.New(engine.Config{SessionTTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range []string{"a", "b"} {
		e.Apply("acme", &presence.Event{Type: presence.Login, UserID: u, TS: t0.Add(time.Duration(i) * time.Minute).UnixNano(), Fields: presence.HasTS})
	}
	_, ts := liveServer(t, api.Config{Engine: e})
	c := acked(t, ts, map[string]any{"X-Tenant-Id": "acme"})
	c.Subscribe(t.Context(), "1", liveQuery, map[string]any{"ms": 0})
	if v := value(t, next(t, c, "1", "next")); v.ConnectedUsersCount != 2 {
		t.Fatalf("%+v", v)
	}
	if n := e.Expire(t0.Add(90 * time.Second)); n != 1 {
		t.Fatalf("%d sessions expired", n)
	}
	if v := value(t, next(t, c, "1", "next")); v.ConnectedUsersCount != 1 {
		t.Fatalf("after expiry: %+v", v)
	}
}
