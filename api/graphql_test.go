package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	brute "github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/presence"
)

// fixtureUser is one user of the fixture as the test knows it, independent
// of the engine: the oracle below counts these, the engine gets them as
// events.
type fixtureUser struct {
	tenant, id                string
	connected                 bool
	role                      presence.Role // NoRole: no profile role
	groups, projects, routing []string
	avail, chat               presence.Status
	maxSlots, curSlots        uint16
}

var fixture = []fixtureUser{
	{"acme", "u1", true, presence.Operator, []string{"g1", "g2"}, []string{"p1"}, []string{"r1"}, presence.Available, presence.Available, 4, 2},
	{"acme", "u2", true, presence.Manager, []string{"g2"}, []string{"p2"}, []string{"r1", "r2"}, presence.Busy, presence.Busy, 2, 3},
	{"acme", "u3", true, presence.Operator, []string{"g3"}, nil, []string{"r2"}, presence.ToggleOff, presence.ToggleOff, 5, 0},
	{"acme", "u4", true, presence.NoRole, []string{"g1"}, []string{"p1", "p2"}, nil, presence.Available, presence.Available, 0, 0},
	{"acme", "u5", true, presence.Expert, []string{"g4"}, []string{"p3"}, []string{"r3"}, presence.Busy, presence.Available, 3, 1},
	{"acme", "u6", false, presence.Operator, []string{"g1"}, []string{"p1"}, []string{"r1"}, presence.Available, presence.Available, 10, 10},
	{"globex", "v1", true, presence.Operator, []string{"g1"}, []string{"p1"}, []string{"r1"}, presence.Available, presence.Busy, 7, 7},
	{"default", "d1", true, presence.Bot, nil, nil, nil, presence.Available, presence.Available, 1, 1},
	{"default", "d2", true, presence.Bot, nil, nil, nil, presence.Busy, presence.ToggleOff, 1, 0},
}

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// newEngine returns an engine holding the fixture, applied as a login with the
// whole profile, then a logout for the disconnected users.
func newEngine(tb testing.TB) *engine.Engine {
	tb.Helper()
	e, _ := newTruth(tb)
	return e
}

// fixtureEvents are the events that make the fixture: each user's login
// with its whole profile, and a logout for those not connected.
func fixtureEvents() []brute.Delivered {
	var out []brute.Delivered
	for _, u := range fixture {
		ev := presence.Event{
			Type: presence.Login, UserID: u.id, TS: t0.UnixNano(),
			Fields: presence.HasTS | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups |
				presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots,
			GroupIDs: u.groups, ProjectIDs: u.projects, RoutingGroupIDs: u.routing,
			Availability: u.avail, Chat: u.chat, MaxSlots: u.maxSlots, CurrentSlots: u.curSlots,
		}
		if u.role != presence.NoRole {
			ev.Fields |= presence.HasRole
			ev.Role = u.role
		}
		out = append(out, brute.Delivered{Tenant: u.tenant, Ev: ev})
		if !u.connected {
			out = append(out, brute.Delivered{Tenant: u.tenant,
				Ev: presence.Event{Type: presence.Logout, UserID: u.id, TS: t0.Add(time.Second).UnixNano(), Fields: presence.HasTS}})
		}
	}
	return out
}

// truth keeps the events a test applies to its engine, for the oracle to
// say what the API must answer.
type truth struct {
	e      *engine.Engine
	mu     sync.Mutex
	events []brute.Delivered
}

// newTruth returns an engine holding the fixture and its truth.
func newTruth(tb testing.TB) (*engine.Engine, *truth) {
	tb.Helper()
	e, err := engine.New(engine.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tr := &truth{e: e}
	for _, d := range fixtureEvents() {
		tr.apply(d.Tenant, &d.Ev)
	}
	return e, tr
}

// apply applies ev to the engine and keeps it.
func (tr *truth) apply(tenant string, ev *presence.Event) {
	tr.mu.Lock()
	tr.events = append(tr.events, brute.Delivered{Tenant: tenant, Ev: *ev})
	tr.mu.Unlock()
	tr.e.Apply(tenant, ev)
}

// answer is the oracle's answer for f over tenant's events so far.
func (tr *truth) answer(tenant string, f *engine.Filter) brute.Indicator {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return brute.Answer(brute.State(tr.events)[tenant], f)
}

// filters is the test's side of ConnectedUsersIndicatorFilters: a nil slice
// is null, an empty one is [].
type filters struct {
	AvailabilityStatus []string `json:"availabilityStatus"`
	ChatAvailability   []string `json:"chatAvailability"`
	GroupIDs           []string `json:"groupIds"`
	ProjectIDs         []string `json:"projectIds"`
	Roles              []string `json:"roles"`
	RoutingGroupIDs    []string `json:"routingGroupIds"`
	UserIDs            []string `json:"userIds"`
}

// indicator is the JSON answer. The two objects are pointers so that a null
// would show.
type indicator struct {
	ConnectedUsersCount            int
	CountByChatAvailabilityStatus  *struct{ Available, Busy, ToggleOff int }
	UsersInProductionChatOccupancy *struct {
		MaximumSimultaneousConversationAverage float64
		SimultaneousConversationAverage        float64
		OccupancyRate                          float64
	}
}

// oracle computes the indicator by brute force from the fixture and the
// contract's words (3.1, 3.2).
func oracle(tenant string, f filters) indicator {
	anyOf := func(filter []string, has ...string) bool {
		if filter == nil {
			return true
		}
		for _, h := range has {
			if slices.Contains(filter, h) {
				return true
			}
		}
		return false
	}
	var ind indicator
	ind.CountByChatAvailabilityStatus = &struct{ Available, Busy, ToggleOff int }{}
	var n, maxSum, curSum int
	for _, u := range fixture {
		role := []string{strings.ToUpper(u.role.String())}
		if u.role == presence.NoRole {
			role = nil
		}
		if u.tenant != tenant || !u.connected ||
			!anyOf(f.AvailabilityStatus, u.avail.String()) || !anyOf(f.ChatAvailability, u.chat.String()) ||
			!anyOf(f.GroupIDs, u.groups...) || !anyOf(f.ProjectIDs, u.projects...) ||
			!anyOf(f.RoutingGroupIDs, u.routing...) || !anyOf(f.Roles, role...) || !anyOf(f.UserIDs, u.id) {
			continue
		}
		ind.ConnectedUsersCount++
		switch u.chat {
		case presence.Available:
			ind.CountByChatAvailabilityStatus.Available++
		case presence.Busy:
			ind.CountByChatAvailabilityStatus.Busy++
		default:
			ind.CountByChatAvailabilityStatus.ToggleOff++
		}
		if u.chat == presence.Available || u.chat == presence.Busy {
			n++
			maxSum += int(u.maxSlots)
			curSum += int(u.curSlots)
		}
	}
	div := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	ind.UsersInProductionChatOccupancy = &struct {
		MaximumSimultaneousConversationAverage float64
		SimultaneousConversationAverage        float64
		OccupancyRate                          float64
	}{div(maxSum, n), div(curSum, n), div(100*curSum, maxSum)} // contract 3.2, in its order
	return ind
}

const indicatorQuery = `query Indicator($f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy {
      maximumSimultaneousConversationAverage
      simultaneousConversationAverage
      occupancyRate
    }
  }
}`

// gqlResponse is a GraphQL over HTTP answer.
type gqlResponse struct {
	Data *struct {
		ConnectedUsersIndicator *indicator
	}
	Errors []struct {
		Message    string
		Extensions map[string]any
	}
	raw    string
	status int
	header http.Header
}

func (r *gqlResponse) errorText() string {
	var msgs []string
	for _, e := range r.Errors {
		msgs = append(msgs, e.Message)
	}
	return strings.Join(msgs, "; ")
}

// post sends body to POST /graphql with the given headers ("Key: value").
func post(tb testing.TB, url string, body []byte, headers ...string) *gqlResponse {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	out := &gqlResponse{raw: string(raw), status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(raw, out); err != nil {
		tb.Fatalf("answer %d is not JSON: %v: %.200s", res.StatusCode, err, raw)
	}
	return out
}

// query posts query with variables and operationName.
func query(tb testing.TB, url, q string, vars map[string]any, headers ...string) *gqlResponse {
	tb.Helper()
	body, err := json.Marshal(map[string]any{"query": q, "variables": vars})
	if err != nil {
		tb.Fatal(err)
	}
	return post(tb, url, body, headers...)
}

// indicatorOf runs connectedUsersIndicator and fails on any error.
func indicatorOf(tb testing.TB, url string, f *filters, headers ...string) indicator {
	tb.Helper()
	vars := map[string]any{}
	if f != nil {
		vars["f"] = f
	}
	res := query(tb, url, indicatorQuery, vars, headers...)
	if res.status != http.StatusOK || len(res.Errors) > 0 || res.Data == nil || res.Data.ConnectedUsersIndicator == nil {
		tb.Fatalf("status %d, errors %q: %.300s", res.status, res.errorText(), res.raw)
	}
	return *res.Data.ConnectedUsersIndicator
}

func newServer(tb testing.TB, cfg api.Config) *httptest.Server {
	tb.Helper()
	if cfg.Engine == nil {
		cfg.Engine = newEngine(tb)
	}
	s, err := api.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	tb.Cleanup(ts.Close)
	return ts
}

func sameIndicator(got, want indicator) bool {
	if got.CountByChatAvailabilityStatus == nil || got.UsersInProductionChatOccupancy == nil {
		return false
	}
	return got.ConnectedUsersCount == want.ConnectedUsersCount &&
		*got.CountByChatAvailabilityStatus == *want.CountByChatAvailabilityStatus &&
		*got.UsersInProductionChatOccupancy == *want.UsersInProductionChatOccupancy
}

func show(i indicator) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestFilters runs every filter field, alone and combined, null and [],
// through GraphQL and compares with the oracle.
func TestFilters(t *testing.T) {
	ts := newServer(t, api.Config{})
	none := []string{}
	cases := []struct {
		name string
		f    *filters
	}{
		{"no filters", nil},
		{"all null", &filters{}},
		{"availabilityStatus", &filters{AvailabilityStatus: []string{"AVAILABLE"}}},
		{"availabilityStatus or", &filters{AvailabilityStatus: []string{"BUSY", "TOGGLE_OFF"}}},
		{"availabilityStatus empty", &filters{AvailabilityStatus: none}},
		{"chatAvailability", &filters{ChatAvailability: []string{"BUSY"}}},
		{"chatAvailability in production", &filters{ChatAvailability: []string{"AVAILABLE", "BUSY"}}},
		{"chatAvailability empty", &filters{ChatAvailability: none}},
		{"groupIds", &filters{GroupIDs: []string{"g2"}}},
		{"groupIds or", &filters{GroupIDs: []string{"g1", "g3", "nope"}}},
		{"groupIds empty", &filters{GroupIDs: none}},
		{"projectIds", &filters{ProjectIDs: []string{"p1"}}},
		{"projectIds or", &filters{ProjectIDs: []string{"p2", "p3"}}},
		{"projectIds empty", &filters{ProjectIDs: none}},
		{"roles", &filters{Roles: []string{"OPERATOR"}}},
		{"roles or", &filters{Roles: []string{"MANAGER", "EXPERT", "ADMIN", "BOT"}}},
		{"roles empty", &filters{Roles: none}},
		{"routingGroupIds", &filters{RoutingGroupIDs: []string{"r2"}}},
		{"routingGroupIds or", &filters{RoutingGroupIDs: []string{"r1", "r3"}}},
		{"routingGroupIds empty", &filters{RoutingGroupIDs: none}},
		{"userIds", &filters{UserIDs: []string{"u1", "u3"}}},
		{"userIds disconnected and unknown", &filters{UserIDs: []string{"u6", "zz", "v1"}}},
		{"userIds empty", &filters{UserIDs: none}},
		{"and", &filters{GroupIDs: []string{"g1", "g2"}, ChatAvailability: []string{"AVAILABLE"}}},
		{"and all", &filters{
			AvailabilityStatus: []string{"AVAILABLE", "BUSY"}, ChatAvailability: []string{"AVAILABLE", "BUSY"},
			GroupIDs: []string{"g1", "g2", "g4"}, ProjectIDs: []string{"p1", "p2", "p3"},
			Roles: []string{"OPERATOR", "MANAGER", "EXPERT"}, RoutingGroupIDs: []string{"r1", "r3"},
			UserIDs: []string{"u1", "u2", "u5", "u6"},
		}},
		{"and one empty", &filters{GroupIDs: []string{"g1"}, RoutingGroupIDs: none}},
		{"duplicates", &filters{GroupIDs: []string{"g2", "g2"}, Roles: []string{"OPERATOR", "OPERATOR"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f filters
			if c.f != nil {
				f = *c.f
			}
			want := oracle("acme", f)
			got := indicatorOf(t, ts.URL, c.f, "X-Tenant-Id: acme")
			if !sameIndicator(got, want) {
				t.Errorf("got  %s\nwant %s", show(got), show(want))
			}
		})
	}
}

// TestIndicatorNumbers pins a few values by hand, so that the oracle is
// checked too: acme has u1, u2, u4, u5 in production (u3 chat TOGGLE_OFF, u6
// disconnected).
func TestIndicatorNumbers(t *testing.T) {
	ts := newServer(t, api.Config{})
	got := indicatorOf(t, ts.URL, nil, "X-Tenant-Id: acme")
	if got.ConnectedUsersCount != 5 {
		t.Errorf("connectedUsersCount = %d, want 5", got.ConnectedUsersCount)
	}
	if c := *got.CountByChatAvailabilityStatus; c.Available != 3 || c.Busy != 1 || c.ToggleOff != 1 {
		t.Errorf("countByChatAvailabilityStatus = %+v, want 3 1 1", c)
	}
	o := *got.UsersInProductionChatOccupancy
	if o.MaximumSimultaneousConversationAverage != 2.25 || o.SimultaneousConversationAverage != 1.5 ||
		math.Abs(o.OccupancyRate-200.0/3) > 1e-9 {
		t.Errorf("occupancy = %+v, want 2.25 1.5 66.66…", o)
	}

	// Nothing matches: both objects are still there, with zeros.
	empty := indicatorOf(t, ts.URL, &filters{UserIDs: []string{}}, "X-Tenant-Id: acme")
	if empty.ConnectedUsersCount != 0 || *empty.CountByChatAvailabilityStatus != (struct{ Available, Busy, ToggleOff int }{}) ||
		empty.UsersInProductionChatOccupancy.OccupancyRate != 0 || empty.UsersInProductionChatOccupancy.MaximumSimultaneousConversationAverage != 0 {
		t.Errorf("empty filter: %s", show(empty))
	}
}

// TestNullVersusEmpty writes the filters in the query text, where null, an
// absent field and [] are spelled out.
func TestNullVersusEmpty(t *testing.T) {
	ts := newServer(t, api.Config{})
	all := oracle("acme", filters{}).ConnectedUsersCount
	cases := []struct {
		args string
		want int
	}{
		{``, all},
		{`(filters: null)`, all},
		{`(filters: {})`, all},
		{`(filters: {groupIds: null})`, all},
		{`(filters: {groupIds: null, roles: null, userIds: null})`, all},
		{`(filters: {groupIds: []})`, 0},
		{`(filters: {roles: []})`, 0},
		{`(filters: {availabilityStatus: []})`, 0},
		{`(filters: {userIds: []})`, 0},
		{`(filters: {roles: [OPERATOR], groupIds: null})`, 2},
		{`(filters: {userIds: "u1"})`, 1}, // input coercion: a single value is a list of one
	}
	for _, c := range cases {
		t.Run(c.args, func(t *testing.T) {
			res := query(t, ts.URL, `{ connectedUsersIndicator`+c.args+` { connectedUsersCount } }`, nil, "X-Tenant-Id: acme")
			if len(res.Errors) > 0 || res.Data == nil {
				t.Fatalf("errors: %s", res.errorText())
			}
			if got := res.Data.ConnectedUsersIndicator.ConnectedUsersCount; got != c.want {
				t.Errorf("connectedUsersCount = %d, want %d", got, c.want)
			}
		})
	}
	// Through variables: an absent variable and a null one put no constraint.
	for _, vars := range []map[string]any{nil, {"f": nil}, {"f": map[string]any{"groupIds": nil}}} {
		res := query(t, ts.URL, indicatorQuery, vars, "X-Tenant-Id: acme")
		if len(res.Errors) > 0 || res.Data.ConnectedUsersIndicator.ConnectedUsersCount != all {
			t.Errorf("variables %v: %s", vars, res.raw)
		}
	}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%d", i)
	}
	return out
}

func TestListLimits(t *testing.T) {
	ts := newServer(t, api.Config{})
	for _, field := range []string{"userIds", "groupIds", "projectIds", "routingGroupIds"} {
		t.Run(field, func(t *testing.T) {
			// At the limit: answered.
			res := query(t, ts.URL, indicatorQuery, map[string]any{"f": map[string]any{field: ids(api.MaxListLen)}}, "X-Tenant-Id: acme")
			if len(res.Errors) > 0 {
				t.Fatalf("%d ids: %s", api.MaxListLen, res.errorText())
			}
			// One more: a clear error naming the argument and the limit.
			res = query(t, ts.URL, indicatorQuery, map[string]any{"f": map[string]any{field: ids(api.MaxListLen + 1)}}, "X-Tenant-Id: acme")
			if res.status != http.StatusOK || len(res.Errors) != 1 {
				t.Fatalf("status %d, errors %q", res.status, res.errorText())
			}
			msg := res.Errors[0].Message
			if !strings.Contains(msg, "filters."+field) || !strings.Contains(msg, "at most 10000") {
				t.Errorf("message %q does not name filters.%s and the limit", msg, field)
			}
			if res.Errors[0].Extensions["code"] != "LIMIT_EXCEEDED" {
				t.Errorf("extensions = %v", res.Errors[0].Extensions)
			}
			if res.Data != nil && res.Data.ConnectedUsersIndicator != nil {
				t.Error("data returned past the limit")
			}
		})
	}
	t.Run("enum lists", func(t *testing.T) {
		roles := make([]string, api.MaxListLen+1)
		for i := range roles {
			roles[i] = "BOT"
		}
		res := query(t, ts.URL, indicatorQuery, map[string]any{"f": map[string]any{"roles": roles}}, "X-Tenant-Id: acme")
		if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, "filters.roles") {
			t.Errorf("errors %q", res.errorText())
		}
	})
	t.Run("userIds in the query text", func(t *testing.T) {
		q := func(n int) string {
			b, _ := json.Marshal(ids(n))
			return `{ connectedUsersIndicator(filters: {userIds: ` + string(b) + `}) { connectedUsersCount } }`
		}
		if res := query(t, ts.URL, q(api.MaxListLen), nil, "X-Tenant-Id: acme"); len(res.Errors) > 0 {
			t.Fatalf("%d ids inline: %s", api.MaxListLen, res.errorText())
		}
		res := query(t, ts.URL, q(api.MaxListLen+1), nil, "X-Tenant-Id: acme")
		if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, "filters.userIds: at most 10000") {
			t.Errorf("errors %q", res.errorText())
		}
	})
}

func TestQueryLimits(t *testing.T) {
	ts := newServer(t, api.Config{})
	t.Run("depth", func(t *testing.T) {
		q := "{ __schema { types { fields { type " + strings.Repeat("{ ofType ", 20) + "{ name }" + strings.Repeat(" }", 20) + " } } } }"
		res := query(t, ts.URL, q, nil)
		if len(res.Errors) == 0 || !strings.Contains(res.errorText(), "exceeds max depth 20") {
			t.Errorf("errors %q", res.errorText())
		}
	})
	t.Run("length", func(t *testing.T) {
		q := "{ connectedUsersIndicator { connectedUsersCount } }" + strings.Repeat(" ", api.MaxQueryLength)
		res := query(t, ts.URL, q, nil)
		if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, "query: at most 524288 bytes") {
			t.Errorf("errors %q", res.errorText())
		}
	})
	t.Run("selections", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("{")
		for i := range api.MaxSelections {
			fmt.Fprintf(&b, " a%d: connectedUsersIndicator { connectedUsersCount }", i)
		}
		b.WriteString(" }")
		res := query(t, ts.URL, b.String(), nil)
		if len(res.Errors) == 0 || !strings.Contains(res.errorText(), "too many selections") {
			t.Errorf("errors %.300q", res.errorText())
		}
	})
	t.Run("overlapping fields", func(t *testing.T) {
		q := "{" + strings.Repeat(" a: __typename", 35000) + " }" // 490 kB, 6e8 pairs
		start := time.Now()
		res := query(t, ts.URL, q, nil)
		if len(res.Errors) == 0 || !strings.Contains(res.errorText(), "Overlapping field validation aborted") {
			t.Errorf("errors %.300q", res.errorText())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("introspection of GraphiQL", func(t *testing.T) {
		res := query(t, ts.URL, introspectionQuery, nil)
		if res.status != http.StatusOK || len(res.Errors) > 0 || !strings.Contains(res.raw, `"connectedUsersIndicator"`) {
			t.Errorf("status %d, errors %q", res.status, res.errorText())
		}
	})
}

func TestBody(t *testing.T) {
	ts := newServer(t, api.Config{})
	big := []byte(`{"query": "{ connectedUsersIndicator { connectedUsersCount } }", "pad": "` + strings.Repeat("x", api.MaxBodyBytes) + `"}`)
	cases := []struct {
		name   string
		body   io.Reader
		status int
		msg    string
	}{
		{"too large", bytes.NewReader(big), 413, "request body: at most 1048576 bytes (1 MiB)"},
		{"too large, unknown length", io.MultiReader(bytes.NewReader(big)), 413, "at most 1048576 bytes"},
		{"not JSON", strings.NewReader(`query { x }`), 400, "want one JSON object"},
		{"truncated", strings.NewReader(`{"query": "{ connectedUsersIndicator`), 400, "want one JSON object"},
		{"two values", strings.NewReader(`{"query": "{ __typename }"} {}`), 400, "more than one JSON value"},
		{"query not a string", strings.NewReader(`{"query": 3}`), 400, "want one JSON object"},
		{"no query", strings.NewReader(`{"variables": {}}`), 400, "query is required"},
		{"empty body", strings.NewReader(``), 400, "want one JSON object"},
		{"just fits", strings.NewReader(`{"query": "{ __typename }", "pad": "` + strings.Repeat("x", api.MaxBodyBytes-50) + `"}`), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := http.Post(ts.URL+"/graphql", "application/json", c.body)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var out struct{ Errors []struct{ Message string } }
			raw, _ := io.ReadAll(res.Body)
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatalf("not JSON: %.200s", raw)
			}
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.300s", res.StatusCode, c.status, raw)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if c.msg != "" && (len(out.Errors) != 1 || !strings.Contains(out.Errors[0].Message, c.msg)) {
				t.Errorf("errors %+v, want one containing %q", out.Errors, c.msg)
			}
		})
	}
}

// TestGraphQLOverHTTP checks the media types and status codes of the
// GraphQL over HTTP convention.
func TestGraphQLOverHTTP(t *testing.T) {
	ts := newServer(t, api.Config{})
	body := func(q string) []byte { b, _ := json.Marshal(map[string]string{"query": q}); return b }

	res := post(t, ts.URL, body(`{ nope }`))
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") || len(res.Errors) == 0 {
		t.Errorf("application/json, invalid query: %d %q %s", res.status, res.header.Get("Content-Type"), res.raw)
	}
	res = post(t, ts.URL, body(`{ nope }`), "Accept: application/graphql-response+json, application/json;q=0.9")
	if res.status != 400 || !strings.HasPrefix(res.header.Get("Content-Type"), "application/graphql-response+json") {
		t.Errorf("graphql-response+json, invalid query: %d %q", res.status, res.header.Get("Content-Type"))
	}
	res = post(t, ts.URL, body(`{ connectedUsersIndicator { connectedUsersCount } }`), "Accept: application/graphql-response+json")
	if res.status != 200 || len(res.Errors) > 0 {
		t.Errorf("graphql-response+json, valid query: %d %s", res.status, res.raw)
	}
	res = post(t, ts.URL, []byte(`{"query": "query A { __typename } query B { connectedUsersIndicator { connectedUsersCount } }", "operationName": "B"}`))
	if len(res.Errors) > 0 || res.Data.ConnectedUsersIndicator == nil {
		t.Errorf("operationName: %s", res.raw)
	}
	if r, err := http.Get(ts.URL + "/nope"); err != nil || r.StatusCode != 404 {
		t.Errorf("GET /nope: %v %v", r.StatusCode, err)
	}
	req, _ := http.NewRequest(http.MethodPut, ts.URL+"/graphql", nil)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 405 {
		t.Errorf("PUT /graphql: %v %v", r.StatusCode, err)
	}
}

// slowEngine answers after a delay, to run into the query timeout.
type slowEngine struct {
	api.Engine
	delay time.Duration
}

func (s slowEngine) Query(tenant string, f *engine.Filter) engine.Indicator {
	time.Sleep(s.delay)
	return s.Engine.Query(tenant, f)
}

func TestQueryTimeout(t *testing.T) {
	ts := newServer(t, api.Config{Engine: slowEngine{newEngine(t), 50 * time.Millisecond}, QueryTimeout: 10 * time.Millisecond})
	res := query(t, ts.URL, `{ connectedUsersIndicator { connectedUsersCount } }`, nil)
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, "timed out after 10ms") {
		t.Errorf("errors %q", res.errorText())
	}
}

// introspectionQuery is the query GraphiQL 3 sends with its default options
// (graphql-js 16 getIntrospectionQuery), TypeRef nine levels deep.
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives {
      name
      description
      locations
      args { ...InputValue }
    }
  }
}
fragment FullType on __Type {
  kind
  name
  description
  fields(includeDeprecated: true) {
    name
    description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
}
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}`
