package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/presenced/presenced/bench/peer"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/presence"
)

// System names in the tables and charts.
const (
	SysHTTP   = "presenced (GraphQL/HTTP)"
	SysEngine = "presenced engine (in-process)"
	SysFloor  = "HTTP floor (net/http, constant answer)"
)

// presencedHTTP is presenced as its users see it: the program itself in a
// child process (see ServiceEnv), events published to its NATS server with
// the project's publisher, queries through its GraphQL API over loopback
// HTTP.
type presencedHTTP struct {
	proc   *serverProcess
	dir    string
	env    *natsEnv
	http   string
	client *gqlClient
}

func (p *presencedHTTP) Name() string { return SysHTTP }

func (p *presencedHTTP) Load(ctx context.Context, tenant string, evs []presence.Event) error {
	if err := publishAcked(ctx, p.env.js, p.env.prefix, tenant, evs); err != nil {
		return err
	}
	last, err := p.env.lastSeq(ctx)
	if err != nil {
		return err
	}
	return waitApplied(ctx, p.http, last, 10*time.Minute)
}

func (p *presencedHTTP) Query(ctx context.Context, _ string, f *engine.Filter) (engine.Indicator, error) {
	return p.client.indicator(ctx, f)
}

func (p *presencedHTTP) Reset(context.Context) error {
	return errors.New("presenced: reset by a new instance")
}

func (p *presencedHTTP) Close() error {
	if p.client != nil {
		p.client.close()
	}
	if p.env != nil {
		p.env.close()
	}
	var procErr error
	if p.proc != nil {
		procErr = p.proc.close()
	}
	return errors.Join(procErr, os.RemoveAll(p.dir))
}

// newPresencedHTTP starts presenced in a process of its own (see
// ServiceEnv), env added to its environment, and connects to it.
func newPresencedHTTP(ctx context.Context, env ...string) (*presencedHTTP, error) {
	dir, err := os.MkdirTemp("", "presencebench-service-")
	if err != nil {
		return nil, err
	}
	p := &presencedHTTP{dir: dir}
	if p.proc, err = startServerProcess(ctx, append([]string{ServiceEnv + "=" + dir}, env...)...); err != nil {
		p.Close()
		return nil, err
	}
	if len(p.proc.addr) != 2 {
		p.Close()
		return nil, fmt.Errorf("presenced process printed %q, want an HTTP address and a NATS URL", p.proc.addr)
	}
	p.http = p.proc.addr[0]
	if err := waitFor(ctx, "presenced to be ready", time.Minute, 5*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		p.Close()
		return nil, err
	}
	if p.env, err = dialNATS(ctx, p.proc.addr[1], ingest.DefaultStream, ingest.DefaultPrefix); err != nil {
		p.Close()
		return nil, err
	}
	p.client = newGQLClient(p.http, Tenant, 4)
	return p, nil
}

// httpFloor is the HTTP floor (see FloorEnv) asked like presenced: the
// same bodies from the same client, over loopback to a process of its own.
// It holds no data and answers zeros.
type httpFloor struct {
	proc   *serverProcess
	client *gqlClient
}

func newHTTPFloor(ctx context.Context) (*httpFloor, error) {
	proc, err := startServerProcess(ctx, FloorEnv+"=1")
	if err != nil {
		return nil, err
	}
	return &httpFloor{proc: proc, client: newGQLClient(proc.addr[0], Tenant, 4)}, nil
}

func (p *httpFloor) Name() string                                         { return SysFloor }
func (p *httpFloor) Load(context.Context, string, []presence.Event) error { return nil }
func (p *httpFloor) Reset(context.Context) error                          { return nil }

func (p *httpFloor) Query(ctx context.Context, _ string, f *engine.Filter) (engine.Indicator, error) {
	return p.client.indicator(ctx, f)
}

func (p *httpFloor) Close() error {
	p.client.close()
	p.proc.close()
	return nil
}

// presencedEngine is the engine alone, in-process: Apply and Query.
type presencedEngine struct{ e *engine.Engine }

func (p *presencedEngine) Name() string { return SysEngine }

func (p *presencedEngine) Load(_ context.Context, tenant string, evs []presence.Event) error {
	for i := range evs {
		p.e.Apply(tenant, &evs[i])
	}
	return nil
}

func (p *presencedEngine) Query(_ context.Context, tenant string, f *engine.Filter) (engine.Indicator, error) {
	return p.e.Query(tenant, f), nil
}

func (p *presencedEngine) Reset(context.Context) (err error) {
	p.e, err = engine.New(engine.Config{})
	return err
}

func (p *presencedEngine) Close() error { return nil }

// PeerLoad is how fast one system took the data set.
type PeerLoad struct {
	System string  `json:"system"`
	Users  int     `json:"users"`
	Events int     `json:"events"`
	Rate   float64 `json:"events_per_s"`
}

// PeerPoint is one system's per-query latency for one size and class.
type PeerPoint struct {
	System  string  `json:"system"`
	Users   int     `json:"users"`
	Class   string  `json:"class"` // a, b, c, or "all" for the three pooled
	Latency Summary `json:"latency"`
}

// PeersData is the peers scenario's numbers.
type PeersData struct {
	Loads   []PeerLoad        `json:"loads"`
	Points  []PeerPoint       `json:"points"`
	Skipped map[string]string `json:"skipped,omitempty"`
}

func (d *PeersData) point(sys string, users int, class string) *PeerPoint {
	for i := range d.Points {
		p := &d.Points[i]
		if p.System == sys && p.Users == users && p.Class == class {
			return p
		}
	}
	return nil
}

// Peers loads the same users into presenced and into each peer, checks that
// every system gives the same answers, then times the same filters, one
// query at a time, on each.
func Peers(ctx context.Context, o Options) (*Result, error) {
	res := newResult("peers", &o)
	data := &PeersData{Skipped: map[string]string{}}
	res.Data = data
	sizes := []int{o.scaled(1_000, 0), o.scaled(100_000, 0), o.scaled(1_000_000, 0)}
	perClass, budget := perClassOf(&o), 10*time.Second
	if o.Short {
		sizes, budget = []int{1_000}, 2*time.Second
	}

	floor, err := newHTTPFloor(ctx)
	if err != nil {
		return nil, err
	}
	defer floor.Close()
	others := []peer.Peer{floor, peer.NewNaive()}
	// The servers, started by the bench; one not installed is skipped.
	servers := []struct {
		name    string
		start   func(context.Context) (*peer.Server, error)
		connect func(context.Context, *peer.Server) (peer.Peer, error)
	}{
		{"Redis", peer.StartRedis, func(ctx context.Context, s *peer.Server) (peer.Peer, error) {
			return peer.NewRedis(ctx, s.Addr)
		}},
		{"PostgreSQL", peer.StartPostgres, func(ctx context.Context, s *peer.Server) (peer.Peer, error) {
			return peer.NewPostgres(ctx, peer.DSN(s))
		}},
	}
	for _, s := range servers {
		srv, err := s.start(ctx)
		if errors.Is(err, peer.ErrNotInstalled) {
			data.Skipped[s.name] = err.Error()
			res.note("%s skipped: %v", s.name, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		defer srv.Stop()
		p, err := s.connect(ctx, srv)
		if err != nil {
			return nil, err
		}
		defer p.Close()
		others = append(others, p)
	}

	for _, n := range sizes {
		pop := NewPopulation(n, 11)
		evs := pop.LoadEvents()
		filters := map[Class][]*engine.Filter{}
		for _, c := range Classes {
			filters[c] = pop.Filters(c, perClass)
		}
		ref := &presencedEngine{}
		if err := ref.Reset(ctx); err != nil {
			return nil, err
		}
		ph, err := newPresencedHTTP(ctx)
		if err != nil {
			return nil, err
		}
		systems := append([]peer.Peer{ref, ph}, others...)
		for _, sys := range systems {
			if sys != ref && sys != ph {
				if err := sys.Reset(ctx); err != nil {
					ph.Close()
					return nil, err
				}
			}
			runtime.GC()
			start := time.Now()
			if err := sys.Load(ctx, Tenant, evs); err != nil {
				ph.Close()
				return nil, fmt.Errorf("%s: %w", sys.Name(), err)
			}
			rate := float64(len(evs)) / time.Since(start).Seconds()
			// The floor holds no data: nothing to load or check.
			if sys != floor {
				data.Loads = append(data.Loads, PeerLoad{sys.Name(), n, len(evs), rate})
				o.logf("peers: %d users: %s loaded %d events at %.0f/s", n, sys.Name(), len(evs), rate)
				if err := crossCheck(ctx, sys, ref, filters); err != nil {
					ph.Close()
					return nil, err
				}
			}
			perClassLats := map[Class][]time.Duration{}
			for _, c := range Classes {
				lats, err := timeQueries(ctx, sys, filters[c], budget)
				if err != nil {
					ph.Close()
					return nil, err
				}
				perClassLats[c] = slices.Clone(lats)
				s := Summarize(lats)
				data.Points = append(data.Points, PeerPoint{sys.Name(), n, c.String(), s})
				o.logf("peers: %d users: %s class %s: %d queries, p50 %.1f µs, mean %.1f µs", n, sys.Name(), c, s.N, s.P50, s.Mean)
			}
			data.Points = append(data.Points, PeerPoint{sys.Name(), n, "all", Summarize(pooled(perClassLats))})
			if sys != ref && sys != ph {
				// Free the peer's memory before the next one is timed.
				if err := sys.Reset(ctx); err != nil {
					ph.Close()
					return nil, err
				}
			}
		}
		ph.Close()
	}
	peersTables(res, data, sizes, &o)
	return res.finish(&o)
}

// crossCheck asks sys every filter and compares with the reference engine;
// over HTTP only the counts are compared (the averages come back as floats).
func crossCheck(ctx context.Context, sys, ref peer.Peer, filters map[Class][]*engine.Filter) error {
	for _, c := range Classes {
		start := time.Now()
		for i, f := range filters[c][:min(64, len(filters[c]))] {
			if i >= 8 && time.Since(start) > 10*time.Second {
				break // a slow peer: enough checked
			}
			got, err := sys.Query(ctx, Tenant, f)
			if err != nil {
				return fmt.Errorf("%s: %w", sys.Name(), err)
			}
			want, _ := ref.Query(ctx, Tenant, f)
			if sys.Name() == SysHTTP {
				got.InProduction, got.MaxSlots, got.CurrentSlots = want.InProduction, want.MaxSlots, want.CurrentSlots
			}
			if got != want {
				return fmt.Errorf("%s answers class %s filter %d (%+v) with %+v, presenced with %+v", sys.Name(), c, i, *f, got, want)
			}
		}
	}
	return nil
}

// timeQueries asks the filters in turn, one at a time, and returns each
// query's time, within budget. The first few (every distinct filter of class
// c) are asked once untimed: statements prepared, scripts cached, views
// built.
func timeQueries(ctx context.Context, sys peer.Peer, fs []*engine.Filter, budget time.Duration) ([]time.Duration, error) {
	warm := time.Now()
	for _, f := range fs[:min(16, len(fs))] {
		if time.Since(warm) > budget/4 {
			break
		}
		if _, err := sys.Query(ctx, Tenant, f); err != nil {
			return nil, err
		}
	}
	lats := make([]time.Duration, 0, len(fs))
	start := time.Now()
	for _, f := range fs {
		t0 := time.Now()
		if _, err := sys.Query(ctx, Tenant, f); err != nil {
			return nil, err
		}
		lats = append(lats, time.Since(t0))
		if time.Since(start) > budget {
			break
		}
	}
	return lats, nil
}

// systems lists the systems of d's points in the order they were measured.
func (d *PeersData) systems() []string {
	var out []string
	for _, p := range d.Points {
		if !slices.Contains(out, p.System) {
			out = append(out, p.System)
		}
	}
	return out
}

func peersTables(res *Result, data *PeersData, sizes []int, o *Options) {
	systems := data.systems()
	lt := res.table("Peers: loading the data set (every user's login, then half as many changes), events/s", append([]string{"system"}, usersHeader(sizes)...)...)
	for _, sys := range systems {
		if sys == SysFloor {
			continue // holds no data
		}
		row := []any{sys}
		for _, n := range sizes {
			v := "-"
			for _, l := range data.Loads {
				if l.System == sys && l.Users == n {
					v = fmtFloat(l.Rate)
				}
			}
			row = append(row, v)
		}
		lt.Add(row...)
	}
	for _, class := range []string{"a", "b", "c", "all"} {
		title := "Peers: per-query latency, class " + class + ", p50 / mean µs (one query at a time)"
		if class == "all" {
			title = "Peers: per-query latency, the three classes pooled in equal parts, p50 / mean µs"
		}
		t := res.table(title, append([]string{"system"}, usersHeader(sizes)...)...)
		for _, sys := range systems {
			row := []any{sys}
			for _, n := range sizes {
				v := "-"
				if p := data.point(sys, n, class); p != nil {
					v = fmtFloat(p.Latency.P50) + " / " + fmtFloat(p.Latency.Mean)
				}
				row = append(row, v)
			}
			t.Add(row...)
		}
	}
	// Ratios at 100k users (the targets' size) when it was run, as with
	// -scale 0.1 (100, 10k, 100k), else at the middle size, against
	// presenced as its users see it.
	mid := sizes[len(sizes)/2]
	if slices.Contains(sizes, 100_000) {
		mid = 100_000
	}
	rt := res.table(fmt.Sprintf("Peers: how many times slower than presenced over GraphQL/HTTP at %d users (p50 ratio / mean ratio)", mid),
		"system", "class a", "class b", "class c", "pooled")
	for _, sys := range systems {
		if sys == SysHTTP {
			continue
		}
		row := []any{sys}
		for _, class := range []string{"a", "b", "c", "all"} {
			p, h := data.point(sys, mid, class), data.point(SysHTTP, mid, class)
			if p == nil || h == nil {
				row = append(row, "-")
				continue
			}
			row = append(row, fmt.Sprintf("%s / %s", fmtFloat(ratio(p.Latency.P50, h.Latency.P50)), fmtFloat(ratio(p.Latency.Mean, h.Latency.Mean))))
		}
		rt.Add(row...)
	}
	for _, tg := range []struct {
		sys  string
		want float64
	}{{"PostgreSQL", 50}, {"Redis (Lua)", 10}} {
		p, h := data.point(tg.sys, mid, "all"), data.point(SysHTTP, mid, "all")
		if p == nil || h == nil {
			res.target(fmt.Sprintf("presenced vs %s at %d users", tg.sys, mid), fmt.Sprintf("≥ %.0fx", tg.want), "skipped", false)
			continue
		}
		r := ratio(p.Latency.Mean, h.Latency.Mean)
		res.target(fmt.Sprintf("presenced (HTTP) vs %s at %d users, mean per query over the pooled classes", tg.sys, mid),
			fmt.Sprintf("≥ %.0fx", tg.want), fmt.Sprintf("%.1fx (p50 ratio %.1fx)", r, ratio(p.Latency.P50, h.Latency.P50)), r >= tg.want)
	}
	res.note("every system was asked the same filters per class, in the same order (class c: 16 distinct filters asked again), up to %d per class within a time budget; the first 64 of each class (at least 8, within 10 s) were checked against the engine's answers before timing", perClassOf(o))
	res.note("%s: a bare net/http server in a process of its own that answers every request with the same indicator, asked with the same bodies by the same client: what any Go HTTP API costs here before it does any work", SysFloor)
	res.note("Redis and PostgreSQL are timed through their own protocols on loopback (RESP, PostgreSQL wire), presenced through GraphQL over HTTP: a Redis or PostgreSQL backend would still need an API in front, so the comparison favours the peers")
}

func perClassOf(o *Options) int {
	if o.Short {
		return 20
	}
	return 400
}

func usersHeader(sizes []int) []string {
	var h []string
	for _, n := range sizes {
		h = append(h, fmt.Sprintf("%d users", n))
	}
	return h
}

// pooled mixes the classes in equal parts: the first k queries of each,
// k being the fewest any class got within its time budget.
func pooled(lats map[Class][]time.Duration) []time.Duration {
	k := -1
	for _, l := range lats {
		if k < 0 || len(l) < k {
			k = len(l)
		}
	}
	var all []time.Duration
	for _, c := range Classes {
		all = append(all, lats[c][:k]...)
	}
	return all
}
