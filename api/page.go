package api

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// The GraphiQL page and its assets are embedded so that the page works with
// no network: a presence console on a closed network must not need a CDN.
//
//go:embed graphiql
var graphiqlFS embed.FS

// pageCSP keeps the page to its own assets. Styles may be inline because
// GraphiQL sets style attributes; fonts and images are data: URLs in its CSS.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// renderHTML executes the page template at path in fsys once, for the
// server's mode (whether it asks for a token).
func renderHTML(fsys fs.FS, path string, tokens bool) ([]byte, error) {
	t, err := template.ParseFS(fsys, path)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, struct{ Tokens bool }{tokens}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeHTML writes a rendered page under its content security policy.
func writeHTML(w http.ResponseWriter, body []byte, csp string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("Cache-Control", "no-cache")
	w.Write(body)
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) { writeHTML(w, s.page, pageCSP) }

// asset is one embedded file, with its gzip form made once.
type asset struct {
	body, gz []byte
	ctype    string
	etag     string
}

// loadAssets reads and compresses the assets once per process, on first use:
// the bundle is 1.5 MB and servers in tests need not pay for it.
var loadAssets = sync.OnceValue(func() map[string]*asset { return assetsOf(graphiqlFS, "graphiql") })

// assetsOf reads the files of dir in fsys but its page template and README,
// each with its gzip form.
func assetsOf(fsys embed.FS, dir string) map[string]*asset {
	m := map[string]*asset{}
	entries, _ := fs.ReadDir(fsys, dir)
	for _, e := range entries {
		name := e.Name()
		if name == "index.html" || name == "README.md" {
			continue // the template is served rendered
		}
		body, _ := fsys.ReadFile(dir + "/" + name)
		sum := sha256.Sum256(body)
		a := &asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		if a.ctype = mime.TypeByExtension(path.Ext(name)); a.ctype == "" {
			a.ctype = "text/plain; charset=utf-8" // the LICENSE files
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		a.gz = gz.Bytes()
		m[name] = a
	}
	return m
}

func serveAsset(w http.ResponseWriter, r *http.Request) { serveAssetOf(loadAssets(), w, r) }

// serveAssetOf serves the asset named by the request's {file}, gzipped when
// the client accepts it, with an ETag.
func serveAssetOf(assets map[string]*asset, w http.ResponseWriter, r *http.Request) {
	a := assets[r.PathValue("file")]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header lists gzip without
// refusing it (q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
