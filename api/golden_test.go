package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/presence"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/responses.golden from the answers of this code")

// goldenRequests are POST /graphql requests whose answers must not change by
// a byte: answers with data, GraphQL errors, HTTP-level errors, both media
// types, a large introspection answer, and strings that JSON escapes.
var goldenRequests = []struct {
	name, body string
	headers    []string
}{
	{"indicator, no variables", `{"query":` + jsonString(indicatorQuery) + `}`, nil},
	{"indicator, groups and role", `{"query":` + jsonString(indicatorQuery) + `,"variables":{"f":{"groupIds":["g1","g2"],"roles":["OPERATOR"]}}}`, []string{"X-Tenant-Id: acme"}},
	{"indicator, userIds", `{"query":` + jsonString(indicatorQuery) + `,"variables":{"f":{"userIds":["u1","u2","u5","nobody"]}}}`, []string{"X-Tenant-Id: acme"}},
	{"indicator, empty list and nulls", `{"query":` + jsonString(indicatorQuery) + `,"variables":{"f":{"groupIds":[],"roles":null}},"operationName":"Indicator"}`, nil},
	{"indicator, literal filters, other tenant", `{"query":"{ connectedUsersIndicator(filters: {projectIds: [\"p1\"]}) { connectedUsersCount } }"}`, []string{"X-Tenant-Id: globex"}},
	{"aliases, typename, fragment", `{"query":"query { a: connectedUsersIndicator { ...F } b: connectedUsersIndicator(filters: {availabilityStatus: [BUSY]}) { __typename connectedUsersCount } } fragment F on ConnectedUsersIndicator { connectedUsersCount countByChatAvailabilityStatus { busy } }"}`, []string{"X-Tenant-Id: acme"}},
	{"breakdown by group", `{"query":"{ connectedUsersIndicatorBreakdown(by: GROUP) { key indicator { connectedUsersCount } } }"}`, []string{"X-Tenant-Id: acme"}},
	{"breakdown by group, escaped keys", `{"query":"{ connectedUsersIndicatorBreakdown(by: GROUP, filters: {groupIds: [\"<g&1>\", \"g\u2028é\", \"g1\"]}) { key indicator { connectedUsersCount } } }"}`, []string{"X-Tenant-Id: acme"}},
	{"breakdown by role", `{"query":"{ connectedUsersIndicatorBreakdown(by: ROLE, filters: {chatAvailability: [AVAILABLE, BUSY]}) { key indicator { usersInProductionChatOccupancy { occupancyRate } } } }"}`, nil},
	// Types another query may not change, asked under three aliases for an
	// answer over net/http's 2 KiB buffer.
	{"introspection", `{"query":"{ a: __type(name: \"ConnectedUsersIndicatorFilters\") { ...T } b: __type(name: \"ConnectedUsersIndicatorFilters\") { ...T } c: __type(name: \"ChannelGroupAvailabilityStatus\") { name fields { name description type { kind ofType { name } } } } } fragment T on __Type { name kind description inputFields { name description defaultValue type { kind name ofType { kind name ofType { name } } } } }"}`, nil},
	{"two operations, chosen by name", `{"query":"query A { connectedUsersIndicator { connectedUsersCount } } query B { __typename }","operationName":"B"}`, nil},
	{"unknown operation name", `{"query":"query A { __typename }","operationName":"C"}`, nil},
	{"syntax error", `{"query":"{ connectedUsersIndicator { "}`, nil},
	{"unknown field", `{"query":"{ connectedUsersIndicator { nope } }"}`, nil},
	{"unknown field, graphql-response+json", `{"query":"{ connectedUsersIndicator { nope } }"}`, []string{"Accept: application/graphql-response+json"}},
	{"ok, graphql-response+json", `{"query":"{ connectedUsersIndicator { connectedUsersCount } }"}`, []string{"Accept: application/graphql-response+json, application/json"}},
	{"variable of the wrong type", `{"query":` + jsonString(indicatorQuery) + `,"variables":{"f":{"groupIds":"g1"}}}`, nil},
	{"unknown enum value in a variable", `{"query":` + jsonString(indicatorQuery) + `,"variables":{"f":{"roles":["<KING&>"]}}}`, nil},
	{"non-null variable missing", `{"query":"query Q($by: IndicatorDimension!) { connectedUsersIndicatorBreakdown(by: $by) { key } }"}`, nil},
	{"variable default", `{"query":"query Q($by: IndicatorDimension = PROJECT) { connectedUsersIndicatorBreakdown(by: $by) { key } }"}`, nil},
	{"list over the limit", `{"query":` + jsonString(indicatorQuery) + `,"variables":{"f":{"userIds":` + jsonIDs(api.MaxListLen+1) + `}}}`, nil},
	{"query over the limit", `{"query":"{` + strings.Repeat(" ", api.MaxQueryLength) + `}"}`, nil},
	{"subscription over HTTP", `{"query":"subscription { connectedUsersIndicatorUpdated { connectedUsersCount } }"}`, nil},
	{"body not JSON", `{"query":`, nil},
	{"two JSON values", `{"query":"{ __typename }"} {}`, nil},
	{"query missing", `{"variables":{}}`, nil},
	{"variables not an object", `{"query":"{ __typename }","variables":[1]}`, nil},
	{"keys in another case, duplicates, escapes", `{"QUERY":"{ x: __typename }","query":"{ \u0063onnectedUsersIndicator { connectedUsersCount } }","Variables":{"a":1e3,"b":[true,null,-0.5,"\ud83d\ude00"]}}`, nil},
	{"bad tenant", `{"query":"{ __typename }"}`, []string{"X-Tenant-Id: not a tenant!"}},
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func jsonIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	b, _ := json.Marshal(ids)
	return string(b)
}

// TestGoldenResponses checks that every answer of goldenRequests is, byte
// for byte, the one in testdata/responses.golden (status, Content-Type,
// body): what the API answered before its request path was made faster.
// go test ./api -run GoldenResponses -args -update rewrites the file.
func TestGoldenResponses(t *testing.T) {
	e, tr := newTruth(t)
	// Ids that JSON escapes, as breakdown keys.
	tr.apply("acme", &presence.Event{Type: presence.Login, UserID: "u<&>", TS: t0.UnixNano(),
		Fields:   presence.HasTS | presence.HasGroups | presence.HasChat,
		GroupIDs: []string{"<g&1>", "g\u2028é"}, Chat: presence.Busy})
	ts := newServer(t, api.Config{Engine: e})

	var got bytes.Buffer
	for _, g := range goldenRequests {
		req, err := http.NewRequest(http.MethodPost, ts.URL+"/graphql", strings.NewReader(g.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for _, h := range g.headers {
			k, v, _ := strings.Cut(h, ": ")
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&got, "== %s\n%d %s\n%s\n", g.name, res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	const path = "testdata/responses.golden"
	if *updateGolden {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		gl, wl := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("line %d differs from %s:\ngot  %.400s\nwant %.400s", i+1, path, g, w)
			}
		}
	}
}
