// Package api is the HTTP face of presenced: the GraphQL API of contract
// sections 3 and 6 (POST /graphql; subscriptions and queries over WebSocket
// at GET /graphql with the graphql-transport-ws protocol), an offline
// GraphiQL page (GET /graphql), the live dashboard (GET /) and the history
// behind its chart (GET /api/history), the bearer tokens and tenants of
// section 3.3, the Prometheus metrics of section 4 (GET /metrics), and
// /healthz and /readyz.
//
// It reads the engine through the small Engine interface and never changes
// it. The per-tenant gauges are read from engine.Stats at scrape time. A
// subscription follows an engine.Watch: subscriptions of equal filters share
// one engine view, and none polls; each holds at most one value on its way
// to the client, so a client that does not read costs one value per
// subscription until it is dropped (close 4429), and never slows the engine
// or another client.
//
// Variables follow the GraphQL spec over HTTP and WebSocket alike (see
// coerceVariables): graphql-go runs the operation with the declared defaults
// filled in, and with the schema's default for an argument whose variable
// was declared without one and not sent.
//
// A Server and a Tokens are safe for concurrent use. Each GraphQL request,
// and each WebSocket, is answered for exactly one tenant, by one rule over
// HTTP and WebSocket alike: the token's in token mode; in open mode the
// X-Tenant-Id header's (over WebSocket, connection_init's payload's first),
// or "default". A request over its client's rate limit gets one refusal,
// written as 429 with Retry-After over HTTP and as a RATE_LIMITED error
// with retryAfterSeconds over WebSocket.
//
//	e, _ := engine.New(engine.Config{})
//	tokens, err := api.LoadTokens("tokens.txt") // or nil: open mode
//	if err != nil { ... }
//	srv, err := api.New(api.Config{Engine: e, Tokens: tokens, Registry: reg})
//	if err != nil { ... }
//	go srv.Run(ctx) // samples the history of the dashboard's chart
//	hs := srv.HTTPServer("127.0.0.1:8080") // timeouts; its Shutdown starts srv's
//	go hs.ListenAndServe()
//	...
//	srv.Shutdown(shutdownCtx) // WebSockets closed with 1001
//	hs.Shutdown(shutdownCtx)
package api
