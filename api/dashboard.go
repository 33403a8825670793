package api

import (
	"embed"
	"net/http"
	"sync"
)

// The dashboard (GET /) is plain HTML, CSS and JavaScript, embedded: no
// CDN, no build step. It speaks graphql-transport-ws itself for the live
// numbers, sends its breakdown queries over the same socket, and reads
// GET /api/history for its chart.
//
//go:embed dashboard
var dashboardFS embed.FS

// dashboardCSP keeps the dashboard to its own files; unlike GraphiQL it
// needs no inline style. connect-src 'self' admits the WebSocket of the same
// host.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var loadDashboardAssets = sync.OnceValue(func() map[string]*asset { return assetsOf(dashboardFS, "dashboard") })

func (s *Server) serveDashboard(w http.ResponseWriter, r *http.Request) {
	writeHTML(w, s.board, dashboardCSP)
}

func serveDashboardAsset(w http.ResponseWriter, r *http.Request) {
	serveAssetOf(loadDashboardAssets(), w, r)
}
