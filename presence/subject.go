package presence

import "strings"

// MaxTenantLen is the length of the longest tenant id.
const MaxTenantLen = 64

// ValidTenant reports whether s is a tenant id: 1 to 64 characters of
// A-Z a-z 0-9 _ - (contract section 1).
func ValidTenant(s string) bool {
	if s == "" || len(s) > MaxTenantLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Subject returns the subject of the events of type t for tenant:
// <prefix>.<tenant>.<type>. prefix may have several tokens ("acme.presence").
func Subject(prefix, tenant string, t Type) (string, error) {
	switch {
	case !validPrefix(prefix):
		return "", fieldError("prefix", rulePrefix)
	case !ValidTenant(tenant):
		return "", fieldError("tenantId", ruleTenant)
	case t < Login || t >= NumTypes:
		return "", fieldError("type", ruleType)
	}
	return prefix + "." + tenant + "." + t.String(), nil
}

// ParseSubject splits a subject <prefix>.<tenantId>.<type>. It does not
// allocate unless it fails.
//
// On error it still returns the parts that are valid, the others being "" and
// 0, so that the caller can build the dead-letter subject of the message (see
// DeadLetterSubject). The error is a *FieldError for "subject" (not under
// prefix), "tenantId" or "type", the first that is wrong.
func ParseSubject(prefix, subject string) (tenant string, t Type, err error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok || !strings.HasPrefix(rest, ".") {
		return "", 0, fieldError("subject", "must be "+prefix+".<tenantId>.<type>")
	}
	tenant, typ, _ := strings.Cut(rest[1:], ".")
	t, _ = ParseType(typ) // a missing or extra token is no type
	if !ValidTenant(tenant) {
		tenant, err = "", fieldError("tenantId", ruleTenant)
	}
	if t == 0 && err == nil {
		err = fieldError("type", ruleType)
	}
	return tenant, t, err
}

// DeadLetterSubject returns the subject a rejected message on subject is
// copied to (contract section 1.4): deadletter.<prefix>.<tenantId>.<type>,
// with _ for a tenant or type that subject lacks or has wrong.
func DeadLetterSubject(prefix, subject string) string {
	tenant, t, _ := ParseSubject(prefix, subject)
	if tenant == "" {
		tenant = "_"
	}
	return "deadletter." + prefix + "." + tenant + "." + t.String()
}

// validPrefix reports whether p is a subject of literal tokens, so that
// <p>.*.* matches the events and nothing else.
func validPrefix(p string) bool {
	prev := byte('.') // an empty token is invalid, the first one too
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '.' && prev == '.', c <= ' ', c == 0x7f, c == '*', c == '>':
			return false
		}
		prev = c
	}
	return prev != '.'
}
