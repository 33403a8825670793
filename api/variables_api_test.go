package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/wsclient"
)

// observedServer is liveServer with the throttle interval of each
// subscription the resolver starts sent on the returned channel.
func observedServer(tb testing.TB) (*httptest.Server, <-chan time.Duration) {
	tb.Helper()
	intervals := make(chan time.Duration, 16)
	s, err := api.NewObserved(testConfig(tb, api.Config{}),
		func(d time.Duration) { intervals <- d })
	if err != nil {
		tb.Fatal(err)
	}
	return serveTest(tb, s), intervals
}

// The filters of the report: a default that keeps only the bots, of which
// acme has none, where it has five users connected.
const (
	botsDefault = `{roles: [BOT]}`
	countOnly   = `{ connectedUsersCount }`
)

// TestVariableCoercion runs each case over POST /graphql (queries) and over
// the socket (queries and subscriptions), with the variables not sent, sent
// as null or sent with a value, and checks what the resolver got: the
// filters through the count, the throttle interval through NewObserved.
func TestVariableCoercion(t *testing.T) {
	ts, intervals := observedServer(t)
	all := oracle("acme", filters{}).ConnectedUsersCount
	bots := oracle("acme", filters{Roles: []string{"BOT"}}).ConnectedUsersCount
	operators := oracle("acme", filters{Roles: []string{"OPERATOR"}}).ConnectedUsersCount
	if all == bots || all == operators {
		t.Fatal("the fixture cannot tell the filters apart")
	}
	const sub = `subscription S($m: Int = 100, $f: ConnectedUsersIndicatorFilters = ` + botsDefault + `) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $m) ` + countOnly + `
}`
	const subNoDefaults = `subscription S($m: Int, $f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $m) ` + countOnly + `
}`
	const qry = `query Q($f: ConnectedUsersIndicatorFilters = {roles: [OPERATOR]}) {
  connectedUsersIndicatorUpdated: connectedUsersIndicator(filters: $f) ` + countOnly + `
}`
	const both = qry + "\n" + sub
	cases := []struct {
		name     string
		query    string
		op       string
		vars     map[string]any
		count    int
		interval time.Duration // of a subscription; 0 for a query
	}{
		{"subscription, defaults not sent", sub, "", nil, bots, 100 * time.Millisecond},
		{"subscription, defaults, empty variables", sub, "", map[string]any{}, bots, 100 * time.Millisecond},
		{"subscription, defaults, explicit nulls", sub, "", map[string]any{"m": nil, "f": nil}, all, time.Second},
		{"subscription, defaults, sent", sub, "", map[string]any{"m": 0, "f": map[string]any{"roles": []string{"OPERATOR"}}}, operators, 0},
		{"subscription, no defaults, not sent: the schema's", subNoDefaults, "", nil, all, time.Second},
		{"subscription, no defaults, explicit nulls", subNoDefaults, "", map[string]any{"m": nil, "f": nil}, all, time.Second},
		{"subscription, no defaults, sent", subNoDefaults, "", map[string]any{"m": 250, "f": map[string]any{"roles": []string{"BOT"}}}, bots, 250 * time.Millisecond},
		{"query, default not sent", qry, "", nil, operators, 0},
		{"query, default, explicit null", qry, "", map[string]any{"f": nil}, all, 0},
		{"operationName chooses the subscription", both, "S", nil, bots, 100 * time.Millisecond},
		{"operationName chooses the query", both, "Q", nil, operators, 0},
	}
	c := acked(t, ts, map[string]any{"X-Tenant-Id": "acme"})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			isQuery := strings.HasPrefix(tc.query, "query") && tc.op != "S"
			if isQuery {
				res := postOp(t, ts.URL, tc.query, tc.op, tc.vars, "X-Tenant-Id: acme")
				var body struct {
					Data struct {
						ConnectedUsersIndicatorUpdated *struct{ ConnectedUsersCount int }
					}
				}
				if err := json.Unmarshal([]byte(res.raw), &body); err != nil || len(res.Errors) > 0 || body.Data.ConnectedUsersIndicatorUpdated == nil {
					t.Fatalf("over HTTP: %v %s", err, res.raw)
				}
				if got := body.Data.ConnectedUsersIndicatorUpdated.ConnectedUsersCount; got != tc.count {
					t.Errorf("over HTTP: connectedUsersCount %d, want %d", got, tc.count)
				}
			}
			id := string(rune('a' + i))
			subscribeOp(t, c, id, tc.query, tc.op, tc.vars)
			m := next(t, c, id, "next")
			if got := countOf(t, m); got != tc.count {
				t.Errorf("over the socket: connectedUsersCount %d, want %d", got, tc.count)
			}
			if isQuery {
				next(t, c, id, "complete")
				return
			}
			select {
			case got := <-intervals:
				if got != tc.interval {
					t.Errorf("throttle interval %v, want %v", got, tc.interval)
				}
			default: // the resolver reports before its first value
				t.Fatal("the resolver reported no interval")
			}
			c.Complete(t.Context(), id)
		})
	}
	select {
	case d := <-intervals:
		t.Errorf("an interval nobody expected: %v", d)
	default:
	}
}

// TestVariableErrors checks the errors of bad variables over the socket and,
// where a subscription is not refused first, over HTTP: they name the
// variable (or the argument) and the rule.
func TestVariableErrors(t *testing.T) {
	ts, _ := observedServer(t)
	c := acked(t, ts, nil)
	const live = `connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $m) ` + countOnly
	cases := []struct {
		name, query, op string
		vars            map[string]any
		want            []string // in the message
		code            string   // extensions.code, when the API sets one
		overHTTP        bool     // graphql-go answers before refusing a subscription
	}{
		{"negative default reaches the resolver",
			`subscription($m: Int = -5, $f: ConnectedUsersIndicatorFilters) { ` + live + ` }`, "", nil,
			[]string{"minIntervalMs", "must not be negative", "-5"}, "BAD_USER_INPUT", false},
		{"required variable not sent",
			`subscription($m: Int!, $f: ConnectedUsersIndicatorFilters) { ` + live + ` }`, "", nil,
			[]string{`Variable "m"`, `Expected type "Int!", found null`}, "", true},
		{"bad enum in a variable",
			`subscription($m: Int, $f: ConnectedUsersIndicatorFilters) { ` + live + ` }`, "",
			map[string]any{"f": map[string]any{"roles": []string{"ROBOT"}}},
			// graphql-go names the input field that holds the value.
			[]string{`Variable "roles" has invalid value ROBOT`, `Expected type "UserRole"`}, "", true},
		{"invalid default",
			`subscription($m: Int, $f: ConnectedUsersIndicatorFilters = {roles: [ROBOT]}) { ` + live + ` }`, "", nil,
			[]string{`ROBOT`, `UserRole`}, "", true},
		{"several operations, none named",
			`query Q { __typename } subscription S($m: Int = 1, $f: ConnectedUsersIndicatorFilters) { ` + live + ` }`, "", nil,
			[]string{"more than one operation", "no operation name given"}, "", true},
		{"unknown operation name",
			`query Q($f: ConnectedUsersIndicatorFilters = {}) { connectedUsersIndicator(filters: $f) ` + countOnly + ` }`, "Nope", nil,
			[]string{`no operation with name "Nope"`}, "", true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(where, msg string, ext map[string]any) {
				t.Helper()
				for _, w := range tc.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%s: %q, want %q in it", where, msg, w)
					}
				}
				if tc.code != "" && ext["code"] != tc.code {
					t.Errorf("%s: extensions %v, want code %s", where, ext, tc.code)
				}
			}
			id := string(rune('a' + i))
			subscribeOp(t, c, id, tc.query, tc.op, tc.vars)
			errs := errorsOf(t, next(t, c, id, "error"))
			check("over the socket", errs[0].Message, errs[0].Extensions)
			if len(errs) != 1 {
				t.Errorf("over the socket: %d errors, want one: %+v", len(errs), errs)
			}
			if tc.overHTTP {
				res := postOp(t, ts.URL, tc.query, tc.op, tc.vars)
				if len(res.Errors) == 0 {
					t.Fatalf("over HTTP: %s", res.raw)
				}
				check("over HTTP", res.Errors[0].Message, res.Errors[0].Extensions)
			}
		})
	}
}

// postOp posts query with operationName and variables (nil: none sent).
func postOp(tb testing.TB, url, q, op string, vars map[string]any, headers ...string) *gqlResponse {
	tb.Helper()
	body := map[string]any{"query": q}
	if op != "" {
		body["operationName"] = op
	}
	if vars != nil {
		body["variables"] = vars
	}
	b, err := json.Marshal(body)
	if err != nil {
		tb.Fatal(err)
	}
	return post(tb, url, b, headers...)
}

// subscribeOp sends a subscribe message with operationName and variables
// (nil: none sent).
func subscribeOp(tb testing.TB, c *wsclient.Conn, id, q, op string, vars map[string]any) {
	tb.Helper()
	p := map[string]any{"query": q}
	if op != "" {
		p["operationName"] = op
	}
	if vars != nil {
		p["variables"] = vars
	}
	if err := c.Send(tb.Context(), map[string]any{"id": id, "type": "subscribe", "payload": p}); err != nil {
		tb.Fatal(err)
	}
}

// countOf decodes the count of a next message whose only field (or alias)
// is connectedUsersIndicatorUpdated { connectedUsersCount }.
func countOf(tb testing.TB, m wsclient.Message) int {
	tb.Helper()
	var p struct {
		Data struct {
			ConnectedUsersIndicatorUpdated *struct{ ConnectedUsersCount int }
		}
		Errors []any
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil || len(p.Errors) > 0 || p.Data.ConnectedUsersIndicatorUpdated == nil {
		tb.Fatalf("next payload %s: %v", m.Payload, err)
	}
	return p.Data.ConnectedUsersIndicatorUpdated.ConnectedUsersCount
}
