package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/presence"
)

func history(tb testing.TB, url string, headers ...string) (int, api.HistoryResponse) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/api/history", nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var h api.HistoryResponse
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
			tb.Fatal(err)
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			tb.Errorf("Cache-Control %q", res.Header.Get("Cache-Control"))
		}
	}
	return res.StatusCode, h
}

func TestHistory(t *testing.T) {
	e := newEngine(t)
	srv, ts := liveServer(t, api.Config{Engine: e, HistoryInterval: 20 * time.Millisecond, HistoryWindow: 100 * time.Millisecond})
	if _, h := history(t, ts.URL, "X-Tenant-Id: acme"); h.Samples == nil || len(h.Samples) != 0 {
		t.Fatalf("before Run: %+v", h)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()

	// The ring holds the window: 5 samples, the oldest first.
	deadline := time.Now().Add(5 * time.Second)
	var h api.HistoryResponse
	for h.Samples == nil || len(h.Samples) < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("no 5 samples: %+v", h)
		}
		time.Sleep(30 * time.Millisecond)
		_, h = history(t, ts.URL, "X-Tenant-Id: acme")
	}
	if h.Tenant != "acme" || h.IntervalSeconds != 0.02 || h.WindowSeconds != 0.1 || len(h.Samples) != 5 {
		t.Errorf("%+v", h)
	}
	cur, capacity := 6.0, 9.0 // acme's slots in production
	for i, s := range h.Samples {
		if i > 0 && s.Time <= h.Samples[i-1].Time {
			t.Errorf("samples not oldest first: %+v", h.Samples)
		}
		if s.Connected != 5 || s.Available != 3 || s.OccupancyRate != 100*cur/capacity {
			t.Errorf("sample %+v, want acme's totals", s)
		}
	}
	// New values show in the samples after the change.
	e.Apply("acme", (&clock{ts: t0.Add(time.Hour).UnixNano()}).event(presence.Logout, "u1"))
	for h.Samples[len(h.Samples)-1].Connected != 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the logout never showed: %+v", h.Samples)
		}
		time.Sleep(30 * time.Millisecond)
		_, h = history(t, ts.URL, "X-Tenant-Id: acme")
	}
	if _, g := history(t, ts.URL, "X-Tenant-Id: globex"); len(g.Samples) == 0 || g.Samples[0].Connected != 1 {
		t.Errorf("globex: %+v", g)
	}
	cancel()
	<-done

	t.Run("tokens", func(t *testing.T) {
		tok := api.NewToken()
		_, ts := liveServer(t, api.Config{Tokens: mustTokens(t, "globex "+sha(tok))})
		if code, _ := history(t, ts.URL); code != http.StatusUnauthorized {
			t.Errorf("no token: %d", code)
		}
		if code, h := history(t, ts.URL, "Authorization: Bearer "+tok, "X-Tenant-Id: acme"); code != 200 || h.Tenant != "globex" {
			t.Errorf("token of globex: %d %+v", code, h)
		}
	})
}

func TestHistoryConfig(t *testing.T) {
	for _, cfg := range []api.Config{
		{HistoryInterval: -time.Second},
		{HistoryWindow: -time.Second},
		{HistoryInterval: time.Minute, HistoryWindow: time.Second},
		{HistoryInterval: time.Millisecond, HistoryWindow: time.Hour},
	} {
		cfg.Engine = newEngine(t)
		_, err := api.New(cfg)
		var ce *api.ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "History") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

// TestDashboard checks the page of GET / and its assets: served from here,
// no other host named, a CSP that allows only its own files and socket.
func TestDashboard(t *testing.T) {
	for _, mode := range []string{"open", "token"} {
		t.Run(mode, func(t *testing.T) {
			cfg := api.Config{}
			if mode == "token" {
				cfg.Tokens = mustTokens(t, "acme "+sha("x"))
			}
			_, ts := liveServer(t, cfg)
			res, err := http.Get(ts.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			page := string(body)
			if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("GET /: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("CSP %q", csp)
			}
			if !strings.Contains(page, `data-auth="`+mode+`"`) || strings.Contains(page, "<script>") || strings.Contains(page, "style=") {
				t.Errorf("the page: mode, inline script or style")
			}
			refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
			assets := 0
			for _, ref := range refs {
				if u := externalURL.FindString(ref[1]); u != "" {
					t.Errorf("the page names another host: %q", u)
				}
				if !strings.HasPrefix(ref[1], "dashboard/") {
					continue
				}
				assets++
				res, err := http.Get(ts.URL + "/" + ref[1])
				if err != nil {
					t.Fatal(err)
				}
				js, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || len(js) == 0 || res.Header.Get("ETag") == "" {
					t.Errorf("%s: %d", ref[1], res.StatusCode)
				}
				if u := externalURL.FindString(string(js)); u != "" {
					t.Errorf("%s names another host: %q", ref[1], u)
				}
			}
			if assets != 2 {
				t.Errorf("%d assets, want the CSS and the script: %v", assets, refs)
			}
		})
	}
	_, ts := liveServer(t, api.Config{})
	for _, path := range []string{"/dashboard/nope.js", "/dashboard/index.html", "/nope"} {
		if res, err := http.Get(ts.URL + path); err != nil || res.StatusCode != 404 {
			t.Errorf("GET %s: %v %v", path, res.StatusCode, err)
		}
	}
}
