// Package api is the HTTP face of presenced: the GraphQL API of contract
// section 3 (POST /graphql), an offline GraphiQL page (GET /graphql), the
// bearer tokens and tenants of section 3.3, the Prometheus metrics of
// section 4 (GET /metrics), and /healthz and /readyz.
//
// It reads the engine through the small Engine interface and never changes
// it. The per-tenant gauges are read from engine.Stats at scrape time.
//
// A Server and a Tokens are safe for concurrent use. Each GraphQL request is
// answered for exactly one tenant: the token's in token mode, the X-Tenant-Id
// header's (or "default") in open mode.
//
//	e, _ := engine.New(engine.Config{})
//	tokens, err := api.LoadTokens("tokens.txt") // or nil: open mode
//	if err != nil { ... }
//	srv, err := api.New(api.Config{Engine: e, Tokens: tokens, Registry: reg})
//	if err != nil { ... }
//	hs := api.NewHTTPServer("127.0.0.1:8080", srv.Handler())
//	go hs.ListenAndServe()
package api
