package api_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/testenv"
)

func sha(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func mustTokens(tb testing.TB, text string) *api.Tokens {
	tb.Helper()
	tok, err := api.ParseTokens(strings.NewReader(text))
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func TestParseTokens(t *testing.T) {
	h1, h2 := sha("one"), sha("two")
	valid := "# tenants and the sha256 of their tokens\n\n" +
		"acme " + h1 + "\n" +
		"\tglobex\t" + h2 + "   # the desk of globex\r\n" +
		"   # indented comment\n"
	tok, err := api.ParseTokens(strings.NewReader(valid))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != 2 {
		t.Fatalf("Len = %d, want 2", tok.Len())
	}

	long := strings.Repeat("a", 65)
	cases := []struct {
		name, text string
		line       int
		rule       string
	}{
		{"one field", "acme\n", 1, "want 2 fields"},
		{"three fields", "# c\nacme " + h1 + " extra\n", 2, "got 3"},
		{"bad tenant char", "ac.me " + h1, 1, "tenant id must be 1 to 64 characters"},
		{"tenant too long", long + " " + h1, 1, "tenant id must be"},
		{"uppercase hex", "acme " + strings.ToUpper(h1), 1, "64 lowercase hex"},
		{"short hash", "acme " + h1[:63], 1, "64 lowercase hex"},
		{"long hash", "acme " + h1 + "0", 1, "64 lowercase hex"},
		{"not hex", "acme " + strings.Repeat("g", 64), 1, "64 lowercase hex"},
		{"the token itself", "acme " + "tok_abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef", 1, "64 lowercase hex"},
		{"duplicate hash", "acme " + h1 + "\n\nglobex " + h1 + "\n", 3, "already given on line 1"},
		{"empty", "# nothing\n\n", 2, "no token line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := api.ParseTokens(strings.NewReader(c.text))
			var le *api.LineError
			if !errors.As(err, &le) || !errors.Is(err, api.ErrTokensFile) {
				t.Fatalf("err = %v, want a LineError matching ErrTokensFile", err)
			}
			if le.Line != c.line || !strings.Contains(err.Error(), c.rule) ||
				!strings.Contains(err.Error(), "line "+strconv.Itoa(c.line)) {
				t.Errorf("err = %q, want line %d and %q", err, c.line, c.rule)
			}
		})
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte("acme "+sha("x")+"\nbad line here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := api.LoadTokens(path)
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("err = %v, want it to name %s:2", err, path)
	}
	if _, err := api.LoadTokens(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestNewTokenAndLine(t *testing.T) {
	a, b := api.NewToken(), api.NewToken()
	if a == b {
		t.Fatal("two tokens alike")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q: %d bytes, %v; want 32 bytes base64url", a, len(raw), err)
	}
	line, err := api.TokenLine("acme", a)
	if err != nil || line != "acme "+sha(a) {
		t.Fatalf("TokenLine = %q, %v", line, err)
	}
	if _, err := api.TokenLine("a b", a); !errors.Is(err, api.ErrTenant) {
		t.Errorf("bad tenant: %v", err)
	}

	// Round trip: the line lets the token in.
	ts := newServer(t, api.Config{Tokens: mustTokens(t, line+"\n")})
	if res := query(t, ts.URL, indicatorQuery, nil, "Authorization: Bearer "+a); len(res.Errors) > 0 {
		t.Errorf("token of the new line refused: %s", res.raw)
	}
}

func TestIsLoopback(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:8080":   true,
		"127.0.0.2:8080":   true,
		"[::1]:8080":       true,
		"localhost:8080":   true,
		"LOCALHOST:80":     true,
		"localhost":        true,
		"127.0.0.1":        true,
		":8080":            false,
		"0.0.0.0:8080":     false,
		"[::]:8080":        false,
		"10.0.0.1:8080":    false,
		"192.168.1.2:8080": false,
		"example.com:8080": false,
		"":                 false,
		"[fe80::1%lo]:80":  false,
	}
	for addr, want := range cases {
		if got := api.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestTokenMode(t *testing.T) {
	acmeTok, globexTok := api.NewToken(), api.NewToken()
	tokens := mustTokens(t, "acme "+sha(acmeTok)+"\nglobex "+sha(globexTok)+"\n")
	ts := newServer(t, api.Config{Tokens: tokens})

	refused := []struct {
		name    string
		headers []string
		wwwErr  bool
	}{
		{"no token", nil, false},
		{"no token, tenant header", []string{"X-Tenant-Id: acme"}, false},
		{"unknown token", []string{"Authorization: Bearer " + api.NewToken()}, true},
		{"hash as token", []string{"Authorization: Bearer " + sha(acmeTok)}, true},
		{"token with a suffix", []string{"Authorization: Bearer " + acmeTok + "x"}, true},
		{"basic scheme", []string{"Authorization: Basic " + acmeTok}, false},
		{"no scheme", []string{"Authorization: " + acmeTok}, false},
		{"empty bearer", []string{"Authorization: Bearer "}, false},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			res := query(t, ts.URL, indicatorQuery, nil, c.headers...)
			if res.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", res.status, res.raw)
			}
			if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
			}
			if res.Data != nil || strings.Contains(res.raw, `"data"`) || len(res.Errors) != 1 {
				t.Errorf("body %s, want one error and no data", res.raw)
			}
		})
	}

	// A token sees its own tenant, whatever X-Tenant-Id says.
	for _, c := range []struct{ token, tenant string }{{acmeTok, "acme"}, {globexTok, "globex"}} {
		want := oracle(c.tenant, filters{})
		for _, other := range []string{"", "acme", "globex", "default", "not valid!"} {
			h := []string{"Authorization: Bearer " + c.token}
			if other != "" {
				h = append(h, "X-Tenant-Id: "+other)
			}
			got := indicatorOf(t, ts.URL, nil, h...)
			if !sameIndicator(got, want) {
				t.Errorf("token of %s with X-Tenant-Id %q: got %s, want %s", c.tenant, other, show(got), show(want))
			}
		}
	}
	// The scheme is case-insensitive.
	if res := query(t, ts.URL, indicatorQuery, nil, "Authorization: bearer "+acmeTok); res.status != 200 {
		t.Errorf("lowercase scheme: %d", res.status)
	}
	// Health and metrics need no token: they hold no tenant data beyond what
	// the operator's Prometheus scrapes.
	for _, path := range []string{"/healthz", "/readyz", "/graphql"} {
		if res, err := http.Get(ts.URL + path); err != nil || res.StatusCode != 200 {
			t.Errorf("GET %s: %v %v", path, res.StatusCode, err)
		}
	}
}

func TestOpenMode(t *testing.T) {
	ts := newServer(t, api.Config{})
	for _, tenant := range []string{"acme", "globex", "default", "nobody"} {
		got := indicatorOf(t, ts.URL, nil, "X-Tenant-Id: "+tenant)
		if want := oracle(tenant, filters{}); !sameIndicator(got, want) {
			t.Errorf("X-Tenant-Id %s: got %s, want %s", tenant, show(got), show(want))
		}
	}
	if got, want := indicatorOf(t, ts.URL, nil), oracle("default", filters{}); !sameIndicator(got, want) || want.ConnectedUsersCount == 0 {
		t.Errorf("no header: got %s, want the default tenant's %s", show(got), show(want))
	}
	// A token is not needed, and not looked at.
	if got, want := indicatorOf(t, ts.URL, nil, "Authorization: Bearer whatever", "X-Tenant-Id: acme"), oracle("acme", filters{}); !sameIndicator(got, want) {
		t.Errorf("with a token: got %s", show(got))
	}

	for _, c := range []struct {
		name, rule string
		headers    []string
	}{
		{"bad character", "X-Tenant-Id: must be 1 to 64 characters of A-Z a-z 0-9 _ -", []string{"X-Tenant-Id: ac.me"}},
		{"too long", "X-Tenant-Id: must be 1 to 64", []string{"X-Tenant-Id: " + strings.Repeat("a", 65)}},
		{"empty", "X-Tenant-Id: must be 1 to 64", []string{"X-Tenant-Id: "}},
		{"twice", "X-Tenant-Id: must be given once", []string{"X-Tenant-Id: acme", "X-Tenant-Id: globex"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := query(t, ts.URL, indicatorQuery, nil, c.headers...)
			if res.status != http.StatusBadRequest || len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, c.rule) {
				t.Errorf("status %d, body %s; want 400 with %q", res.status, res.raw, c.rule)
			}
		})
	}
}

// TestNoSecretLogged runs good and bad requests with debug logs on and
// looks for the tokens and their hashes in the logs.
func TestNoSecretLogged(t *testing.T) {
	var logs testenv.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	good, bad := api.NewToken(), api.NewToken()
	ts := newServer(t, api.Config{Tokens: mustTokens(t, "acme "+sha(good)), Logger: logger, RateLimit: 1, RateBurst: 1})

	query(t, ts.URL, indicatorQuery, nil, "Authorization: Bearer "+good)
	query(t, ts.URL, indicatorQuery, nil, "Authorization: Bearer "+good) // 429
	query(t, ts.URL, indicatorQuery, nil, "Authorization: Bearer "+bad)
	query(t, ts.URL, "{ broken", nil, "Authorization: Bearer "+bad)
	query(t, ts.URL, indicatorQuery, nil)

	out := logs.String()
	if !strings.Contains(out, "request refused") || !strings.Contains(out, "code=429") {
		t.Fatalf("the logs miss the requests:\n%s", out)
	}
	for _, secret := range []string{good, bad, sha(good), sha(bad), sha(good)[:16]} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret is in the logs:\n%s", out)
		}
	}
}
