package api

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Config configures a Server. Only Engine is required.
type Config struct {
	// Engine answers the queries and feeds the metrics.
	Engine Engine
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
	// GET /api/history and the dashboard's chart; HistoryWindow is how far
	// back the samples go. Zero means DefaultHistoryInterval and
	// DefaultHistoryWindow.
	HistoryInterval time.Duration
	HistoryWindow   time.Duration
}

// Defaults of the zero Config fields.
const (
	DefaultQueryTimeout = 5 * time.Second
)

// Defaults of the WebSocket fields of Config.
const (
	DefaultSubscriptionsPerSocket = 100
	DefaultSubscriptionsPerClient = 1000
	DefaultInitTimeout            = 3 * time.Second
	DefaultSocketWriteTimeout     = 10 * time.Second
)

// Defaults of the history fields of Config: one sample every 5 s for 15
// minutes, the dashboard's chart.
const (
	DefaultHistoryInterval = 5 * time.Second
	DefaultHistoryWindow   = 15 * time.Minute
)
