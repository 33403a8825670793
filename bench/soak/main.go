package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/service"
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long the load runs")
	flag.IntVar(&o.events, "events", 50_000, "events published per second")
	flag.IntVar(&o.queries, "queries", 2_000, "GraphQL queries sent per second")
	flag.IntVar(&o.users, "users", 200_000, "users logged in before the clock starts, spread over the tenants")
	flag.IntVar(&o.tenants, "tenants", 4, "tenants")
	flag.Float64Var(&o.newUsers, "new-users", 0.005, "fraction of the churn events that log in a user never seen before")
	flag.IntVar(&o.workers, "workers", 64, "concurrent HTTP requests at most")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "idle time before the last heap measurement")
	flag.DurationVar(&o.snapshotInterval, "snapshot-interval", service.Defaults().SnapshotInterval, "presenced's -snapshot-interval; 0 only at shutdown")
	flag.StringVar(&o.memProfile, "memprofile", "", "write heap profiles to FILE.start (population loaded) and FILE.end (after the run and -settle)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type options struct {
	duration                        time.Duration
	events, queries, users, tenants int
	workers                         int
	newUsers                        float64
	settle                          time.Duration
	memProfile                      string
	snapshotInterval                time.Duration
}

func run(o options) error {
	if o.duration <= 0 || o.settle < 0 || o.snapshotInterval < 0 || o.events <= 0 || o.queries <= 0 || o.users < o.tenants || o.tenants < 1 || o.workers < 1 ||
		o.newUsers < 0 || o.newUsers > 1 {
		return errors.New("every flag must be positive, -users at least -tenants, -new-users from 0 to 1")
	}
	// A hard stop in case something hangs: the program must end by itself.
	limit := o.duration + o.settle + 5*time.Minute
	time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "soak: still running after %v, giving up\n", limit)
		os.Exit(2)
	})
	dir, err := os.MkdirTemp("", "presenced-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	cfg := service.Defaults()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:-1"
	cfg.DataDir = dir
	cfg.RateLimit = 0
	cfg.SnapshotInterval = o.snapshotInterval
	cfg.LogLevel = "warn"
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stopService := context.WithCancel(context.Background())
	defer stopService()
	serviceStart := time.Now()
	svc, err := service.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	for !svc.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	addr := svc.HTTPAddr()
	fmt.Printf("soak: %v of %d events/s and %d queries/s; %d users over %d tenants; GOMAXPROCS %d, %s\n",
		o.duration, o.events, o.queries, o.users, o.tenants, runtime.GOMAXPROCS(0), runtime.Version())

	pop := newPopulation(o.users, o.tenants)
	heapEmpty := heapInUse()

	// 1. The population grows.
	t0 := time.Now()
	preloaded, err := preload(svc.NATSURL(), pop)
	if err != nil {
		return err
	}
	if err := waitApplied(addr, uint64(preloaded), 5*time.Minute); err != nil {
		return err
	}
	heapStart, goroutinesStart := heapInUse(), runtime.NumGoroutine()
	trackedStart, _ := testenv.Metric(addr, "presence_tracked_users")
	fmt.Printf("population: %d logins applied in %v; heap in use %s (empty service %s: %.0f B per user)\n",
		preloaded, time.Since(t0).Round(time.Millisecond), mib(heapStart), mib(heapEmpty),
		float64(heapStart-heapEmpty)/float64(o.users))

	// 2. The churn and the queries.
	loadCtx, stopLoad := context.WithTimeout(context.Background(), o.duration)
	defer stopLoad()
	if err := writeHeapProfile(o.memProfile, ".start"); err != nil {
		return err
	}
	start := time.Now()
	var (
		wg   sync.WaitGroup
		pubs pubStats
		qs   = newQueryStats(int(float64(o.queries)*o.duration.Seconds()*1.2)+1000, start, o.duration)
		lag  lagStats
	)
	wg.Go(func() { pubs = churn(loadCtx, svc.NATSURL(), pop, o) })
	wg.Go(func() { sendQueries(loadCtx, addr, pop, o, qs) })
	wg.Go(func() { lag = sample(loadCtx, addr) })
	wg.Wait()
	elapsed := time.Since(start)
	appliedAtEnd, _ := testenv.Metric(addr, "presence_stream_applied_sequence")

	// 3. Catch up, then measure again.
	stored, err := streamMsgs(svc.NATSURL())
	if err != nil {
		return err
	}
	caughtUp := time.Now()
	catchUpErr := waitApplied(addr, stored, 2*time.Minute)
	catchUp := time.Since(caughtUp)
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond) // let the server's connection goroutines end
	heapEnd, goroutinesEnd := heapInUse(), runtime.NumGoroutine()
	trackedEnd, _ := testenv.Metric(addr, "presence_tracked_users")
	rejected := rejectedEvents(addr)
	time.Sleep(o.settle) // let the NATS store's caches expire
	heapSettled := heapInUse()
	if err := writeHeapProfile(o.memProfile, ".end"); err != nil {
		return err
	}

	stopService()
	stopErr := svc.Wait()

	// 4. The report.
	secs := elapsed.Seconds()
	soakStored := stored - uint64(preloaded)
	soakApplied := uint64(appliedAtEnd) - uint64(preloaded)
	fmt.Printf("\nran %v\n", elapsed.Round(time.Millisecond))
	fmt.Printf("events:  published %d (%.0f/s, publisher behind schedule at most %v), stored %d (%d lost), applied %d during the run (%.0f/s), all applied %v after the end%s; rejected %v\n",
		pubs.sent, float64(pubs.sent)/secs, pubs.maxBehind.Round(time.Millisecond), soakStored, int64(pubs.sent)-int64(soakStored),
		soakApplied, float64(soakApplied)/secs, catchUp.Round(time.Millisecond), errText(catchUpErr), rejected)
	if pubs.err != nil {
		fmt.Printf("  publisher stopped early: %v\n", pubs.err)
	}
	fmt.Printf("ingest:  pending messages p50 %d, max %d (sampled every second)\n", lag.p50(), lag.max())
	ok, errs := qs.ok.Load(), qs.errors.Load()
	p50, p90, p99, pmax := qs.percentiles()
	fmt.Printf("queries: sent %d (%.0f/s), ok %d, errors %d (dropped for want of a worker %d); latency p50 %v p90 %v p99 %v max %v\n",
		ok+errs, float64(ok+errs)/secs, ok, errs, qs.dropped.Load(), p50, p90, p99, pmax)
	fmt.Printf("         slowest seconds (since the start of the run; snapshots are due every %v from %v before it): %s\n",
		cfg.SnapshotInterval, start.Sub(serviceStart).Round(time.Millisecond), strings.Join(qs.worstSeconds(5), ", "))
	for _, e := range qs.firstErrors() {
		fmt.Printf("  error: %s\n", e)
	}
	added := int(trackedEnd - trackedStart)
	perUser := float64(heapStart-heapEmpty) / float64(o.users)
	fmt.Printf("memory:  heap in use at start %s, at end %s (%+.1f MiB); users %v -> %v (+%d, about %.1f MiB at %.0f B each)\n",
		mib(heapStart), mib(heapEnd), float64(int64(heapEnd)-int64(heapStart))/(1<<20), trackedStart, trackedEnd,
		added, float64(added)*perUser/(1<<20), perUser)
	fmt.Printf("         heap in use %v after the end, idle: %s\n", o.settle, mib(heapSettled))
	fmt.Printf("goroutines: %d at start, %d at end\n", goroutinesStart, goroutinesEnd)
	return errors.Join(catchUpErr, stopErr)
}

func errText(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}

// population names the users and their ids. User i belongs to tenant
// i % tenants; ids pools grow with the users, as in a real contact centre
// (about 50 agents per group).
type population struct {
	tenants                   []string
	users                     atomic.Int64 // users known so far; new ones are added at the end
	groups, projects, routing int
}

func newPopulation(users, tenants int) *population {
	p := &population{
		groups:   max(8, users/tenants/50),
		projects: max(4, users/tenants/500),
		routing:  max(6, users/tenants/200),
	}
	for i := range tenants {
		p.tenants = append(p.tenants, "t"+strconv.Itoa(i))
	}
	p.users.Store(int64(users))
	return p
}

var statuses = []presence.Status{presence.Available, presence.Busy, presence.ToggleOff}

// login is user i's login with a whole profile.
func (p *population) login(r *rand.Rand, i int, ts int64) (string, presence.Event) {
	return p.tenants[i%len(p.tenants)], presence.Event{
		Type: presence.Login, UserID: "u" + strconv.Itoa(i), TS: ts,
		Fields: presence.HasTS | presence.HasRole | presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups |
			presence.HasAvailability | presence.HasChat | presence.HasMaxSlots | presence.HasCurrentSlots,
		Role:            presence.Role(1 + r.IntN(presence.NumRoles-1)),
		GroupIDs:        ids(r, "g", p.groups, 1+r.IntN(3)),
		ProjectIDs:      ids(r, "p", p.projects, 1),
		RoutingGroupIDs: ids(r, "r", p.routing, 1+r.IntN(2)),
		Availability:    statuses[r.IntN(3)],
		Chat:            statuses[r.IntN(3)],
		MaxSlots:        uint16(1 + r.IntN(5)),
		CurrentSlots:    uint16(r.IntN(4)),
	}
}

// churnEvent is a random event of a random known user, or the login of a
// new user.
func (p *population) churnEvent(r *rand.Rand, newUsers float64, ts int64) (string, presence.Event) {
	if r.Float64() < newUsers {
		return p.login(r, int(p.users.Add(1)-1), ts)
	}
	i := r.IntN(int(p.users.Load()))
	ev := presence.Event{UserID: "u" + strconv.Itoa(i), TS: ts, Fields: presence.HasTS}
	switch x := r.IntN(100); {
	case x < 10:
		_, ev = p.login(r, i, ts)
	case x < 20:
		ev.Type = presence.Logout
	case x < 50:
		ev.Type = presence.StatusChange
		ev.Fields |= presence.HasAvailability | presence.HasChat
		ev.Availability, ev.Chat = statuses[r.IntN(3)], statuses[r.IntN(3)]
	case x < 80:
		ev.Type = presence.Slots
		ev.Fields |= presence.HasCurrentSlots
		ev.CurrentSlots = uint16(r.IntN(6))
	case x < 85:
		ev.Type = presence.Profile
		ev.Fields |= presence.HasGroups | presence.HasRoutingGroups
		ev.GroupIDs, ev.RoutingGroupIDs = ids(r, "g", p.groups, 1+r.IntN(3)), ids(r, "r", p.routing, 1+r.IntN(2))
	default:
		ev.Type = presence.Heartbeat
	}
	return p.tenants[i%len(p.tenants)], ev
}

// ids returns n distinct ids prefix0..prefix<pool-1>.
func ids(r *rand.Rand, prefix string, pool, n int) []string {
	out := make([]string, 0, n)
	for len(out) < min(n, pool) {
		id := prefix + strconv.Itoa(r.IntN(pool))
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// preload publishes one login per user with JetStream acknowledgements, so
// that none is lost, and returns how many it published.
func preload(url string, p *population) (int, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return 0, err
	}
	r := rand.New(rand.NewPCG(1, 2))
	n := int(p.users.Load())
	ts := time.Now().Add(-time.Minute).UnixNano()
	var buf []byte
	for i := range n {
		tenant, ev := p.login(r, i, ts+int64(i))
		subject, err := presence.Subject("presence", tenant, ev.Type)
		if err != nil {
			return 0, err
		}
		buf = ev.AppendJSON(buf[:0])
		if _, err := js.PublishAsync(subject, slices.Clone(buf)); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return n, nil
	case <-time.After(5 * time.Minute):
		return 0, errors.New("preload: acknowledgements still pending after 5 minutes")
	}
}

// pubStats is what the churn publisher did.
type pubStats struct {
	sent      int
	maxBehind time.Duration // how far behind its schedule the publisher fell
	err       error
}

// churn publishes o.events events per second with plain NATS publishes until
// ctx ends: open loop, each millisecond it publishes what the clock says is
// due, whatever the engine does.
func churn(ctx context.Context, url string, p *population, o options) pubStats {
	var st pubStats
	nc, err := nats.Connect(url)
	if err != nil {
		st.err = err
		return st
	}
	defer nc.Close()
	r := rand.New(rand.NewPCG(3, 4))
	var buf []byte
	start := time.Now()
	total := int(float64(o.events) * o.duration.Seconds())
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for st.sent < total {
		select {
		case <-ctx.Done():
			_ = nc.Flush()
			return st
		case <-tick.C:
		}
		now := time.Now()
		due := min(total, int(now.Sub(start).Seconds()*float64(o.events)))
		// The oldest event due but not sent yet was due this long ago.
		if behind := now.Sub(start) - time.Duration(float64(st.sent)/float64(o.events)*float64(time.Second)); behind > st.maxBehind {
			st.maxBehind = behind
		}
		ts := now.UnixNano()
		for ; st.sent < due; st.sent++ {
			tenant, ev := p.churnEvent(r, o.newUsers, ts)
			ts++ // distinct ts for a user's events within one tick
			subject, err := presence.Subject("presence", tenant, ev.Type)
			if err == nil {
				buf = ev.AppendJSON(buf[:0])
				err = nc.Publish(subject, buf)
			}
			if err != nil {
				st.err = err
				return st
			}
		}
	}
	_ = nc.Flush()
	return st
}

// queryStats collects the outcome of the queries; safe for concurrent use.
type queryStats struct {
	ok, errors, dropped atomic.Int64

	mu        sync.Mutex
	latencies []time.Duration // bounded by its capacity
	errs      []string        // the first few
	// worst is the largest latency of the requests due in each second of
	// the run, to tell a steady tail from a few stalls.
	start time.Time
	worst []time.Duration
}

func newQueryStats(capacity int, start time.Time, d time.Duration) *queryStats {
	return &queryStats{
		latencies: make([]time.Duration, 0, capacity),
		start:     start,
		worst:     make([]time.Duration, int(d.Seconds())+1),
	}
}

// record notes the outcome of the request due at due, answered after d.
func (s *queryStats) record(due time.Time, d time.Duration, err error) {
	if err != nil {
		s.errors.Add(1)
	} else {
		s.ok.Add(1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.latencies) < cap(s.latencies) {
		s.latencies = append(s.latencies, d)
	}
	if sec := int(due.Sub(s.start).Seconds()); sec >= 0 && sec < len(s.worst) {
		s.worst[sec] = max(s.worst[sec], d)
	}
	if err != nil && len(s.errs) < 5 {
		s.errs = append(s.errs, err.Error())
	}
}

func (s *queryStats) percentiles() (p50, p90, p99, pmax time.Duration) {
	s.mu.Lock()
	l := slices.Clone(s.latencies)
	s.mu.Unlock()
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	at := func(q float64) time.Duration { return l[min(len(l)-1, int(q*float64(len(l))))].Round(time.Microsecond) }
	return at(0.50), at(0.90), at(0.99), l[len(l)-1].Round(time.Microsecond)
}

// worstSeconds returns the n seconds of the run with the slowest request,
// slowest first, as "+<second>s <latency>".
func (s *queryStats) worstSeconds(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	secs := make([]int, len(s.worst))
	for i := range secs {
		secs[i] = i
	}
	slices.SortFunc(secs, func(a, b int) int { return int(s.worst[b] - s.worst[a]) })
	var out []string
	for _, sec := range secs[:min(n, len(secs))] {
		out = append(out, fmt.Sprintf("+%ds %v", sec, s.worst[sec].Round(time.Millisecond)))
	}
	return out
}

func (s *queryStats) firstErrors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

const indicatorQuery = `query Soak($f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`

// sendQueries sends o.queries requests per second until ctx ends, open
// loop: a scheduler queues each request when it is due, o.workers send them.
func sendQueries(ctx context.Context, addr string, p *population, o options, st *queryStats) {
	type job struct {
		due    time.Time
		tenant string
		body   []byte
	}
	jobs := make(chan job, o.queries) // a second's worth of backlog at most
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: o.workers, MaxConnsPerHost: o.workers},
	}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() {
			for j := range jobs {
				err := ask(client, addr, j.tenant, j.body)
				st.record(j.due, time.Since(j.due), err)
			}
		})
	}

	r := rand.New(rand.NewPCG(5, 6))
	dashboards := make([][]map[string]any, len(p.tenants))
	for t := range dashboards {
		for i := range 300 {
			dashboards[t] = append(dashboards[t], randomFilter(r, p, i))
		}
	}
	start := time.Now()
	total := int(float64(o.queries) * o.duration.Seconds())
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sent := 0; sent < total; {
		select {
		case <-ctx.Done():
			total = sent
			continue
		case <-tick.C:
		}
		due := min(total, int(time.Since(start).Seconds()*float64(o.queries)))
		for ; sent < due; sent++ {
			t := r.IntN(len(p.tenants))
			f := dashboards[t][r.IntN(len(dashboards[t]))]
			if r.IntN(10) == 0 {
				f = randomFilter(r, p, r.IntN(1000)) // ad hoc
			}
			body, _ := json.Marshal(map[string]any{"query": indicatorQuery, "variables": map[string]any{"f": f}})
			at := start.Add(time.Duration(float64(sent) / float64(o.queries) * float64(time.Second)))
			select {
			case jobs <- job{at, p.tenants[t], body}:
			default:
				st.dropped.Add(1)
				st.record(at, time.Since(at), errors.New("dropped: every worker busy and the queue full"))
			}
		}
	}
	close(jobs)
	wg.Wait()
}

// randomFilter returns a filter of the class i picks: tenant-wide with
// statuses and roles, one id, user ids, several ids of one dimension, ids
// of two dimensions.
func randomFilter(r *rand.Rand, p *population, i int) map[string]any {
	f := map[string]any{}
	if r.IntN(2) == 0 {
		f["chatAvailability"] = []string{"AVAILABLE", "BUSY"}
	}
	if r.IntN(3) == 0 {
		f["roles"] = []string{"OPERATOR", "EXPERT"}
	}
	n := int(p.users.Load())
	switch i % 5 {
	case 1:
		f["groupIds"] = ids(r, "g", p.groups, 1)
	case 2:
		var users []string
		for range 1 + r.IntN(20) {
			users = append(users, "u"+strconv.Itoa(r.IntN(n)))
		}
		f["userIds"] = users
	case 3:
		f["groupIds"] = ids(r, "g", p.groups, 2+r.IntN(4))
	case 4:
		f["projectIds"] = ids(r, "p", p.projects, 1)
		f["routingGroupIds"] = ids(r, "r", p.routing, 1+r.IntN(2))
	}
	return f
}

// ask sends one query and checks the answer: 200, data with both objects,
// no errors.
func ask(client *http.Client, addr, tenant string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, data)
	}
	var out struct {
		Data *struct {
			ConnectedUsersIndicator *struct {
				CountByChatAvailabilityStatus  *json.RawMessage
				UsersInProductionChatOccupancy *json.RawMessage
			}
		}
		Errors []json.RawMessage
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("%w: %.200s", err, data)
	}
	if len(out.Errors) > 0 || out.Data == nil || out.Data.ConnectedUsersIndicator == nil ||
		out.Data.ConnectedUsersIndicator.CountByChatAvailabilityStatus == nil ||
		out.Data.ConnectedUsersIndicator.UsersInProductionChatOccupancy == nil {
		return fmt.Errorf("bad answer: %.200s", data)
	}
	return nil
}

// lagStats is the ingest backlog sampled every second.
type lagStats struct{ pending []uint64 }

func (l lagStats) p50() uint64 {
	if len(l.pending) == 0 {
		return 0
	}
	s := slices.Clone(l.pending)
	slices.Sort(s)
	return s[len(s)/2]
}

func (l lagStats) max() uint64 {
	if len(l.pending) == 0 {
		return 0
	}
	return slices.Max(l.pending)
}

// sample reads the ingest backlog every second until ctx ends.
func sample(ctx context.Context, addr string) lagStats {
	var l lagStats
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return l
		case <-tick.C:
			if v, err := testenv.Metric(addr, "presence_stream_pending_messages"); err == nil {
				l.pending = append(l.pending, uint64(v))
			}
		}
	}
}

// streamMsgs returns how many messages the PRESENCE stream holds.
func streamMsgs(url string) (uint64, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Publishes in flight may still land: wait until the count is stable.
	var last uint64
	for range 100 {
		s, err := js.Stream(ctx, "PRESENCE")
		if err != nil {
			return 0, err
		}
		n := s.CachedInfo().State.Msgs
		if n == last {
			return n, nil
		}
		last = n
		time.Sleep(100 * time.Millisecond)
	}
	return last, nil
}

// waitApplied waits until the service has applied stream sequence seq.
func waitApplied(addr string, seq uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		v, err := testenv.Metric(addr, "presence_stream_applied_sequence")
		if err == nil && uint64(v) >= seq {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sequence %d not applied after %v (at %v, %v)", seq, timeout, v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rejectedEvents sums presence_events_total{result="rejected"}.
func rejectedEvents(addr string) float64 {
	total := 0.0
	for _, typ := range []string{"_", "login", "logout", "status", "slots", "profile", "heartbeat"} {
		if v, err := testenv.Metric(addr, `presence_events_total{result="rejected",type="`+typ+`"}`); err == nil {
			total += v
		}
	}
	return total
}

// writeHeapProfile writes a heap profile to base+suffix after a GC, if base
// is not empty.
func writeHeapProfile(base, suffix string) error {
	if base == "" {
		return nil
	}
	f, err := os.Create(base + suffix)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// heapInUse returns the heap in use after two forced GCs: the second frees
// what sync.Pool caches released in the first.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
