package api

import (
	"errors"
	"strconv"
)

// Sentinel errors of the package, matched with errors.Is.
var (
	// ErrConfig is matched by every error New returns for a bad Config.
	ErrConfig = errors.New("api: invalid config")
	// ErrTokensFile is matched by every error LoadTokens and ParseTokens
	// return for a tokens file that breaks the format of contract 3.3.
	ErrTokensFile = errors.New("api: invalid tokens file")
	// ErrTenant is matched by the error TokenLine returns for a tenant id
	// outside the rule of contract section 1.
	ErrTenant = errors.New("api: invalid tenant id")
)

// tenantRule is the tenant id rule of contract section 1, quoted in errors.
const tenantRule = "must be 1 to 64 characters of A-Z a-z 0-9 _ -"

// ConfigError reports the Config field that New rejects and the rule it
// breaks.
type ConfigError struct {
	Field string // "RateLimit", "QueryTimeout", ...
	Rule  string // what the field must be
}

// Error returns "api: Config.<Field>: <Rule>".
func (e *ConfigError) Error() string { return "api: Config." + e.Field + ": " + e.Rule }

// Unwrap makes every ConfigError match ErrConfig.
func (e *ConfigError) Unwrap() error { return ErrConfig }

// LineError reports the line of a tokens file that breaks the format and the
// rule it breaks. The line's text is never quoted: it holds a secret's hash.
type LineError struct {
	Path string // the file, or "" when parsed from a reader
	Line int    // 1-based
	Rule string // what the line must be
}

// Error returns "api: tokens file <Path>:<Line>: <Rule>", or "line <Line>"
// without a path.
func (e *LineError) Error() string {
	where := "line " + strconv.Itoa(e.Line)
	if e.Path != "" {
		where = e.Path + ":" + strconv.Itoa(e.Line)
	}
	return "api: tokens file " + where + ": " + e.Rule
}

// Unwrap makes every LineError match ErrTokensFile.
func (e *LineError) Unwrap() error { return ErrTokensFile }

// limitError is the GraphQL error of an argument over its limit. Its
// extensions let a client tell it apart from other errors without parsing
// the message.
type limitError struct {
	arg   string // "filters.userIds"
	limit int
	got   int
}

func (e *limitError) Error() string {
	return "api: " + e.arg + ": at most " + strconv.Itoa(e.limit) + " values, got " + strconv.Itoa(e.got)
}

// Extensions is read by graphql-go into the error's "extensions" entry.
func (e *limitError) Extensions() map[string]any {
	return map[string]any{"code": "LIMIT_EXCEEDED", "argument": e.arg, "limit": e.limit}
}

// subscriptionLimitError is the GraphQL error of a subscription over a
// limit of Config.
type subscriptionLimitError struct {
	per   string // "WebSocket", "token" or "tenant"
	limit int
}

func (e *subscriptionLimitError) Error() string {
	return "api: subscriptions: at most " + strconv.Itoa(e.limit) + " open per " + e.per
}

// Extensions is read by graphql-go into the error's "extensions" entry.
func (e *subscriptionLimitError) Extensions() map[string]any {
	return map[string]any{"code": "LIMIT_EXCEEDED", "limit": e.limit, "per": e.per}
}

var errNotSocket = errors.New("api: subscriptions are served over WebSocket at /graphql with the " + WSProtocol + " protocol")

// argError is the GraphQL error of an argument that breaks a rule.
type argError struct {
	arg  string
	rule string
}

func (e *argError) Error() string { return "api: " + e.arg + ": " + e.rule }

// Extensions is read by graphql-go into the error's "extensions" entry.
func (e *argError) Extensions() map[string]any {
	return map[string]any{"code": "BAD_USER_INPUT", "argument": e.arg}
}

// unavailableError is the GraphQL error of a request whose tenant no
// instance can answer now (contract section 7).
type unavailableError struct{}

func (*unavailableError) Error() string { return unavailable }

// Extensions is read by graphql-go into the error's "extensions" entry.
func (*unavailableError) Extensions() map[string]any { return map[string]any{"code": "UNAVAILABLE"} }
