package presence_test

import (
	"strings"
	"testing"

	"github.com/presenced/presenced/presence"
)

func TestValidTenant(t *testing.T) {
	for _, tt := range []struct {
		tenant string
		valid  bool
	}{
		{"acme", true},
		{"A-z_0-9", true},
		{"_", true},
		{"-", true},
		{strings.Repeat("t", 64), true},
		{strings.Repeat("t", 65), false},
		{"", false},
		{"a.b", false},
		{"a*", false},
		{">", false},
		{"a b", false},
		{"é", false},
		{"a/b", false},
	} {
		if got := presence.ValidTenant(tt.tenant); got != tt.valid {
			t.Errorf("ValidTenant(%q) = %v, want %v", tt.tenant, got, tt.valid)
		}
	}
}

func TestSubject(t *testing.T) {
	for _, tt := range []struct {
		name, prefix, tenant string
		typ                  presence.Type
		want, field          string
	}{
		{"default prefix", "presence", "acme", presence.Login, "presence.acme.login", ""},
		{"dotted prefix", "acme.presence", "t-1", presence.Heartbeat, "acme.presence.t-1.heartbeat", ""},
		{"status", "p", "t", presence.StatusChange, "p.t.status", ""},
		{"slots", "p", "t", presence.Slots, "p.t.slots", ""},
		{"profile", "p", "t", presence.Profile, "p.t.profile", ""},
		{"logout", "p", "t", presence.Logout, "p.t.logout", ""},
		{"empty prefix", "", "acme", presence.Login, "", "prefix"},
		{"prefix with an empty token", "a..b", "acme", presence.Login, "", "prefix"},
		{"prefix ending in a dot", "presence.", "acme", presence.Login, "", "prefix"},
		{"prefix with a wildcard", "presence.*", "acme", presence.Login, "", "prefix"},
		{"prefix with a space", "pre sence", "acme", presence.Login, "", "prefix"},
		{"bad tenant", "presence", "a.b", presence.Login, "", "tenantId"},
		{"no tenant", "presence", "", presence.Login, "", "tenantId"},
		{"no type", "presence", "acme", 0, "", "type"},
		{"type out of range", "presence", "acme", presence.NumTypes, "", "type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := presence.Subject(tt.prefix, tt.tenant, tt.typ)
			if tt.field != "" {
				checkFieldError(t, err, tt.field)
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Subject = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	for _, tt := range []struct {
		name, prefix, subject string
		tenant                string // the best-known tenant, even on error
		typ                   presence.Type
		field                 string
		deadLetter            string
	}{
		{"login", "presence", "presence.acme.login", "acme", presence.Login, "", "deadletter.presence.acme.login"},
		{"dotted prefix", "acme.presence", "acme.presence.t_1.heartbeat", "t_1", presence.Heartbeat, "", "deadletter.acme.presence.t_1.heartbeat"},
		{"unknown type", "presence", "presence.acme.dance", "acme", 0, "type", "deadletter.presence.acme._"},
		{"type in upper case", "presence", "presence.acme.LOGIN", "acme", 0, "type", "deadletter.presence.acme._"},
		{"no type", "presence", "presence.acme", "acme", 0, "type", "deadletter.presence.acme._"},
		{"empty type", "presence", "presence.acme.", "acme", 0, "type", "deadletter.presence.acme._"},
		{"extra token", "presence", "presence.acme.login.x", "acme", 0, "type", "deadletter.presence.acme._"},
		{"bad tenant", "presence", "presence.ac$me.login", "", presence.Login, "tenantId", "deadletter.presence._.login"},
		{"long tenant", "presence", "presence." + strings.Repeat("t", 65) + ".slots", "", presence.Slots, "tenantId", "deadletter.presence._.slots"},
		{"empty tenant", "presence", "presence..login", "", presence.Login, "tenantId", "deadletter.presence._.login"},
		{"bad tenant and type", "presence", "presence.a*.b", "", 0, "tenantId", "deadletter.presence._._"},
		{"other prefix", "presence", "other.acme.login", "", 0, "subject", "deadletter.presence._._"},
		{"prefix as a token prefix", "presence", "presencex.acme.login", "", 0, "subject", "deadletter.presence._._"},
		{"prefix alone", "presence", "presence", "", 0, "subject", "deadletter.presence._._"},
		{"part of a dotted prefix", "acme.presence", "acme.acme.login", "", 0, "subject", "deadletter.acme.presence._._"},
		{"empty", "presence", "", "", 0, "subject", "deadletter.presence._._"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tenant, typ, err := presence.ParseSubject(tt.prefix, tt.subject)
			if tt.field == "" && err != nil {
				t.Errorf("ParseSubject: %v", err)
			} else if tt.field != "" {
				checkFieldError(t, err, tt.field)
			}
			if tenant != tt.tenant || typ != tt.typ {
				t.Errorf("ParseSubject = %q, %v; want %q, %v", tenant, typ, tt.tenant, tt.typ)
			}
			if got := presence.DeadLetterSubject(tt.prefix, tt.subject); got != tt.deadLetter {
				t.Errorf("DeadLetterSubject = %q, want %q", got, tt.deadLetter)
			}
		})
	}
}

func TestSubjectRoundTrip(t *testing.T) {
	for typ := presence.Login; typ < presence.NumTypes; typ++ {
		subject, err := presence.Subject("a.b", "tenant", typ)
		if err != nil {
			t.Fatal(err)
		}
		tenant, got, err := presence.ParseSubject("a.b", subject)
		if err != nil || tenant != "tenant" || got != typ {
			t.Errorf("ParseSubject(%q) = %q, %v, %v", subject, tenant, got, err)
		}
	}
}

func TestParseSubjectAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocations differ under -cover and -race")
	}
	if n := testing.AllocsPerRun(100, func() {
		_, _, _ = presence.ParseSubject("acme.presence", "acme.presence.tenant.heartbeat")
	}); n != 0 {
		t.Errorf("ParseSubject allocates %v times", n)
	}
}
