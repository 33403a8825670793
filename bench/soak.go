package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/service"
)

// SoakOptions are the soak scenario's settings. The command's defaults are
// DefaultSoak's; each field's comment says what its zero value means.
type SoakOptions struct {
	// Duration is how long the load runs; zero means 60s.
	Duration time.Duration `json:"duration_ns"`
	// Events is the events published per second; zero means 50,000.
	Events int `json:"events_per_s"`
	// Queries is the GraphQL queries sent per second; zero means 2,000.
	Queries int `json:"queries_per_s"`
	// Users is how many users log in before the clock starts, spread over
	// the tenants; zero means 200,000.
	Users int `json:"users"`
	// Tenants is the number of tenants; zero means 4.
	Tenants int `json:"tenants"`
	// NewUsers is the share of the churn events that log in a user never
	// seen before; zero means none.
	NewUsers float64 `json:"new_users"`
	// Workers bounds the HTTP requests in flight; zero means 64.
	Workers int `json:"workers"`
	// Settle is the idle time before the last heap measurement; zero means
	// none.
	Settle time.Duration `json:"settle_ns"`
	// SnapshotInterval is presenced's -snapshot-interval; zero means only
	// at shutdown.
	SnapshotInterval time.Duration `json:"snapshot_interval_ns"`
	// MemProfile, if not empty, names the heap profiles written once the
	// population is loaded (MemProfile.start) and at the end, after Settle
	// (MemProfile.end).
	MemProfile string `json:"-"`
}

// DefaultSoak returns the soak settings of the command's flags.
func DefaultSoak() SoakOptions {
	return SoakOptions{Duration: time.Minute, Events: 50_000, Queries: 2_000, Users: 200_000, Tenants: 4,
		NewUsers: 0.005, Workers: 64, Settle: 15 * time.Second, SnapshotInterval: service.Defaults().SnapshotInterval}
}

// settings fills the zero fields and checks the others; short makes a
// smoke-sized run of a few seconds.
func (s SoakOptions) settings(short bool) (SoakOptions, error) {
	if short {
		s.Duration, s.Events, s.Queries, s.Users, s.Settle = 2*time.Second, 2_000, 200, 2_000, 0
	}
	fill := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&s.Events, 50_000)
	fill(&s.Queries, 2_000)
	fill(&s.Users, 200_000)
	fill(&s.Tenants, 4)
	fill(&s.Workers, 64)
	if s.Duration == 0 {
		s.Duration = time.Minute
	}
	switch {
	case s.Duration < 0 || s.Settle < 0 || s.SnapshotInterval < 0:
		return s, errors.New("soak: -duration, -settle and -snapshot-interval must not be negative")
	case s.Events < 0 || s.Queries < 0 || s.Tenants < 0 || s.Workers < 0:
		return s, errors.New("soak: -events, -queries, -tenants and -workers must not be negative")
	case s.Users < s.Tenants:
		return s, fmt.Errorf("soak: -users %d: at least one per tenant (-tenants %d)", s.Users, s.Tenants)
	case s.NewUsers < 0 || s.NewUsers > 1:
		return s, fmt.Errorf("soak: -new-users %v: a share, from 0 to 1", s.NewUsers)
	}
	return s, nil
}

// SoakData is the soak scenario's numbers.
type SoakData struct {
	Settings SoakOptions   `json:"settings"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	// Published is the churn events sent; PublisherBehind how far behind
	// its schedule the publisher fell at most.
	Published       int           `json:"published"`
	PublisherBehind time.Duration `json:"publisher_behind_ns"`
	// Stored and Applied count the churn events in the stream at the end
	// and applied by the end of the load; CatchUp is the time after the
	// end until every stored event was applied.
	Stored   uint64        `json:"stored"`
	Applied  uint64        `json:"applied_during_run"`
	CatchUp  time.Duration `json:"catch_up_ns"`
	Rejected float64       `json:"rejected"`
	// Pending is the ingest backlog (presence_stream_pending_messages),
	// sampled every second of the load.
	Pending []float64 `json:"pending"`
	// Queries counts the requests sent, Errors those that failed, of which
	// Dropped found every worker busy and a second's worth queued.
	Queries int `json:"queries"`
	Errors  int `json:"errors"`
	Dropped int `json:"dropped"`
	// Latency is every query's, from the moment it was due to its answer;
	// Seconds the same for the queries due in each second of the load.
	Latency     Summary      `json:"latency"`
	Seconds     []SoakSecond `json:"seconds"`
	FirstErrors []string     `json:"first_errors,omitempty"`
	// Heap in use after a forced GC, in bytes: with the service empty,
	// once the population is loaded, at the end once caught up, and after
	// Settle.
	HeapEmpty   uint64 `json:"heap_empty"`
	HeapStart   uint64 `json:"heap_start"`
	HeapEnd     uint64 `json:"heap_end"`
	HeapSettled uint64 `json:"heap_settled"`
	// Users tracked (presence_tracked_users) and goroutines, at the start
	// of the load and at the end.
	UsersStart      float64 `json:"users_start"`
	UsersEnd        float64 `json:"users_end"`
	GoroutinesStart int     `json:"goroutines_start"`
	GoroutinesEnd   int     `json:"goroutines_end"`
}

// SoakSecond is the latency of the queries due in one second of the load.
type SoakSecond struct {
	Second  int     `json:"second"`
	Latency Summary `json:"latency"`
}

// soakTenant is one tenant of the soak: a population of its own, and its
// traffic.
type soakTenant struct {
	name     string
	pop      *Population
	traffic  *Traffic
	subjects *subjects
}

// Soak runs presenced in this process (service.Start: embedded NATS, loopback
// ports, a temporary data dir, snapshots every SnapshotInterval) under a
// steady mixed load for a while and reports whether it kept up: events
// published, stored and applied, query errors and latency, memory and
// goroutines before and after.
//
// First the population grows: every user's login with a whole profile, over
// Tenants tenants of Users/Tenants each, published with JetStream
// acknowledgements and applied before the clock starts. Then, for Duration,
// it churns: Events per second, open loop, of the population's traffic
// (every type, random users, a NewUsers share of logins of users never seen
// before) on random tenants, as plain NATS publishes like a desk backend's;
// and Queries GraphQL requests per second, also open loop, over HTTP with at
// most Workers in flight, of the three filter classes, 90% from a fixed set
// of 300 dashboards per tenant and 10% ad hoc. A query's latency runs from
// the moment it was due, so a stalled server cannot hide behind fewer
// requests; one that finds every worker busy and a second's worth queued is
// dropped and counted as an error.
//
// The heap is measured after forced GCs: with the service empty, once the
// population is loaded, at the end once ingest has caught up, and after
// Settle idle. It includes the embedded NATS server, which lives in this
// process.
func Soak(ctx context.Context, o Options) (*Result, error) {
	res := newResult("soak", &o)
	s, err := o.Soak.settings(o.Short)
	if err != nil {
		return nil, err
	}
	ctx, disarm := bound(ctx, "soak", o.timeout(s.Duration+s.Settle+5*time.Minute))
	defer disarm()
	data := &SoakData{Settings: s}
	res.Data = data

	dir, err := os.MkdirTemp("", "presencebench-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg := serviceConfig(dir)
	cfg.SnapshotInterval = s.SnapshotInterval
	serviceStart := time.Now()
	svc, _, stopService, err := runService(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer stopService()
	addr := svc.HTTPAddr()
	env, err := dialNATS(ctx, svc.NATSURL(), cfg.Stream, cfg.SubjectPrefix)
	if err != nil {
		return nil, err
	}
	defer env.close()
	o.logf("soak: %v of %d events/s and %d queries/s; %d users over %d tenants", s.Duration, s.Events, s.Queries, s.Users, s.Tenants)

	tenants := make([]soakTenant, s.Tenants)
	for k := range tenants {
		t := &tenants[k]
		t.name = "t" + strconv.Itoa(k)
		users := s.Users / s.Tenants
		if k < s.Users%s.Tenants {
			users++
		}
		t.pop = NewPopulation(users, uint64(20+k))
		t.pop.Offline = 0
		t.traffic = t.pop.Traffic(s.NewUsers)
		t.traffic.reserve(int(2 * s.NewUsers * float64(s.Events) * s.Duration.Seconds() / float64(s.Tenants)))
		if t.subjects, err = newSubjects(env.prefix, t.name); err != nil {
			return nil, err
		}
	}
	data.HeapEmpty = heapInUse()

	// 1. The population grows.
	t0 := time.Now()
	ts := time.Now().Add(-time.Minute).UnixNano()
	for _, t := range tenants {
		logins := make([]presence.Event, t.pop.Users)
		for i := range logins {
			logins[i] = t.traffic.Next()
			ts++
			stamp(&logins[i], ts)
		}
		if err := publishAcked(ctx, env.js, env.prefix, t.name, logins); err != nil {
			return nil, err
		}
	}
	preloaded, err := env.lastSeq(ctx)
	if err != nil {
		return nil, err
	}
	if err := waitApplied(ctx, addr, preloaded, 5*time.Minute); err != nil {
		return nil, err
	}
	data.UsersStart, _ = metric(addr, "presence_tracked_users")
	idle()
	data.HeapStart, data.GoroutinesStart = heapInUse(), runtime.NumGoroutine()
	o.logf("soak: %d logins applied in %v; heap in use %s (empty service %s)",
		preloaded, time.Since(t0).Round(time.Millisecond), mib(data.HeapStart), mib(data.HeapEmpty))

	// 2. The churn and the queries.
	if err := writeHeapProfile(s.MemProfile, ".start"); err != nil {
		return nil, err
	}
	loadCtx, stopLoad := context.WithTimeout(ctx, s.Duration)
	defer stopLoad()
	var (
		wg      sync.WaitGroup
		pubErr  error
		reqs    []request
		workers = newGQLClient(addr, "", s.Workers)
		queries = newSoakQueries(workers, tenants)
	)
	start := time.Now()
	wg.Go(func() { data.Published, data.PublisherBehind, pubErr = churn(loadCtx, env, tenants, s, ts) })
	wg.Go(func() { reqs = queries.run(ctx, loadCtx, s) })
	wg.Go(func() { data.Pending = sampleBacklog(loadCtx, addr) })
	wg.Wait()
	data.Elapsed = time.Since(start)
	appliedAtEnd, _ := metric(addr, "presence_stream_applied_sequence")
	data.summarizeQueries(reqs, start)
	reqs = nil // not in the heap measured below

	// 3. Catch up, then measure again.
	stored, err := env.settle(ctx)
	if err != nil {
		return nil, err
	}
	caughtUp := time.Now()
	catchUpErr := waitApplied(ctx, addr, stored, 2*time.Minute)
	data.CatchUp = time.Since(caughtUp)
	data.Stored, data.Applied = stored-preloaded, uint64(appliedAtEnd)-preloaded
	data.UsersEnd, _ = metric(addr, "presence_tracked_users")
	data.Rejected, _ = metric(addr, "presence_events_total", "result", "rejected")
	workers.close()
	idle()
	data.HeapEnd, data.GoroutinesEnd = heapInUse(), runtime.NumGoroutine()
	time.Sleep(s.Settle) // let the NATS store's caches expire
	data.HeapSettled = heapInUse()
	if err := writeHeapProfile(s.MemProfile, ".end"); err != nil {
		return nil, err
	}
	stopErr := stopService()

	data.report(res, cfg.SnapshotInterval, start.Sub(serviceStart), pubErr, catchUpErr)
	if _, err := res.finish(&o); err != nil {
		return nil, err
	}
	return res, errors.Join(pubErr, catchUpErr, stopErr)
}

// idle closes the bench's idle HTTP connections to presenced and lets the
// server's connection goroutines end, before goroutines are counted.
func idle() {
	metricsClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
}

// churn publishes s.Events events per second of random tenants' traffic
// with plain publishes until ctx ends, stamped with the time of their
// publish (and after ts), and returns what publishAt does.
func churn(ctx context.Context, env *natsEnv, tenants []soakTenant, s SoakOptions, ts int64) (int, time.Duration, error) {
	nc, err := env.connect()
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	r := rand.New(rand.NewPCG(3, 4))
	var buf []byte
	next := func(int) (wire, error) {
		t := &tenants[r.IntN(len(tenants))]
		ev := t.traffic.Next()
		ts = max(time.Now().UnixNano(), ts+1) // a user's events in one tick get distinct times
		stamp(&ev, ts)
		m, err := t.subjects.wire(&ev, buf[:0])
		buf = m.data
		return m, err
	}
	return publishAt(ctx, nc, float64(s.Events), int(float64(s.Events)*s.Duration.Seconds()), next)
}

// soakQueries are the soak's GraphQL requests: per tenant, a client and
// its dashboards' bodies.
type soakQueries struct {
	tenants    []soakTenant
	clients    []*gqlClient
	dashboards [][][]byte
	mu         sync.Mutex // r, from the workers
	r          *rand.Rand
}

// newSoakQueries asks through client 300 dashboards per tenant (100 of each
// filter class), and ad hoc filters.
func newSoakQueries(client *gqlClient, tenants []soakTenant) *soakQueries {
	q := &soakQueries{tenants: tenants, r: rand.New(rand.NewPCG(5, 6))}
	for _, t := range tenants {
		q.clients = append(q.clients, client.forTenant(t.name))
		var bodies [][]byte
		for _, c := range Classes {
			for _, f := range t.pop.Filters(c, 100) {
				bodies = append(bodies, GraphQLBody(f))
			}
		}
		q.dashboards = append(q.dashboards, bodies)
	}
	return q
}

// pick returns a random tenant's client and a body: 90% one of its
// dashboards, 10% an ad hoc filter.
func (q *soakQueries) pick() (*gqlClient, []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := q.r.IntN(len(q.tenants))
	if q.r.IntN(10) == 0 {
		return q.clients[k], GraphQLBody(q.tenants[k].pop.filter(q.r, Classes[q.r.IntN(len(Classes))]))
	}
	return q.clients[k], q.dashboards[k][q.r.IntN(len(q.dashboards[k]))]
}

// run sends s.Queries requests per second for s.Duration, open loop, until
// load ends, each bounded by ctx alone (those in flight at the end are
// answered), and returns them.
func (q *soakQueries) run(ctx, load context.Context, s SoakOptions) []request {
	n := int(float64(s.Queries) * s.Duration.Seconds())
	return schedule(load, float64(s.Queries), n, s.Duration, s.Workers, s.Queries, func(_ int, buf *bytes.Buffer) error {
		c, body := q.pick()
		_, err := c.post(ctx, body, buf)
		return err
	})
}

// sampleBacklog reads the ingest backlog every second until ctx ends.
func sampleBacklog(ctx context.Context, addr string) []float64 {
	var pending []float64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return pending
		case <-tick.C:
			if v, err := metric(addr, "presence_stream_pending_messages"); err == nil {
				pending = append(pending, v)
			}
		}
	}
}

// summarizeQueries counts reqs and summarizes their latency from the moment
// each was due, overall and per second since start.
func (d *SoakData) summarizeQueries(reqs []request, start time.Time) {
	all := make([]time.Duration, 0, len(reqs))
	var perSecond [][]time.Duration
	for _, r := range reqs {
		d.Queries++
		if r.err != nil {
			d.Errors++
			if errors.Is(r.err, errDropped) {
				d.Dropped++
			}
			if len(d.FirstErrors) < 5 {
				d.FirstErrors = append(d.FirstErrors, r.err.Error())
			}
		}
		lat := r.end.Sub(r.due)
		all = append(all, lat)
		sec := max(0, int(r.due.Sub(start).Seconds()))
		for len(perSecond) <= sec {
			perSecond = append(perSecond, nil)
		}
		perSecond[sec] = append(perSecond[sec], lat)
	}
	d.Latency = Summarize(all)
	for sec, lats := range perSecond {
		if len(lats) > 0 {
			d.Seconds = append(d.Seconds, SoakSecond{sec, Summarize(lats)})
		}
	}
}

// report writes the soak's tables.
func (d *SoakData) report(res *Result, snapshots, warmup time.Duration, pubErr, catchUpErr error) {
	s, secs := d.Settings, d.Elapsed.Seconds()
	ms := func(us float64) string { return fmtFloat(us/1e3) + " ms" }
	t := res.table(fmt.Sprintf("Soak: %v of %d events/s and %d queries/s over %d users of %d tenants", s.Duration, s.Events, s.Queries, s.Users, s.Tenants),
		"measure", "value")
	t.Add("events published", fmt.Sprintf("%d (%.0f/s), publisher behind its schedule at most %v", d.Published, float64(d.Published)/secs, d.PublisherBehind.Round(time.Millisecond)))
	t.Add("events stored, lost", fmt.Sprintf("%d, %d", d.Stored, int64(d.Published)-int64(d.Stored)))
	t.Add("events applied during the run", fmt.Sprintf("%d (%.0f/s); all applied %v after the end%s", d.Applied, float64(d.Applied)/secs, d.CatchUp.Round(time.Millisecond), errText(catchUpErr)))
	t.Add("events rejected", d.Rejected)
	t.Add("ingest backlog, sampled every second (messages)", fmt.Sprintf("p50 %s, max %s", fmtFloat(Median(d.Pending)), fmtFloat(slices.Max(append([]float64{0}, d.Pending...)))))
	t.Add("queries sent", fmt.Sprintf("%d (%.0f/s)", d.Queries, float64(d.Queries)/secs))
	t.Add("query errors", fmt.Sprintf("%d (dropped for want of a worker: %d)", d.Errors, d.Dropped))
	l := d.Latency
	t.Add("query latency from due, p50 / p90 / p99 / max", fmt.Sprintf("%s / %s / %s / %s", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max)))
	t.Add("heap in use: empty service, population loaded, end, after settle", fmt.Sprintf("%s, %s, %s (%+.1f MiB), %s after %v",
		mib(d.HeapEmpty), mib(d.HeapStart), mib(d.HeapEnd), float64(int64(d.HeapEnd)-int64(d.HeapStart))/(1<<20), mib(d.HeapSettled), s.Settle))
	perUser := float64(d.HeapStart-d.HeapEmpty) / float64(s.Users)
	added := d.UsersEnd - d.UsersStart
	t.Add("users tracked, start -> end", fmt.Sprintf("%.0f -> %.0f (+%.0f, about %.1f MiB at %.0f B each)", d.UsersStart, d.UsersEnd, added, added*perUser/(1<<20), perUser))
	t.Add("goroutines, start -> end", fmt.Sprintf("%d -> %d", d.GoroutinesStart, d.GoroutinesEnd))

	worst := slices.Clone(d.Seconds)
	slices.SortStableFunc(worst, func(a, b SoakSecond) int { return cmp.Compare(b.Latency.Max, a.Latency.Max) })
	wt := res.table(fmt.Sprintf("Soak: the slowest seconds of the load (by max; snapshots every %v, from %v before the load)", snapshots, warmup.Round(time.Millisecond)),
		"second", "queries", "p50", "p99", "max")
	for _, w := range worst[:min(5, len(worst))] {
		wt.Add(fmt.Sprintf("+%ds", w.Second), w.Latency.N, ms(w.Latency.P50), ms(w.Latency.P99), ms(w.Latency.Max))
	}
	if pubErr != nil {
		res.note("the publisher stopped early: %v", pubErr)
	}
	for _, e := range d.FirstErrors {
		res.note("query error: %s", e)
	}
	res.note("latencies are bench.Summarize's (nearest rank) over every query, from the moment it was due; the backlog's p50 is bench.Median's")
	res.note("the heap is Go's HeapInuse after two forced GCs; the embedded NATS server lives in the same heap")
}

func errText(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}
