package api

import (
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Config configures a Server. Engine, or Router, is required.
type Config struct {
	// Engine answers the queries and feeds the metrics, unless there is a
	// Router.
	Engine Engine
	// Router places the tenants when several instances share them
	// (contract section 7): it gives the engine of each tenant held here,
	// and reaches the others. Nil: Engine answers every tenant.
	Router Router
	// Tokens are the bearer tokens of contract 3.3. Nil is open mode: the
	// tenant is the X-Tenant-Id header, or "default". The caller decides
	// whether open mode may listen where it does (see IsLoopback).
	Tokens *Tokens
	// Ready says whether /readyz answers 200 (else 503). Nil means always
	// ready.
	Ready func() bool
	// Registry receives the API's collectors and is what /metrics serves, so
	// that the caller may register its own there too. Nil means a new empty
	// registry (see Server.Registry).
	Registry *prometheus.Registry
	// Logger receives the API's logs; no token or secret is ever logged.
	// Nil means slog.Default().
	Logger *slog.Logger
	// RateLimit is the GraphQL requests per second allowed to one token (one
	// tenant in open mode); a request over it gets 429 with Retry-After.
	// Zero means no limit (contract section 5), as rate.Inf does.
	RateLimit rate.Limit
	// RateBurst is how many requests a client may send at once after a
	// quiet period. Zero means one second's worth of RateLimit (at least 1).
	RateBurst int
	// QueryTimeout bounds the execution of one GraphQL request. Zero means
	// DefaultQueryTimeout.
	QueryTimeout time.Duration

	// SubscriptionsPerSocket bounds the subscriptions open on one WebSocket;
	// one more gets an error message naming the limit. Zero means
	// DefaultSubscriptionsPerSocket.
	SubscriptionsPerSocket int
	// SubscriptionsPerClient bounds the subscriptions open over all the
	// WebSockets of one token (one tenant in open mode). Zero means
	// DefaultSubscriptionsPerClient.
	SubscriptionsPerClient int
	// InitTimeout is how long a WebSocket may take to send connection_init
	// before it is closed with 4408. Zero means DefaultInitTimeout (3 s,
	// contract 6.2).
	InitTimeout time.Duration
	// SocketWriteTimeout is how long one message to a WebSocket may take to
	// be written; past it the client, which does not read, is dropped with
	// 4429. Zero means DefaultSocketWriteTimeout.
	SocketWriteTimeout time.Duration
	// HistoryInterval is how often Run samples each tenant's totals for
	// GET /api/history and the dashboard's chart. Zero means
	// DefaultHistoryInterval.
	HistoryInterval time.Duration
	// HistoryWindow is how far back the samples go: 1 to 10,000
	// HistoryIntervals. Zero means DefaultHistoryWindow.
	HistoryWindow time.Duration
}

// Defaults of the zero Config fields.
const (
	DefaultQueryTimeout = 5 * time.Second

	DefaultSubscriptionsPerSocket = 100
	DefaultSubscriptionsPerClient = 1000
	DefaultInitTimeout            = 3 * time.Second
	DefaultSocketWriteTimeout     = 10 * time.Second

	// One sample every 5 s for 15 minutes: the dashboard's chart.
	DefaultHistoryInterval = 5 * time.Second
	DefaultHistoryWindow   = 15 * time.Minute
)

// maxDefaultBurst caps the default RateBurst, one second's worth of
// RateLimit, when RateLimit is high (rate.Inf among them).
const maxDefaultBurst = 1e6

// withDefaults returns c with its zero fields set to their defaults. A field
// that breaks its rule is left as it is, for validate to name.
func (c Config) withDefaults() Config {
	if c.RateLimit == 0 {
		c.RateLimit = rate.Inf
	}
	if c.RateBurst == 0 {
		c.RateBurst = max(1, int(math.Min(math.Ceil(float64(c.RateLimit)), maxDefaultBurst)))
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.QueryTimeout, DefaultQueryTimeout},
		{&c.InitTimeout, DefaultInitTimeout},
		{&c.SocketWriteTimeout, DefaultSocketWriteTimeout},
		{&c.HistoryInterval, DefaultHistoryInterval},
		{&c.HistoryWindow, DefaultHistoryWindow},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.SubscriptionsPerSocket == 0 {
		c.SubscriptionsPerSocket = DefaultSubscriptionsPerSocket
	}
	if c.SubscriptionsPerClient == 0 {
		c.SubscriptionsPerClient = DefaultSubscriptionsPerClient
	}
	if c.Ready == nil {
		c.Ready = func() bool { return true }
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate returns a *ConfigError naming the first field of c, a Config
// with its defaults (withDefaults), that breaks its rule, and the rule.
func (c Config) validate() error {
	const notNegative = "must not be negative (0 is the default)"
	switch {
	case c.Engine == nil && c.Router == nil:
		return &ConfigError{Field: "Engine", Rule: "required (or a Router)"}
	case c.Tokens != nil && c.Tokens.Len() == 0:
		return &ConfigError{Field: "Tokens", Rule: "must hold at least one token (nil is open mode)"}
	case c.RateLimit < 0 || math.IsNaN(float64(c.RateLimit)):
		return &ConfigError{Field: "RateLimit", Rule: "must not be negative (0 is no limit)"}
	case c.RateBurst < 0:
		return &ConfigError{Field: "RateBurst", Rule: notNegative}
	}
	for _, f := range []struct {
		field    string
		negative bool
	}{
		{"QueryTimeout", c.QueryTimeout < 0},
		{"InitTimeout", c.InitTimeout < 0},
		{"SocketWriteTimeout", c.SocketWriteTimeout < 0},
		{"HistoryInterval", c.HistoryInterval < 0},
		{"HistoryWindow", c.HistoryWindow < 0},
	} {
		if f.negative {
			return &ConfigError{Field: f.field, Rule: notNegative}
		}
	}
	if c.HistoryWindow < c.HistoryInterval || c.HistoryWindow/c.HistoryInterval > maxHistorySamples {
		return &ConfigError{Field: "HistoryWindow", Rule: "must hold 1 to " + strconv.Itoa(maxHistorySamples) + " HistoryIntervals"}
	}
	switch {
	case c.SubscriptionsPerSocket < 0:
		return &ConfigError{Field: "SubscriptionsPerSocket", Rule: notNegative}
	case c.SubscriptionsPerClient < 0:
		return &ConfigError{Field: "SubscriptionsPerClient", Rule: notNegative}
	}
	return nil
}
