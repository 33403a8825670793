package api

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/engine"
)

// TestIdentify checks the one identity resolution of HTTP and WebSocket.
func TestIdentify(t *testing.T) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tok := NewToken()
	line, _ := TokenLine("acme", tok)
	tokens, err := ParseTokens(strings.NewReader(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	open, err := New(Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	closed, err := New(Config{Engine: e, Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	key := tokens.entries[0].key
	for _, tc := range []struct {
		name          string
		srv           *Server
		authorization string
		tenant        []string
		tenantSet     bool
		want          identity
		fail          authFailure
	}{
		{"open, no tenant", open, "", nil, false, identity{"default", "tenant:default"}, 0},
		{"open, a tenant", open, "", []string{" globex "}, true, identity{"globex", "tenant:globex"}, 0},
		{"open, a token is ignored", open, "Bearer " + tok, nil, false, identity{"default", "tenant:default"}, 0},
		{"open, tenant twice", open, "", []string{"a", "b"}, true, identity{}, authTenantTwice},
		{"open, tenant set but empty", open, "", nil, true, identity{}, authTenantTwice},
		{"open, bad tenant", open, "", []string{"a b"}, true, identity{}, authBadTenant},
		{"token", closed, "Bearer " + tok, nil, false, identity{"acme", key}, 0},
		{"token, scheme in any case", closed, "bEaReR  " + tok + " ", nil, false, identity{"acme", key}, 0},
		{"token, X-Tenant-Id ignored", closed, "Bearer " + tok, []string{"globex"}, true, identity{"acme", key}, 0},
		{"no token", closed, "", []string{"acme"}, true, identity{}, authNoToken},
		{"not bearer", closed, "Basic " + tok, nil, false, identity{}, authNoToken},
		{"empty bearer", closed, "Bearer ", nil, false, identity{}, authNoToken},
		{"unknown token", closed, "Bearer nope", nil, false, identity{}, authUnknownToken},
	} {
		id, fail := tc.srv.identify(tc.authorization, tc.tenant, tc.tenantSet)
		if id != tc.want || fail != tc.fail {
			t.Errorf("%s: %+v %d, want %+v %d", tc.name, id, fail, tc.want, tc.fail)
		}
	}
}
