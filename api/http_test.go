package api_test

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/presenced/presenced/api"
)

func TestNewValidates(t *testing.T) {
	e := newEngine(t)
	cases := []struct {
		field string
		cfg   api.Config
	}{
		{"Engine", api.Config{}},
		{"Tokens", api.Config{Engine: e, Tokens: &api.Tokens{}}},
		{"RateLimit", api.Config{Engine: e, RateLimit: -1}},
		{"RateBurst", api.Config{Engine: e, RateBurst: -1}},
		{"QueryTimeout", api.Config{Engine: e, QueryTimeout: -time.Second}},
		{"SubscriptionsPerSocket", api.Config{Engine: e, SubscriptionsPerSocket: -1}},
		{"SubscriptionsPerClient", api.Config{Engine: e, SubscriptionsPerClient: -1}},
		{"InitTimeout", api.Config{Engine: e, InitTimeout: -time.Second}},
		{"SocketWriteTimeout", api.Config{Engine: e, SocketWriteTimeout: -time.Second}},
		{"HistoryInterval", api.Config{Engine: e, HistoryInterval: -time.Second}},
		{"HistoryWindow", api.Config{Engine: e, HistoryInterval: time.Hour}},
	}
	for _, c := range cases {
		_, err := api.New(c.cfg)
		var ce *api.ConfigError
		if !errors.Is(err, api.ErrConfig) || !errors.As(err, &ce) || ce.Field != c.field ||
			!strings.Contains(err.Error(), "Config."+c.field) {
			t.Errorf("%s: err = %v", c.field, err)
		}
	}
	// Two servers cannot share a registry: their metrics would collide.
	reg := prometheus.NewRegistry()
	if _, err := api.New(api.Config{Engine: e, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.New(api.Config{Engine: e, Registry: reg}); err == nil {
		t.Error("second server on the same registry: no error")
	}
}

// TestRateLimit checks the refusals of the rate limit over HTTP on the fake
// clock of a synctest bubble, so that Retry-After is exact: the whole
// seconds until the next token, rounded up.
func TestRateLimit(t *testing.T) {
	// refused checks that res is the refusal at limit saying secs.
	refused := func(t *testing.T, res *gqlResponse, limit string, secs int) {
		t.Helper()
		msg := "api: rate limit exceeded (" + limit + " requests/s); retry after " + strconv.Itoa(secs) + "s"
		if res.status != http.StatusTooManyRequests || len(res.Errors) != 1 || res.Errors[0].Message != msg ||
			res.Errors[0].Extensions["code"] != "RATE_LIMITED" || len(res.Errors[0].Extensions) != 1 {
			t.Errorf("want 429 %q RATE_LIMITED, got %d %s", msg, res.status, res.raw)
		}
		if got := res.header.Get("Retry-After"); got != strconv.Itoa(secs) {
			t.Errorf("Retry-After = %q, want %d", got, secs)
		}
	}
	ok := func(t *testing.T, res *gqlResponse, what string) {
		t.Helper()
		if res.status != http.StatusOK {
			t.Errorf("%s: %d %s", what, res.status, res.raw)
		}
	}

	t.Run("token", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, b := api.NewToken(), api.NewToken()
			tokens := mustTokens(t, "acme "+sha(a)+"\nacme "+sha(b)+"\n")
			// One request per 10 s after a burst of 2.
			bb := newBubble(t, api.Config{Tokens: tokens, RateLimit: 0.1, RateBurst: 2})
			asA := "Authorization: Bearer " + a
			for i := range 2 {
				ok(t, bb.post(t, indicatorQuery, asA), "request "+strconv.Itoa(i))
			}
			refused(t, bb.post(t, indicatorQuery, asA), "0.1", 10)
			// Another token of the same tenant has its own bucket.
			ok(t, bb.post(t, indicatorQuery, "Authorization: Bearer "+b), "other token")
			// Refused requests take no token: the wait only shrinks, and the
			// token comes at 10 s.
			time.Sleep(3500 * time.Millisecond)
			refused(t, bb.post(t, indicatorQuery, asA), "0.1", 7) // 6.5 s
			time.Sleep(5750 * time.Millisecond)
			refused(t, bb.post(t, indicatorQuery, asA), "0.1", 1) // 0.75 s
			time.Sleep(750 * time.Millisecond)
			ok(t, bb.post(t, indicatorQuery, asA), "at 10 s")
			refused(t, bb.post(t, indicatorQuery, asA), "0.1", 10)
		})
	})

	t.Run("5 per second", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bb := newBubble(t, api.Config{RateLimit: 5}) // a burst of 5
			for i := range 5 {
				ok(t, bb.post(t, indicatorQuery), "request "+strconv.Itoa(i))
			}
			refused(t, bb.post(t, indicatorQuery), "5", 1) // 200 ms
			time.Sleep(199 * time.Millisecond)
			refused(t, bb.post(t, indicatorQuery), "5", 1) // 1 ms
			time.Sleep(time.Millisecond)
			ok(t, bb.post(t, indicatorQuery), "at 200 ms")
		})
	})

	t.Run("open mode, per tenant", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			bb := newBubble(t, api.Config{RateLimit: 0.1, RateBurst: 1})
			ok(t, bb.post(t, indicatorQuery, "X-Tenant-Id: acme"), "first acme request")
			refused(t, bb.post(t, indicatorQuery, "X-Tenant-Id: acme"), "0.1", 10)
			ok(t, bb.post(t, indicatorQuery, "X-Tenant-Id: globex"), "globex")
		})
	})
}

func TestHealth(t *testing.T) {
	var ready atomic.Bool
	ts := newServer(t, api.Config{Ready: ready.Load})
	get := func(path string) int {
		res, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if get("/healthz") != 200 || get("/readyz") != 503 {
		t.Error("before ready: want 200 and 503")
	}
	ready.Store(true)
	if get("/readyz") != 200 {
		t.Error("ready: want 200")
	}
	ready.Store(false)
	if get("/readyz") != 503 {
		t.Error("cut off: want 503")
	}
	if get("/healthz") != 200 {
		t.Error("healthz")
	}
}

func TestNewHTTPServer(t *testing.T) {
	s := api.NewHTTPServer("127.0.0.1:0", http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= api.DefaultQueryTimeout || s.IdleTimeout <= 0 {
		t.Errorf("timeouts: %+v", s)
	}
	// A Server's own has the same timeouts (its Shutdown is TestShutdown's).
	srv, err := api.New(api.Config{Engine: newEngine(t)})
	if err != nil {
		t.Fatal(err)
	}
	hs := srv.HTTPServer("127.0.0.1:0")
	if hs.Addr != "127.0.0.1:0" || hs.Handler != srv.Handler() || hs.ReadHeaderTimeout != s.ReadHeaderTimeout ||
		hs.ReadTimeout != s.ReadTimeout || hs.WriteTimeout != s.WriteTimeout || hs.IdleTimeout != s.IdleTimeout ||
		hs.MaxHeaderBytes != s.MaxHeaderBytes {
		t.Errorf("Server.HTTPServer: %+v", hs)
	}
}

var externalURL = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`)

func TestGraphiQL(t *testing.T) {
	for _, mode := range []string{"open", "token"} {
		t.Run(mode, func(t *testing.T) {
			cfg := api.Config{}
			if mode == "token" {
				cfg.Tokens = mustTokens(t, "acme "+sha("x"))
			}
			ts := newServer(t, cfg)
			res, err := http.Get(ts.URL + "/graphql")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			page := string(body)
			if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("GET /graphql: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("CSP = %q", csp)
			}
			if u := externalURL.FindString(page); u != "" {
				t.Errorf("the page names another host: %q", u)
			}
			wantField := map[string]string{"open": "X-Tenant-Id", "token": "Bearer token"}[mode]
			if !strings.Contains(page, wantField) || !strings.Contains(page, `data-auth="`+mode+`"`) {
				t.Errorf("the page lacks the %s field", wantField)
			}

			// Every asset the page names is served from here.
			refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
			if len(refs) != 6 {
				t.Errorf("%d assets, want 6: %v", len(refs), refs)
			}
			for _, ref := range refs {
				res, err := http.Get(ts.URL + "/" + ref[1])
				if err != nil {
					t.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || n == 0 || res.Header.Get("ETag") == "" {
					t.Errorf("%s: %d, %d bytes, ETag %q", ref[1], res.StatusCode, n, res.Header.Get("ETag"))
				}
			}
		})
	}

	ts := newServer(t, api.Config{})
	// gzip when accepted (Go's client asks for it and decodes it).
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/graphiql/graphiql.min.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil || res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip: %v %q", err, res.Header.Get("Content-Encoding"))
	}
	js, _ := io.ReadAll(zr)
	res.Body.Close()
	if !strings.Contains(string(js), "GraphiQL") || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("graphiql.min.js: %d bytes, %q", len(js), res.Header.Get("Content-Type"))
	}
	// Revalidation answers 304.
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	if res, err := http.DefaultTransport.RoundTrip(req); err != nil || res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %v %v", res.StatusCode, err)
	}
	for _, path := range []string{"/graphiql/index.html", "/graphiql/nope.js", "/graphiql/", "/graphiql/../schema.go"} {
		if res, err := http.Get(ts.URL + path); err != nil || res.StatusCode != 404 {
			t.Errorf("GET %s: %v %v", path, res.StatusCode, err)
		}
	}
}

func scrape(tb testing.TB, url string) string {
	tb.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		tb.Fatalf("GET /metrics: %d", res.StatusCode)
	}
	return string(b)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t)
	ts := newServer(t, api.Config{Engine: e, Registry: reg})

	// Per-tenant gauges, read from the engine at scrape time: the oracle's
	// numbers with no filter.
	want := `
# HELP presence_chat_slots Sum of chat slots over a tenant's users in production; kind is max (capacity) or current (conversations).
# TYPE presence_chat_slots gauge
presence_chat_slots{kind="current",tenant="acme"} 6
presence_chat_slots{kind="current",tenant="default"} 1
presence_chat_slots{kind="current",tenant="globex"} 7
presence_chat_slots{kind="max",tenant="acme"} 9
presence_chat_slots{kind="max",tenant="default"} 1
presence_chat_slots{kind="max",tenant="globex"} 7
# HELP presence_chat_users Connected users of a tenant by chat availability.
# TYPE presence_chat_users gauge
presence_chat_users{availability="AVAILABLE",tenant="acme"} 3
presence_chat_users{availability="AVAILABLE",tenant="default"} 1
presence_chat_users{availability="AVAILABLE",tenant="globex"} 0
presence_chat_users{availability="BUSY",tenant="acme"} 1
presence_chat_users{availability="BUSY",tenant="default"} 0
presence_chat_users{availability="BUSY",tenant="globex"} 1
presence_chat_users{availability="TOGGLE_OFF",tenant="acme"} 1
presence_chat_users{availability="TOGGLE_OFF",tenant="default"} 1
presence_chat_users{availability="TOGGLE_OFF",tenant="globex"} 0
# HELP presence_connected_users Connected users of a tenant.
# TYPE presence_connected_users gauge
presence_connected_users{tenant="acme"} 5
presence_connected_users{tenant="default"} 2
presence_connected_users{tenant="globex"} 1
# HELP presence_in_production_users Connected users of a tenant in production on chat (chat AVAILABLE or BUSY).
# TYPE presence_in_production_users gauge
presence_in_production_users{tenant="acme"} 4
presence_in_production_users{tenant="default"} 1
presence_in_production_users{tenant="globex"} 1
# HELP presence_interned_ids Group, project and routing-group ids held in memory, over all tenants: those events named, never those only requests did.
# TYPE presence_interned_ids gauge
presence_interned_ids 13
# HELP presence_tenants Tenants held in memory.
# TYPE presence_tenants gauge
presence_tenants 3
# HELP presence_tracked_users Users held in memory, connected or not, over all tenants.
# TYPE presence_tracked_users gauge
presence_tracked_users 9
`
	// 13 ids: acme's 4 groups, 3 projects and 3 routing groups, globex's 3.
	totals := []string{"presence_connected_users", "presence_chat_users", "presence_in_production_users", "presence_chat_slots",
		"presence_interned_ids", "presence_tenants", "presence_tracked_users"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), totals...); err != nil {
		t.Error(err)
	}
	// The oracle agrees with the gauges.
	for _, tenant := range []string{"acme", "globex", "default"} {
		o := oracle(tenant, filters{})
		if !strings.Contains(scrape(t, ts.URL), `presence_connected_users{tenant="`+tenant+`"} `+strconv.Itoa(o.ConnectedUsersCount)+"\n") {
			t.Errorf("presence_connected_users of %s is not %d", tenant, o.ConnectedUsersCount)
		}
	}

	// Request metrics: named operations, the root field for anonymous ones,
	// "other" for what is not a name.
	query(t, ts.URL, `query Dashboard { connectedUsersIndicator { connectedUsersCount } }`, nil)
	query(t, ts.URL, `{ connectedUsersIndicator { connectedUsersCount } }`, nil)
	query(t, ts.URL, `{ connectedUsersIndicator(filters: {groupIds: ["g1", "g2"]}) { connectedUsersCount } }`, nil)
	query(t, ts.URL, `{ __typename }`, nil)
	query(t, ts.URL, `{ syntax error`, nil)
	query(t, ts.URL, `{ connectedUsersIndicator { connectedUsersCount } }`, nil, "X-Tenant-Id: bad!")
	out := scrape(t, ts.URL)
	for _, line := range []string{
		`presence_graphql_request_duration_seconds_count{operation="Dashboard"} 1`,
		`presence_graphql_request_duration_seconds_count{operation="connectedUsersIndicator"} 2`,
		`presence_graphql_request_duration_seconds_count{operation="__typename"} 1`,
		`presence_graphql_request_duration_seconds_count{operation="other"} 1`,
		`presence_http_requests_total{code="200",handler="graphql"} 5`,
		`presence_http_requests_total{code="400",handler="graphql"} 1`,
		`presence_view_lookups_total{result="hit"} `,
		`presence_view_lookups_total{result="miss"} `,
		`presence_views `,
	} {
		if !strings.HasSuffix(line, " ") {
			line += "\n" // the whole value
		}
		if !strings.Contains(out, line) {
			t.Errorf("no %q in\n%s", line, grep(out, "presence_graphql|presence_http|presence_view"))
		}
	}
	// The queries named g1 and g2 for the default tenant, which no event
	// put in them, and a tenant no event named: nothing changed.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), totals...); err != nil {
		t.Error(err)
	}

	// The operation label is bounded: past 64 names, "other".
	for i := range 80 {
		query(t, ts.URL, `query Op`+strconv.Itoa(i)+` { __typename }`, nil)
	}
	out = scrape(t, ts.URL)
	if n := strings.Count(out, "presence_graphql_request_duration_seconds_count{"); n > 64+4+1 {
		t.Errorf("%d operation labels", n)
	}
	if !strings.Contains(out, `presence_graphql_request_duration_seconds_count{operation="other"} 18`) {
		t.Errorf("want 17 late names and one syntax error as other:\n%s", grep(out, `operation="other"`))
	}

	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func grep(text, pattern string) string {
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if re.MatchString(l) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
