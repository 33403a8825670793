package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/time/rate"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	brute "github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// BenchmarkGraphQLHTTP measures one connectedUsersIndicator over POST
// /graphql, served by the Handler the service serves (open mode, no rate
// limit, as bench/ runs it) over 1000 users: "http" end to end through a
// keep-alive loopback connection, "handler" calling ServeHTTP alone. The
// engine answers in 0.1 to 3 µs; the rest is the cost of HTTP, JSON and
// graphql-go.
//
//	go test -run XXX -bench GraphQLHTTP -benchmem -count 5 ./api/
func BenchmarkGraphQLHTTP(b *testing.B) {
	const users = 1000
	e, err := engine.New(engine.Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range brute.Events(rand.New(rand.NewPCG(81, 82)), []string{"acme"}, users, 10, 0) {
		e.Apply(d.Tenant, &d.Ev)
	}
	s, err := api.New(api.Config{Engine: e, RateLimit: rate.Inf, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	ts := httptest.NewServer(h)
	defer ts.Close()
	client := ts.Client()

	userIDs := make([]string, 10)
	for i := range userIDs {
		userIDs[i] = fmt.Sprint("u", i*97)
	}
	queries := []struct {
		name string
		f    *engine.Filter
	}{
		{"all", nil},
		{"groups+role", &engine.Filter{GroupIDs: []string{"g1", "g2"}, Roles: []presence.Role{presence.Operator}}},
		{"users=10", &engine.Filter{UserIDs: userIDs}},
	}
	for _, q := range queries {
		vars := map[string]any{}
		if q.f != nil {
			vars["f"] = testenv.FilterInput(q.f)
		}
		body, err := json.Marshal(map[string]any{"query": indicatorQuery, "variables": vars})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q.name+"/handler", func(b *testing.B) {
			r := bytes.NewReader(body)
			req := httptest.NewRequest(http.MethodPost, "/graphql", r)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(api.TenantHeader, "acme")
			w := &discardWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				clear(w.header)
				w.code = 0
				h.ServeHTTP(w, req)
			}
			if w.code != http.StatusOK {
				b.Fatalf("status %d", w.code)
			}
		})
		b.Run(q.name+"/http", func(b *testing.B) {
			r := bytes.NewReader(body)
			var out bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(body)
				req, err := http.NewRequest(http.MethodPost, ts.URL+"/graphql", r)
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(api.TenantHeader, "acme")
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out.Reset()
				_, err = io.Copy(&out, res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != http.StatusOK || !bytes.HasPrefix(out.Bytes(), []byte(`{"data"`)) {
					b.Fatalf("status %d, %v: %.300s", res.StatusCode, err, out.Bytes())
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps only the status code, so that
// the handler benchmark counts the handler's allocations alone.
type discardWriter struct {
	header http.Header
	code   int
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
