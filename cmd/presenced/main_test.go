package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestTokenCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"token", "acme"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	tok := strings.TrimPrefix(lines[0], "token: ")
	sum := sha256.Sum256([]byte(tok))
	if want := "acme " + hex.EncodeToString(sum[:]); lines[len(lines)-1] != want {
		t.Fatalf("tokens line %q, want %q", lines[len(lines)-1], want)
	}
	if code := run([]string{"token", "bad tenant!"}, nil, &out, &errOut); code != 2 {
		t.Fatalf("bad tenant: exit %d", code)
	}
}

func TestBadFlags(t *testing.T) {
	env := map[string]string{"PRESENCE_SESSION_TTL": "soon"}
	var out, errOut bytes.Buffer
	if code := run(nil, func(k string) string { return env[k] }, &out, &errOut); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), "PRESENCE_SESSION_TTL") {
		t.Fatalf("the error should name the variable: %s", errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"-http-addr", "0.0.0.0:8080", "-data-dir", t.TempDir(), "-nats-listen", "127.0.0.1:-1"}, func(string) string { return "" }, &out, &errOut); code != 1 {
		t.Fatalf("open mode on all interfaces: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "insecure-open") {
		t.Fatalf("the error should name -insecure-open: %s", errOut.String())
	}
}
