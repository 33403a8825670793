package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/internal/wsclient"
	"github.com/presenced/presenced/presence"
)

// footprint is what outlives requests: the engine's counts of ids and
// tenants, its snapshot's bytes (fixed header) and the /metrics series.
type footprint struct {
	ids, tenants, views int
	perTenant           []engine.TenantStats
	snapshot            []byte
	series              []string
}

func footprintOf(tb testing.TB, e *engine.Engine, reg *prometheus.Registry) footprint {
	tb.Helper()
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 1, Written: t0}); err != nil {
		tb.Fatal(err)
	}
	st := e.Stats()
	return footprint{ids: st.IDs, tenants: st.Tenants, views: st.Views, perTenant: st.PerTenant,
		snapshot: buf.Bytes(), series: seriesOf(tb, reg)}
}

// seriesOf lists the series of reg: each metric's name and labels.
func seriesOf(tb testing.TB, reg *prometheus.Registry) []string {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			s := f.GetName() + "{"
			for _, l := range m.GetLabel() {
				s += l.GetName() + "=" + l.GetValue() + ","
			}
			out = append(out, s+"}")
		}
	}
	slices.Sort(out)
	return out
}

func sameFootprint(tb testing.TB, what string, a, b footprint) {
	tb.Helper()
	if a.ids != b.ids || a.tenants != b.tenants || !slices.Equal(a.perTenant, b.perTenant) {
		tb.Errorf("%s: %d ids, %d tenants %+v; were %d, %d %+v", what, b.ids, b.tenants, b.perTenant, a.ids, a.tenants, a.perTenant)
	}
	if !bytes.Equal(a.snapshot, b.snapshot) {
		tb.Errorf("%s: the snapshot has %d bytes, had %d, and differs", what, len(b.snapshot), len(a.snapshot))
	}
	if !slices.Equal(a.series, b.series) {
		tb.Errorf("%s: /metrics series\n%s\nwere\n%s", what, strings.Join(b.series, "\n"), strings.Join(a.series, "\n"))
	}
}

// requestShape is one kind of aliased field of the load below: its filter
// literal for request i, alias j, and what it answers on the solo tenant.
type requestShape struct {
	field  string // "indicator" or "breakdown"
	filter func(i, j int) string
	want   int // connectedUsersCount, or the number of rows
}

var requestShapes = []requestShape{
	{"indicator", func(i, j int) string { // several unknown groups
		return fmt.Sprintf(`{groupIds: ["x%d.%d", "y%d.%d", "z%d.%d"]}`, i, j, i, j, i, j)
	}, 0},
	{"indicator", func(i, j int) string { // unknown ids in two dimensions
		return fmt.Sprintf(`{groupIds: ["x%d.%d"], projectIds: ["y%d.%d", "p1"]}`, i, j, i, j)
	}, 0},
	{"indicator", func(i, j int) string { // known ids and unknown ones
		return fmt.Sprintf(`{groupIds: ["g1", "x%d.%d"], routingGroupIds: ["r1", "y%d.%d"]}`, i, j, i, j)
	}, 1},
	{"indicator", func(i, j int) string { // unknown users and ids
		return fmt.Sprintf(`{userIds: ["u1", "v%d.%d"], groupIds: ["g1", "x%d.%d"]}`, i, j, i, j)
	}, 1},
	{"breakdown", func(i, j int) string {
		return fmt.Sprintf(`{groupIds: ["g1", "x%d.%d"], projectIds: ["p1", "y%d.%d"]}`, i, j, i, j)
	}, 1},
	{"breakdown", func(i, j int) string { return fmt.Sprintf(`{projectIds: ["y%d.%d"]}`, i, j) }, 0},
}

// loadRequest is request i of the load: perRequest aliased fields of one
// kind, for the solo tenant or, every fifth request, for a tenant no event
// named.
func loadRequest(i, perRequest int) (body []byte, tenant string, shape requestShape) {
	shape = requestShapes[i%len(requestShapes)]
	tenant = "solo"
	if i%5 == 4 {
		tenant = fmt.Sprint("nobody", i)
	}
	var q strings.Builder
	q.WriteString("{")
	for j := range perRequest {
		if shape.field == "indicator" {
			fmt.Fprintf(&q, " a%d: connectedUsersIndicator(filters: %s) { connectedUsersCount }", j, shape.filter(i, j))
		} else {
			fmt.Fprintf(&q, " a%d: connectedUsersIndicatorBreakdown(by: GROUP, filters: %s) { key }", j, shape.filter(i, j))
		}
	}
	q.WriteString(" }")
	body, _ = json.Marshal(map[string]any{"query": q.String()})
	return body, tenant, shape
}

// askLoad posts request i and checks its answers.
func askLoad(url string, i, perRequest int) error {
	body, tenant, shape := loadRequest(i, perRequest)
	req, err := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.TenantHeader, tenant)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	var out struct {
		Data   map[string]json.RawMessage
		Errors []any
	}
	if err := json.Unmarshal(raw, &out); err != nil || res.StatusCode != 200 || len(out.Errors) > 0 || len(out.Data) != perRequest {
		return fmt.Errorf("request %d: %d %v %.300s", i, res.StatusCode, err, raw)
	}
	want := shape.want
	if tenant != "solo" {
		want = 0
	}
	for alias, v := range out.Data {
		got := -1
		if shape.field == "indicator" {
			var ind struct{ ConnectedUsersCount int }
			if json.Unmarshal(v, &ind) == nil {
				got = ind.ConnectedUsersCount
			}
		} else {
			var rows []struct{ Key string }
			if json.Unmarshal(v, &rows) == nil {
				got = len(rows)
			}
		}
		if got != want {
			return fmt.Errorf("request %d %s for %s: %s, want %d", i, alias, tenant, v, want)
		}
	}
	return nil
}

// TestRequestsLeaveNothing is contract section 3.1's rule from the outside:
// a one-user tenant is asked 50,000 queries and breakdowns naming ids, and
// tenants, that no event named, and 500 subscriptions of the same; once the
// subscriptions are closed, the engine's ids and tenants, its snapshot and
// the /metrics series are what they were.
func TestRequestsLeaveNothing(t *testing.T) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.Apply("solo", &presence.Event{Type: presence.Login, UserID: "u1", TS: t0.UnixNano(),
		Fields:   presence.HasTS | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups | presence.HasChat,
		GroupIDs: []string{"g1"}, ProjectIDs: []string{"p1"}, RoutingGroupIDs: []string{"r1"}, Chat: presence.Available})
	// What is measured is counts, not time: no request may time out on a
	// busy machine under -race.
	s, ts := liveServer(t, api.Config{Engine: e, QueryTimeout: time.Minute})
	reg := s.Registry()

	// One request of each kind first: the series of the requests
	// themselves (handler, code, operation) are there from the first one.
	const perRequest, requests = 50, 1000 // 50,000 queries
	for i := range len(requestShapes) * 5 {
		if err := askLoad(ts.URL, i, 1); err != nil {
			t.Fatal(err)
		}
	}
	warm := acked(t, ts, map[string]any{api.TenantHeader: "solo"})
	warm.Subscribe(t.Context(), "w", liveQuery, nil)
	next(t, warm, "w", "next")
	warm.Close()
	closed := func() bool { return gaugeOf(t, reg, "presence_subscriptions_open") == 0 }
	testenv.WaitFor(t, "the warm-up socket to be counted", func() bool {
		// After the socket's handler returns.
		return closed() && slices.Contains(seriesOf(t, reg), "presence_http_requests_total{code=101,handler=graphql-ws,}")
	})
	before := footprintOf(t, e, reg)

	work := make(chan int)
	errs := make(chan error, requests)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range work {
				if err := askLoad(ts.URL, i, perRequest); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sameFootprint(t, "after 50,000 queries", before, footprintOf(t, e, reg))

	// 500 subscriptions on 10 sockets: 5 of the solo tenant naming unknown
	// ids, 5 of tenants no event named.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var socks []*wsclient.Conn
	for k := range 10 {
		tenant := "solo"
		if k%2 == 1 {
			tenant = fmt.Sprint("ghost", k)
		}
		c := acked(t, ts, map[string]any{api.TenantHeader: tenant})
		for j := range 50 {
			shape := requestShapes[j%4] // the indicator shapes
			vars := map[string]any{"f": json.RawMessage(filterJSON(shape.filter(1000+k, j)))}
			if err := c.Subscribe(ctx, fmt.Sprint(j), liveQuery, vars); err != nil {
				t.Fatal(err)
			}
		}
		for range 50 {
			m := anyNext(t, c)
			want := requestShapes[atoi(t, m.ID)%4].want
			if tenant != "solo" {
				want = 0
			}
			if m.Type != "next" || value(t, m).ConnectedUsersCount != int64(want) {
				t.Fatalf("subscription %s of %s: %s %s, want %d connected", m.ID, tenant, m.Type, m.Payload, want)
			}
		}
		socks = append(socks, c)
	}
	sameFootprint(t, "with 500 subscriptions open", before, footprintOf(t, e, reg))
	for i, c := range socks {
		if i%2 == 0 {
			c.Close()
			continue
		}
		for j := range 50 {
			c.Complete(ctx, fmt.Sprint(j))
		}
	}
	testenv.WaitFor(t, "the subscriptions to end", closed)
	after := footprintOf(t, e, reg)
	sameFootprint(t, "after the subscriptions", before, after)
	if after.views != before.views {
		t.Errorf("%d views after the subscriptions, %d before", after.views, before.views)
	}
}

// gaugeOf reads the value of the gauge name, without labels, from reg.
func gaugeOf(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	tb.Fatalf("no gauge %s", name)
	return 0
}

// filterJSON turns a filter literal of requestShapes into JSON.
func filterJSON(literal string) string {
	for _, key := range []string{"groupIds", "projectIds", "routingGroupIds", "userIds"} {
		literal = strings.ReplaceAll(literal, key+":", `"`+key+`":`)
	}
	return literal
}

func atoi(tb testing.TB, s string) int {
	tb.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		tb.Fatal(err)
	}
	return n
}
