package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	brute "github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// userNode is ConnectedUser as JSON; pointers show nulls.
type userNode struct {
	UserID                      string   `json:"userId"`
	Role                        *string  `json:"role"`
	AvailabilityStatus          string   `json:"availabilityStatus"`
	ChatAvailability            string   `json:"chatAvailability"`
	MaxSlots                    int      `json:"maxSlots"`
	CurrentSlots                int      `json:"currentSlots"`
	GroupIDs                    []string `json:"groupIds"`
	ProjectIDs                  []string `json:"projectIds"`
	RoutingGroupIDs             []string `json:"routingGroupIds"`
	ConnectedAt                 string   `json:"connectedAt"`
	AvailabilityStatusUpdatedAt *string  `json:"availabilityStatusUpdatedAt"`
	ChatAvailabilityUpdatedAt   *string  `json:"chatAvailabilityUpdatedAt"`
	LastSeenAt                  string   `json:"lastSeenAt"`
}

type userPage struct {
	TotalCount int
	Edges      []struct {
		Cursor string
		Node   userNode
	}
	PageInfo struct {
		HasNextPage bool
		EndCursor   *string
	}
}

// usersPage asks one page; vars holds the query's variables but $f.
func usersPage(tb testing.TB, url string, f *engine.Filter, vars map[string]any, headers ...string) (userPage, *gqlResponse) {
	tb.Helper()
	if f == nil {
		f = &engine.Filter{}
	}
	all := variablesOf(f)
	for k, v := range vars {
		all[k] = v
	}
	res := query(tb, url, testenv.UsersQuery, all, headers...)
	var body struct {
		Data struct{ ConnectedUsers userPage }
	}
	if len(res.Errors) == 0 {
		if err := json.Unmarshal([]byte(res.raw), &body); err != nil || res.status != 200 {
			tb.Fatalf("%d %v: %.300s", res.status, err, res.raw)
		}
	}
	return body.Data.ConnectedUsers, res
}

// rfc3339 is what the API writes for a time of the oracle.
func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func optional(t engine.Time) *string {
	if !t.Set {
		return nil
	}
	s := rfc3339(t.At)
	return &s
}

// nodeOf is the node the API must answer for the oracle's user.
func nodeOf(u engine.ConnectedUser) userNode {
	n := userNode{
		UserID: u.UserID, AvailabilityStatus: u.Availability.String(), ChatAvailability: u.Chat.String(),
		MaxSlots: u.MaxSlots, CurrentSlots: u.CurSlots,
		GroupIDs: u.GroupIDs, ProjectIDs: u.ProjectIDs, RoutingGroupIDs: u.RoutingGroupIDs,
		ConnectedAt: rfc3339(u.ConnectedAt.At), LastSeenAt: rfc3339(u.LastSeen.At),
		AvailabilityStatusUpdatedAt: optional(u.AvailabilityUpdatedAt), ChatAvailabilityUpdatedAt: optional(u.ChatUpdatedAt),
	}
	if u.Role != presence.NoRole {
		r := u.Role.EnumName()
		n.Role = &r
	}
	return n
}

var orderNames = []string{"USER_ID", "CONNECTED_AT", "CHAT_AVAILABILITY_UPDATED_AT"}

// TestUsersAgainstOracle pages through connectedUsers over HTTP for random
// filters of every class in every order and compares the nodes, in order,
// with the oracle's list, and totalCount with the indicator's count.
func TestUsersAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	const users = 80
	events := brute.EventsFrom(r, []string{"acme", "globex"}, users, 8, 40, 1_700_000_000_000_000_000, 1e6)
	e, _ := engine.New(engine.Config{})
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	truth := brute.State(events)
	ts := newServer(t, api.Config{Engine: e})
	listed := 0
	for i := range 60 {
		tenant := []string{"acme", "globex"}[i%2]
		order := engine.Order(i % 3)
		f := brute.RandomFilter(r, brute.Class(i/3%3), users)
		if i < 6 {
			f = &engine.Filter{}
		}
		want := brute.Users(truth[tenant], f, order)
		first := 1 + r.IntN(15)
		var got []userNode
		vars := map[string]any{"first": first, "order": orderNames[order]}
		for pages := 0; ; pages++ {
			p, res := usersPage(t, ts.URL, f, vars, "X-Tenant-Id: "+tenant)
			if len(res.Errors) > 0 {
				t.Fatalf("page %d: %s", pages, res.raw)
			}
			if p.TotalCount != len(want) || p.TotalCount != int(e.Query(tenant, f).Connected) {
				t.Fatalf("%s %s %+v: totalCount %d, oracle %d", tenant, orderNames[order], *f, p.TotalCount, len(want))
			}
			for _, edge := range p.Edges {
				got = append(got, edge.Node)
			}
			if n := len(p.Edges); n > 0 && (p.PageInfo.EndCursor == nil || *p.PageInfo.EndCursor != p.Edges[n-1].Cursor) {
				t.Fatalf("endCursor %v, last edge's %q", p.PageInfo.EndCursor, p.Edges[n-1].Cursor)
			}
			if !p.PageInfo.HasNextPage {
				break
			}
			vars["after"] = *p.PageInfo.EndCursor
		}
		if len(got) != len(want) {
			t.Fatalf("%s %s %+v: %d users, want %d", tenant, orderNames[order], *f, len(got), len(want))
		}
		for k := range want {
			if w := nodeOf(want[k]); !reflect.DeepEqual(got[k], w) {
				t.Fatalf("%s %s %+v: user %d:\n got %+v\nwant %+v", tenant, orderNames[order], *f, k, got[k], w)
			}
		}
		listed += len(got)
	}
	if listed < 500 {
		t.Errorf("only %d users listed in all: the filters matched too little to prove anything", listed)
	}
}

// TestUsersArguments checks first's range and default, cursors that are not
// the page's, an empty page and tenant isolation.
func TestUsersArguments(t *testing.T) {
	e, _ := engine.New(engine.Config{})
	for i := range 150 {
		e.Apply("big", &presence.Event{Type: presence.Login, UserID: fmt.Sprintf("u%03d", i), TS: int64(i) * 1e6, Fields: presence.HasTS})
	}
	e.Apply("other", &presence.Event{Type: presence.Login, UserID: "x", TS: 1, Fields: presence.HasTS})
	ts := newServer(t, api.Config{Engine: e})
	big := "X-Tenant-Id: big"

	// $first declared and not sent: the argument's default, 100.
	p, res := usersPage(t, ts.URL, nil, nil, big)
	if len(res.Errors) > 0 || len(p.Edges) != 100 || !p.PageInfo.HasNextPage || p.TotalCount != 150 {
		t.Fatalf("default page: %d edges, next %v, total %d: %.200s", len(p.Edges), p.PageInfo.HasNextPage, p.TotalCount, res.raw)
	}
	cursor := *p.PageInfo.EndCursor
	p, _ = usersPage(t, ts.URL, nil, map[string]any{"first": 1000, "after": cursor}, big)
	if len(p.Edges) != 50 || p.Edges[0].Node.UserID != "u100" || p.PageInfo.HasNextPage {
		t.Fatalf("after the first 100: %d edges, next %v", len(p.Edges), p.PageInfo.HasNextPage)
	}

	bad := func(what string, vars map[string]any, argument string) {
		t.Helper()
		_, res := usersPage(t, ts.URL, nil, vars, big)
		if len(res.Errors) != 1 || res.Errors[0].Extensions["code"] != "BAD_USER_INPUT" || res.Errors[0].Extensions["argument"] != argument {
			t.Errorf("%s: %s", what, res.raw)
		}
	}
	for _, first := range []any{0, -1, 1001} {
		bad(fmt.Sprint("first ", first), map[string]any{"first": first}, "first")
	}
	raw := func(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	for name, after := range map[string]string{
		"not base64":         "not a cursor!",
		"empty":              "",
		"another version":    raw(2, 0, 0, 0, 'u'),
		"unknown order":      raw(1, 9, 0, 0, 'u'),
		"no user id":         raw(1, 0, 0, 0),
		"a time in USER_ID":  raw(1, 0, 0, 2, 'u'),
		"unset CONNECTED_AT": raw(1, 1, 1, 0, 'u'),
		"truncated varint":   raw(1, 1, 0, 0x80),
	} {
		bad("cursor "+name, map[string]any{"after": after}, "after")
	}
	bad("a cursor of another order", map[string]any{"after": cursor, "order": "CONNECTED_AT"}, "after")

	p, _ = usersPage(t, ts.URL, &engine.Filter{GroupIDs: []string{}}, nil, big)
	if len(p.Edges) != 0 || p.TotalCount != 0 || p.PageInfo.HasNextPage || p.PageInfo.EndCursor != nil {
		t.Errorf("an empty page: %+v", p)
	}
	p, _ = usersPage(t, ts.URL, nil, nil, "X-Tenant-Id: other")
	if len(p.Edges) != 1 || p.Edges[0].Node.UserID != "x" || p.TotalCount != 1 {
		t.Errorf("tenant other: %+v", p)
	}
	// A cursor of one tenant places a page of another by its key alone:
	// "x" sorts after "u099".
	p, _ = usersPage(t, ts.URL, nil, map[string]any{"after": cursor}, "X-Tenant-Id: other")
	if len(p.Edges) != 1 || p.Edges[0].Node.UserID != "x" || p.TotalCount != 1 {
		t.Errorf("tenant other after u099: %+v", p)
	}
	p, _ = usersPage(t, ts.URL, nil, map[string]any{"after": p.Edges[0].Cursor}, big)
	if len(p.Edges) != 0 || p.TotalCount != 150 || p.PageInfo.HasNextPage {
		t.Errorf("tenant big after x: %+v", p)
	}
}
