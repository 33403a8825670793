package api_test

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	brute "github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
)

type breakdownRow struct {
	Key       string
	Indicator brute.Indicator
}

// breakdown asks connectedUsersIndicatorBreakdown over HTTP.
func breakdown(tb testing.TB, url, by string, f *engine.Filter, headers ...string) []breakdownRow {
	tb.Helper()
	vars := variablesOf(f)
	vars["by"] = by
	res := query(tb, url, testenv.BreakdownQuery, vars, headers...)
	var body struct {
		Data   struct{ ConnectedUsersIndicatorBreakdown []breakdownRow }
		Errors []any
	}
	if err := json.Unmarshal([]byte(res.raw), &body); err != nil || res.status != 200 || len(body.Errors) > 0 {
		tb.Fatalf("%d %v: %.300s", res.status, err, res.raw)
	}
	if !strings.Contains(res.raw, `"connectedUsersIndicatorBreakdown":[`) {
		tb.Fatalf("not a list: %.200s", res.raw)
	}
	return body.Data.ConnectedUsersIndicatorBreakdown
}

// TestBreakdownAgainstOracle asks every dimension with random filters of
// every class and compares each row with the oracle's brute force.
func TestBreakdownAgainstOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	const users = 60
	events := brute.Events(r, []string{"acme", "globex"}, users, 10, 50)
	e, _ := engine.New(engine.Config{})
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	truth := brute.State(events)
	_, ts := liveServer(t, api.Config{Engine: e})
	rows := 0
	for i := range 240 {
		tenant := []string{"acme", "globex"}[i%2]
		by := engine.Dimension(i % 6)
		f := brute.RandomFilter(r, brute.Class(i/6%3), users)
		got := breakdown(t, ts.URL, testenv.DimensionNames[by], f, "X-Tenant-Id: "+tenant)
		want := brute.Breakdown(truth[tenant], by, f)
		if !slices.IsSortedFunc(got, func(a, b breakdownRow) int { return strings.Compare(a.Key, b.Key) }) {
			t.Fatalf("rows not sorted by key: %+v", got)
		}
		if len(got) != len(want) {
			t.Fatalf("%s %s %+v: %d rows, want %d\n got %+v\nwant %+v", tenant, testenv.DimensionNames[by], *f, len(got), len(want), got, want)
		}
		for _, row := range got {
			if w, ok := want[row.Key]; !ok || row.Indicator != brute.AnswerOf(w) {
				t.Fatalf("%s %s %+v key %q: %+v, want %+v", tenant, testenv.DimensionNames[by], *f, row.Key, row.Indicator, brute.AnswerOf(w))
			}
		}
		rows += len(got)
	}
	if rows < 300 {
		t.Errorf("only %d rows in all: the filters matched too little to prove anything", rows)
	}

	// Errors name the argument.
	res := query(t, ts.URL, `{ connectedUsersIndicatorBreakdown(by: TEAM) { key } }`, nil)
	if len(res.Errors) == 0 || !strings.Contains(res.errorText(), "TEAM") {
		t.Errorf("unknown dimension: %s", res.raw)
	}
	res = query(t, ts.URL, `{ connectedUsersIndicatorBreakdown { key } }`, nil)
	if len(res.Errors) == 0 || !strings.Contains(res.errorText(), `"by"`) {
		t.Errorf("no dimension: %s", res.raw)
	}
	// A tenant with no user: an empty list, not null.
	if got := breakdown(t, ts.URL, "GROUP", &engine.Filter{}, "X-Tenant-Id: nobody"); got == nil || len(got) != 0 {
		t.Errorf("unknown tenant: %+v", got)
	}
}
