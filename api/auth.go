package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/presenced/presenced/presence"
)

// Tokens is the parsed tokens file of contract 3.3: which tenant each bearer
// token may query. It holds only sha256 hashes, never tokens. A Tokens is
// read-only once built and safe for concurrent use.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	tenant string
	hash   [sha256.Size]byte
	key    string // rate limiter key: "token:" + hex hash, never the token
}

// LoadTokens reads a tokens file: one `<tenantId> <sha256 hex>` line per
// token, `#` starting a comment, blank lines ignored. Its errors name the file,
// the line and the rule broken, and match ErrTokensFile.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api: tokens file: %w", err)
	}
	defer f.Close()
	t, err := parseTokens(f, path)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// ParseTokens is LoadTokens for a tokens file already open.
func ParseTokens(r io.Reader) (*Tokens, error) { return parseTokens(r, "") }

func parseTokens(r io.Reader, path string) (*Tokens, error) {
	t := &Tokens{}
	seen := make(map[[sha256.Size]byte]int) // hash -> line
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i] // neither tenant ids nor hex contain '#'
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		bad := func(rule string) error { return &LineError{Path: path, Line: line, Rule: rule} }
		if len(fields) != 2 {
			return nil, bad(fmt.Sprintf("want 2 fields `<tenantId> <sha256 hex>`, got %d", len(fields)))
		}
		tenant, hexHash := fields[0], fields[1]
		if !presence.ValidTenant(tenant) {
			return nil, bad("tenant id " + tenantRule)
		}
		if !isLowerHex(hexHash, 2*sha256.Size) {
			return nil, bad("hash must be 64 lowercase hex characters (the sha256 of the token)")
		}
		var e tokenEntry
		hex.Decode(e.hash[:], []byte(hexHash)) // checked by isLowerHex
		if prev, dup := seen[e.hash]; dup {
			return nil, bad(fmt.Sprintf("hash already given on line %d: a token maps to one tenant", prev))
		}
		seen[e.hash] = line
		e.tenant, e.key = tenant, "token:"+hexHash
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, &LineError{Path: path, Line: line + 1, Rule: err.Error()}
	}
	if len(t.entries) == 0 {
		// An empty file would lock every client out; that is a mistake more
		// often than a wish.
		return nil, &LineError{Path: path, Line: line, Rule: "no token line in the file"}
	}
	return t, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Len returns how many tokens the file holds.
func (t *Tokens) Len() int { return len(t.entries) }

// lookup returns the entry of token. Its time depends only on the number of
// entries, not on which entry matches nor on how much of a hash does: every
// entry is compared in full, and the match is picked without a branch.
func (t *Tokens) lookup(token string) (tokenEntry, bool) {
	sum := sha256.Sum256([]byte(token))
	found, idx := 0, 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		found |= eq
	}
	if found == 0 {
		return tokenEntry{}, false
	}
	return t.entries[idx], true
}

// NewToken returns a new random bearer token: 32 bytes from crypto/rand,
// base64url without padding (43 characters).
func NewToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenLine returns the tokens-file line that lets token query tenant:
// `<tenant> <sha256 of token, lowercase hex>`.
func TokenLine(tenant, token string) (string, error) {
	if !presence.ValidTenant(tenant) {
		return "", fmt.Errorf("%w: %q %s", ErrTenant, tenant, tenantRule)
	}
	sum := sha256.Sum256([]byte(token))
	return tenant + " " + hex.EncodeToString(sum[:]), nil
}

// IsLoopback reports whether an HTTP listen address ("host:port") only
// accepts connections from this machine: a loopback IP or "localhost". An
// empty host (":8080") listens on every interface and is not loopback; so is
// a host name other than localhost, whatever it resolves to now.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr // no port given
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i] // zone of a link-local address
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultTenant is the tenant of an open-mode request without X-Tenant-Id.
const DefaultTenant = "default"

// TenantHeader is the header that names the tenant in open mode.
const TenantHeader = "X-Tenant-Id"

// withTenant returns ctx carrying the tenant every query of the request is
// answered for.
func withTenant(ctx context.Context, tenant string) context.Context {
	return withExec(ctx, &execInfo{tenant: tenant})
}

func tenantFrom(ctx context.Context) (string, bool) {
	info, ok := execFrom(ctx)
	if !ok {
		return "", false
	}
	return info.tenant, true
}

// identity is who a request is: the tenant it reads and the key of its rate
// limiter.
type identity struct {
	tenant  string
	limiter string
}

// authFailure is why identify refused a client. Each transport answers it
// in its own words: an HTTP status, a WebSocket close code.
type authFailure int

const (
	authNoToken      authFailure = iota + 1 // token mode: no bearer token
	authUnknownToken                        // token mode: a token the file does not hold
	authTenantTwice                         // open mode: X-Tenant-Id given more than once
	authBadTenant                           // open mode: X-Tenant-Id breaks the tenant rule
)

// identify resolves who a client is by contract 3.3 from what it presents,
// the headers of a request or the payload of connection_init alike. In
// token mode the bearer token of authorization decides the tenant, and
// tenant is ignored: a token reads its own tenant and no other. In open mode the tenant is the one value of tenant,
// trimmed, or DefaultTenant when tenantSet is false.
func (s *Server) identify(authorization string, tenant []string, tenantSet bool) (identity, authFailure) {
	if s.tokens != nil {
		token, ok := bearer(authorization)
		if !ok {
			return identity{}, authNoToken
		}
		e, ok := s.tokens.lookup(token)
		if !ok {
			return identity{}, authUnknownToken
		}
		return identity{tenant: e.tenant, limiter: e.key}, 0
	}
	if !tenantSet {
		return identity{tenant: DefaultTenant, limiter: "tenant:" + DefaultTenant}, 0
	}
	if len(tenant) != 1 {
		return identity{}, authTenantTwice
	}
	t := strings.TrimSpace(tenant[0])
	if !presence.ValidTenant(t) {
		return identity{}, authBadTenant
	}
	return identity{tenant: t, limiter: "tenant:" + t}, 0
}

// logRefused logs a client refused for its token: an unknown one at warn
// level, at most about once a second so that a flood cannot fill the logs;
// a missing one only at debug level (a browser opening GraphiQL sends
// none). The token itself is never logged.
func (s *Server) logRefused(ctx context.Context, msg string, fail authFailure, attrs ...any) {
	level, reason := slog.LevelDebug, reasonNoToken
	if fail == authUnknownToken {
		reason = reasonUnknownToken
		if s.refusals.Allow() {
			level = slog.LevelWarn
		}
	}
	s.log.Log(ctx, level, msg, append([]any{"reason", reason}, attrs...)...)
}

// authenticate resolves the identity of r by contract 3.3 (see identify):
// the Authorization header in token mode, X-Tenant-Id in open mode. On
// failure it has written the response (401 or 400) and returns false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (identity, bool) {
	tenant, tenantSet := r.Header[TenantHeader]
	id, fail := s.identify(r.Header.Get("Authorization"), tenant, tenantSet)
	switch fail {
	case 0:
		return id, true
	case authNoToken:
		s.unauthorized(w, r, fail, "api: Authorization: a bearer token is required")
	case authUnknownToken:
		s.unauthorized(w, r, fail, "api: Authorization: unknown bearer token")
	case authTenantTwice:
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "api: "+TenantHeader+": must be given once")
	case authBadTenant:
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "api: "+TenantHeader+": "+tenantRule)
	}
	return identity{}, false
}

// unauthorized logs the refusal (see logRefused) and answers 401 with the
// challenge of RFC 6750.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, fail authFailure, msg string) {
	s.logRefused(r.Context(), "api: request refused", fail, "remote", r.RemoteAddr, "path", r.URL.Path)
	w.Header().Set("WWW-Authenticate", `Bearer realm="presenced"`)
	writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", msg)
}

const (
	reasonNoToken      = "missing bearer token"
	reasonUnknownToken = "unknown bearer token"
)

// bearer extracts the token of an "Authorization: Bearer <token>" header; the
// scheme is matched case-insensitively (RFC 7235).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
