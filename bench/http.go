package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// indicatorQuery asks connectedUsersIndicator(filters: $f) with every field.
const indicatorQuery = `query Q($f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`

// filterInput is an engine.Filter as a GraphQL ConnectedUsersIndicatorFilters
// input object: omitzero leaves out a nil list (no constraint) and keeps an
// empty one (matches nothing).
type filterInput struct {
	AvailabilityStatus []string `json:"availabilityStatus,omitzero"`
	ChatAvailability   []string `json:"chatAvailability,omitzero"`
	Roles              []string `json:"roles,omitzero"`
	GroupIDs           []string `json:"groupIds,omitzero"`
	ProjectIDs         []string `json:"projectIds,omitzero"`
	RoutingGroupIDs    []string `json:"routingGroupIds,omitzero"`
	UserIDs            []string `json:"userIds,omitzero"`
}

// names maps vs to their GraphQL enum names, keeping nil apart from empty.
func names[T any](vs []T, name func(T) string) []string {
	if vs == nil {
		return nil
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = name(v)
	}
	return out
}

// GraphQLBody returns the POST /graphql body asking connectedUsersIndicator
// with f.
func GraphQLBody(f *engine.Filter) []byte {
	in := filterInput{
		AvailabilityStatus: names(f.AvailabilityStatus, presence.Status.String),
		ChatAvailability:   names(f.ChatAvailability, presence.Status.String),
		Roles:              names(f.Roles, presence.Role.EnumName),
		GroupIDs:           f.GroupIDs, ProjectIDs: f.ProjectIDs, RoutingGroupIDs: f.RoutingGroupIDs, UserIDs: f.UserIDs,
	}
	b, err := json.Marshal(map[string]any{"query": indicatorQuery, "variables": map[string]any{"f": in}})
	if err != nil {
		panic(err) // strings and slices of strings always marshal
	}
	return b
}

// apiServer is the real api.Server over an engine, served on a random
// loopback port as the service serves it, without a rate limit.
type apiServer struct {
	addr string
	srv  *http.Server
}

func startAPI(e *engine.Engine) (*apiServer, error) {
	a, err := api.New(api.Config{Engine: e, RateLimit: rate.Inf, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &apiServer{addr: ln.Addr().String(), srv: api.NewHTTPServer(ln.Addr().String(), a.Handler())}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// gqlClient posts GraphQL requests over keep-alive connections.
type gqlClient struct {
	url    string
	tenant string
	hc     *http.Client
}

func newGQLClient(addr, tenant string, conns int) *gqlClient {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &gqlClient{url: "http://" + addr + "/graphql", tenant: tenant, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *gqlClient) close() { c.hc.CloseIdleConnections() }

// forTenant returns a client asking for tenant over c's connections.
func (c *gqlClient) forTenant(tenant string) *gqlClient {
	t := *c
	t.tenant = tenant
	return &t
}

// post sends body and returns the response body, or an error for anything
// but a 200 with data and no errors.
func (c *gqlClient) post(ctx context.Context, body []byte, buf *bytes.Buffer) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.TenantHeader, c.tenant)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := io.Copy(buf, resp.Body); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b, []byte(`{"data"`)) || bytes.Contains(b, []byte(`"errors"`)) {
		return nil, fmt.Errorf("graphql: status %d: %.300s", resp.StatusCode, b)
	}
	return b, nil
}

// indicator asks f and decodes the answer into an engine.Indicator (the
// averages turned back into sums are exact for the small integers here).
func (c *gqlClient) indicator(ctx context.Context, f *engine.Filter) (engine.Indicator, error) {
	var buf bytes.Buffer
	b, err := c.post(ctx, GraphQLBody(f), &buf)
	if err != nil {
		return engine.Indicator{}, err
	}
	var resp struct {
		Data struct {
			ConnectedUsersIndicator struct {
				ConnectedUsersCount           int64
				CountByChatAvailabilityStatus struct{ Available, Busy, ToggleOff int64 }
			}
		}
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return engine.Indicator{}, err
	}
	j := resp.Data.ConnectedUsersIndicator
	var ind engine.Indicator
	ind.Connected = j.ConnectedUsersCount
	ind.Chat[presence.Available] = j.CountByChatAvailabilityStatus.Available
	ind.Chat[presence.Busy] = j.CountByChatAvailabilityStatus.Busy
	ind.Chat[presence.ToggleOff] = j.CountByChatAvailabilityStatus.ToggleOff
	return ind, nil
}

// LoadResult is one run of a load generator.
type LoadResult struct {
	Rate       float64 `json:"target_rate"` // 0 for closed loop
	Sent       int     `json:"sent"`
	Errors     int     `json:"errors"`
	Throughput float64 `json:"throughput"` // completed per second
	Latency    Summary `json:"latency"`
	// Service is, for the open loop, the time from the moment a request
	// was sent, leaving out how late the generator sent it (Lag).
	Service Summary `json:"service,omitzero"`
	Lag     Summary `json:"lag,omitzero"`
}

// openLoop sends bodies (cycling) at a fixed rate, whatever the answers'
// pace, at most n requests and for at most d, through up to workers
// requests in flight, none dropped.
func openLoop(ctx context.Context, c *gqlClient, bodies [][]byte, qps float64, n int, d time.Duration, workers int) LoadResult {
	start := time.Now()
	reqs := schedule(ctx, qps, n, d, workers, n, func(i int, buf *bytes.Buffer) error {
		_, err := c.post(ctx, bodies[i%len(bodies)], buf)
		return err
	})
	elapsed := time.Since(start)
	var lats, svc, lags []time.Duration
	errs := 0
	for _, r := range reqs {
		if r.err != nil {
			errs++
			continue
		}
		lats = append(lats, r.end.Sub(r.due))
		svc = append(svc, r.end.Sub(r.sent))
		lags = append(lags, r.sent.Sub(r.due))
	}
	return LoadResult{Rate: qps, Sent: len(reqs), Errors: errs, Throughput: float64(len(lats)) / elapsed.Seconds(),
		Latency: Summarize(lats), Service: Summarize(svc), Lag: Summarize(lags)}
}

// request is one request of an open loop: when it was due, sent and
// answered, and its error.
type request struct {
	due, sent, end time.Time
	err            error
}

// errDropped is the error of a request that found every worker busy and the
// queue full.
var errDropped = errors.New("dropped: every worker busy and the queue full")

// schedule calls do(i) for i = 0, 1, ... at rate per second, whatever the
// answers' pace, at most n times and for at most d, from up to workers
// goroutines, each with a buffer of its own; a request due while queue
// others wait for a worker is dropped (errDropped). It returns every
// request, in the order answered. Timing a request from the moment it was
// due keeps a stalled server from hiding behind a stalled generator
// (coordinated omission).
func schedule(ctx context.Context, rate float64, n int, d time.Duration, workers, queue int, do func(i int, buf *bytes.Buffer) error) []request {
	type job struct {
		i   int
		due time.Time
	}
	jobs := make(chan job, queue)
	var (
		mu   sync.Mutex
		reqs = make([]request, 0, n)
		wg   sync.WaitGroup
	)
	done := func(r request) {
		mu.Lock()
		reqs = append(reqs, r)
		mu.Unlock()
	}
	for range workers {
		wg.Go(func() {
			var buf bytes.Buffer
			for j := range jobs {
				sent := time.Now()
				err := do(j.i, &buf)
				done(request{j.due, sent, time.Now(), err})
			}
		})
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) > d {
			break
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		select {
		case jobs <- job{i, due}:
		default:
			now := time.Now()
			done(request{due, now, now, errDropped})
		}
	}
	close(jobs)
	wg.Wait()
	return reqs
}

// closedLoop runs conc clients, each sending its next request when the last
// is answered, for d, and reports the throughput.
func closedLoop(ctx context.Context, c *gqlClient, bodies [][]byte, conc int, d time.Duration) LoadResult {
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for w := range conc {
		wg.Go(func() {
			var buf bytes.Buffer
			var mine []time.Duration
			bad := 0
			for i := w; time.Now().Before(end) && ctx.Err() == nil; i += conc {
				t0 := time.Now()
				if _, err := c.post(ctx, bodies[i%len(bodies)], &buf); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	return LoadResult{Sent: len(lats) + errs, Errors: errs, Throughput: float64(len(lats)) / elapsed.Seconds(), Latency: Summarize(lats)}
}
