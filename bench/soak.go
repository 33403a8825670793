package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
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
}

// soakProbeEvery is how often the soak's freshness probe publishes.
const soakProbeEvery = 100 * time.Millisecond

// DefaultSoak returns the soak settings of the command's flags.
func DefaultSoak() SoakOptions {
	return SoakOptions{Duration: time.Minute, Events: 50_000, Queries: 2_000, Users: 200_000, Tenants: 4,
		NewUsers: 0.005, Workers: 64, Settle: 15 * time.Second, SnapshotInterval: 10 * time.Second}
}

// settings fills the zero fields and checks the others; short makes a
// smoke-sized run of a few seconds, with a snapshot every 500 ms.
func (s SoakOptions) settings(short bool) (SoakOptions, error) {
	if short {
		s.Duration, s.Events, s.Queries, s.Users, s.Settle = 2*time.Second, 2_000, 200, 2_000, 0
		s.SnapshotInterval = 500 * time.Millisecond
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
	// LatencySnapshot that of the queries due in a snapshot second (one a
	// snapshot overlaps).
	Latency         Summary  `json:"latency"`
	LatencySnapshot Summary  `json:"latency_snapshot_seconds"`
	FirstErrors     []string `json:"first_errors,omitempty"`
	// Freshness is the probe's, from its publish to the query that showed
	// it; FreshnessSnapshot that of the probes begun in a snapshot second.
	Freshness         Summary `json:"freshness"`
	FreshnessSnapshot Summary `json:"freshness_snapshot_seconds"`
	// ProbesLost counts the probes not visible after 10 s (published, and
	// dropped by the NATS server); they are in no Summary.
	ProbesLost int `json:"probes_lost"`
	// Seconds is each second of the load, the queries due and the probes
	// begun in it.
	Seconds []SoakSecond `json:"seconds"`
	// Snapshots are those presenced wrote that overlap the load.
	Snapshots []SoakSnapshot `json:"snapshots"`
	// Heap in use (go_memstats_heap_inuse_bytes of presenced's /metrics,
	// no GC forced: it holds garbage not yet collected), in bytes: with the
	// service empty, once the population is loaded, at the end once caught
	// up, and after Settle.
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

// SoakSecond is one second of the load: the latency of the queries due in
// it, the freshness of the probes begun in it, and whether a snapshot
// overlapped it.
type SoakSecond struct {
	Second    int     `json:"second"`
	Latency   Summary `json:"latency"`
	Freshness Summary `json:"freshness"`
	Snapshot  bool    `json:"snapshot"`
}

// SoakSnapshot is a snapshot presenced wrote: when it began, in seconds
// since the load's start (negative: before), and how long it took.
type SoakSnapshot struct {
	Start    float64       `json:"start_s"`
	Duration time.Duration `json:"duration_ns"`
}

// soakTenant is one tenant of the soak: a population of its own, and its
// traffic.
type soakTenant struct {
	name     string
	pop      *Population
	traffic  *Traffic
	subjects *subjects
}

// Soak runs presenced as its users do, in a process of its own (see
// ServiceEnv: embedded NATS, loopback ports, a temporary data dir, snapshots
// every SnapshotInterval), the load generator in this one, under a steady
// mixed load for a while, and reports whether it kept up: events published,
// stored and applied, query latency and freshness per second with the
// seconds a snapshot overlapped marked, memory and goroutines before and
// after.
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
// dropped and counted as an error. Meanwhile, every 100 ms, a freshness
// probe publishes the login or logout of a user of its own in the first
// tenant with a plain NATS publish and asks connectedUsersIndicator(userIds:
// [probe]) back to back, on a connection of its own, until it shows.
//
// Snapshots are known from presenced's snapshot metrics, read every 250 ms:
// each one's end and duration. Heap and goroutines are presenced's
// go_memstats_heap_inuse_bytes and go_goroutines: with the service empty,
// once the population is loaded, at the end once ingest has caught up, and
// after Settle idle. They include the embedded NATS server, which lives in
// presenced's process.
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

	serviceStart := time.Now()
	p, err := newPresencedHTTP(ctx, ServiceSnapshotEnv+"="+s.SnapshotInterval.String())
	if err != nil {
		return nil, err
	}
	defer p.Close()
	addr, env := p.http, p.env
	o.logf("soak: presenced (process %d) at %s; %v of %d events/s and %d queries/s; %d users over %d tenants",
		p.proc.cmd.Process.Pid, addr, s.Duration, s.Events, s.Queries, s.Users, s.Tenants)

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
	idle()
	data.HeapEmpty = heapOf(addr)

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
	data.HeapStart, data.GoroutinesStart = heapOf(addr), goroutinesOf(addr)
	o.logf("soak: %d logins applied in %v; heap in use %s (empty service %s)",
		preloaded, time.Since(t0).Round(time.Millisecond), mib(data.HeapStart), mib(data.HeapEmpty))

	// 2. The churn, the queries and the probe.
	loadCtx, stopLoad := context.WithTimeout(ctx, s.Duration)
	defer stopLoad()
	var (
		wg       sync.WaitGroup
		pubErr   error
		probeErr error
		reqs     []request
		probes   []probe
		snaps    []SoakSnapshot
		workers  = newGQLClient(addr, "", s.Workers)
		queries  = newSoakQueries(workers, tenants)
		prober   = newGQLClient(addr, tenants[0].name, 1)
	)
	defer prober.close()
	start := time.Now()
	wg.Go(func() { data.Published, data.PublisherBehind, pubErr = churn(loadCtx, env, tenants, s, ts) })
	wg.Go(func() { reqs = queries.run(ctx, loadCtx, s) })
	wg.Go(func() { data.Pending = sampleBacklog(loadCtx, addr) })
	wg.Go(func() {
		probes, data.ProbesLost, probeErr = probeFreshness(ctx, loadCtx, env.nc, prober, tenants[0].subjects, soakProbeEvery)
	})
	wg.Go(func() { snaps = sampleSnapshots(loadCtx, addr, start) })
	wg.Wait()
	data.Elapsed = time.Since(start)
	appliedAtEnd, _ := metric(addr, "presence_stream_applied_sequence")
	data.summarize(reqs, probes, snaps, start)
	reqs = nil

	// 3. Catch up, then measure again.
	stored, err := env.settle(ctx)
	if err != nil {
		return nil, err
	}
	caughtUp := time.Now()
	catchUpErr := waitApplied(ctx, addr, stored, 2*time.Minute)
	data.CatchUp = time.Since(caughtUp)
	// The probe's events are in the stream, not churn.
	data.Stored, data.Applied = stored-preloaded-uint64(len(probes)), uint64(appliedAtEnd)-preloaded-uint64(len(probes))
	data.UsersEnd, _ = metric(addr, "presence_tracked_users")
	data.Rejected, _ = metric(addr, "presence_events_total", "result", "rejected")
	workers.close()
	prober.close()
	idle()
	data.HeapEnd, data.GoroutinesEnd = heapOf(addr), goroutinesOf(addr)
	time.Sleep(s.Settle) // let the NATS store's caches expire
	data.HeapSettled = heapOf(addr)
	stopErr := p.Close()

	data.report(res, s.SnapshotInterval, start.Sub(serviceStart), pubErr, catchUpErr)
	if _, err := res.finish(&o); err != nil {
		return nil, err
	}
	return res, errors.Join(pubErr, probeErr, catchUpErr, stopErr)
}

// heapOf and goroutinesOf read presenced's heap in use and goroutines from
// its /metrics (0 if it cannot be read).
func heapOf(addr string) uint64 {
	v, _ := metric(addr, "go_memstats_heap_inuse_bytes")
	return uint64(v)
}

func goroutinesOf(addr string) int {
	v, _ := metric(addr, "go_goroutines")
	return int(v)
}

// probe is one freshness probe: when it published, and how long until a
// query showed it.
type probe struct {
	start   time.Time
	latency time.Duration
}

// probeFreshness probes every interval until load ends (the last probe is
// bounded by ctx alone): it publishes the login or logout, in turn, of a
// user of its own with a plain NATS publish on subjects, and asks
// connectedUsersIndicator(userIds: [it]) through client back to back until
// the change shows. A change not visible after 10 s is counted lost (a
// plain publish the server dropped), and the next probe publishes it again.
func probeFreshness(ctx, load context.Context, nc *nats.Conn, client *gqlClient, subjects *subjects, interval time.Duration) (probes []probe, lost int, err error) {
	const probeID = "soak-probe"
	body := GraphQLBody(&engine.Filter{UserIDs: []string{probeID}})
	var buf bytes.Buffer
	tick := time.NewTicker(interval)
	defer tick.Stop()
	login := true
	for {
		select {
		case <-load.Done():
			return probes, lost, nil
		case <-tick.C:
		}
		ty, want := presence.Login, []byte(`"connectedUsersCount":1`)
		if !login {
			ty, want = presence.Logout, []byte(`"connectedUsersCount":0`)
		}
		ev := presence.Event{Type: ty, UserID: probeID, TS: time.Now().UnixNano(), Fields: presence.HasTS}
		start := time.Now()
		if err := nc.Publish(subjects[ty], ev.AppendJSON(nil)); err != nil {
			return probes, lost, fmt.Errorf("freshness probe: %w", err)
		}
		if err := nc.Flush(); err != nil {
			return probes, lost, fmt.Errorf("freshness probe: %w", err)
		}
		for {
			b, err := client.post(ctx, body, &buf)
			if err != nil {
				return probes, lost, fmt.Errorf("freshness probe: %w", err)
			}
			if bytes.Contains(b, want) {
				probes = append(probes, probe{start, time.Since(start)})
				login = !login
				break
			}
			if time.Since(start) > 10*time.Second {
				lost++
				break
			}
		}
	}
}

// sampleSnapshots reads presenced's snapshot metrics every 250 ms until ctx
// ends, and once more then, and returns the snapshots that ended meanwhile,
// their start relative to start. Two ended between two readings (not with
// snapshots seconds apart) are taken for one, over both their durations.
func sampleSnapshots(ctx context.Context, addr string, start time.Time) []SoakSnapshot {
	var snaps []SoakSnapshot
	count, sum, _ := histogram(addr, "presence_snapshot_duration_seconds")
	read := func() {
		c, s, err := histogram(addr, "presence_snapshot_duration_seconds")
		if err != nil || c == count {
			return
		}
		end, err := metric(addr, "presence_snapshot_last_end_timestamp_seconds")
		if err != nil {
			return
		}
		d := time.Duration((s - sum) * 1e9)
		endAt := time.Unix(0, int64(end*1e9))
		snaps = append(snaps, SoakSnapshot{Start: endAt.Add(-d).Sub(start).Seconds(), Duration: d})
		count, sum = c, s
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			read()
			return snaps
		case <-tick.C:
			read()
		}
	}
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

// summarize counts reqs and summarizes their latency from the moment each
// was due, and the probes' freshness, overall, per second since start and
// over the seconds that snaps overlap.
func (d *SoakData) summarize(reqs []request, probes []probe, snaps []SoakSnapshot, start time.Time) {
	secs := int(d.Elapsed.Seconds()) + 1
	lats := make([][]time.Duration, secs)
	fresh := make([][]time.Duration, secs)
	at := func(t time.Time) int { return min(max(0, int(t.Sub(start).Seconds())), secs-1) }
	var all, allFresh []time.Duration
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
		lats[at(r.due)] = append(lats[at(r.due)], lat)
	}
	for _, p := range probes {
		allFresh = append(allFresh, p.latency)
		fresh[at(p.start)] = append(fresh[at(p.start)], p.latency)
	}
	for _, sn := range snaps {
		if sn.Start+sn.Duration.Seconds() >= 0 && sn.Start < d.Elapsed.Seconds() {
			d.Snapshots = append(d.Snapshots, sn)
		}
	}
	var snapLats, snapFresh []time.Duration
	for sec := range secs {
		if len(lats[sec]) == 0 && len(fresh[sec]) == 0 {
			continue
		}
		marked := false
		for _, sn := range d.Snapshots {
			marked = marked || sn.Start < float64(sec+1) && sn.Start+sn.Duration.Seconds() >= float64(sec)
		}
		if marked {
			snapLats = append(snapLats, lats[sec]...)
			snapFresh = append(snapFresh, fresh[sec]...)
		}
		d.Seconds = append(d.Seconds, SoakSecond{sec, Summarize(lats[sec]), Summarize(fresh[sec]), marked})
	}
	d.Latency, d.LatencySnapshot = Summarize(all), Summarize(snapLats)
	d.Freshness, d.FreshnessSnapshot = Summarize(allFresh), Summarize(snapFresh)
}

// report writes the soak's tables and targets.
func (d *SoakData) report(res *Result, snapshots, warmup time.Duration, pubErr, catchUpErr error) {
	s, secs := d.Settings, d.Elapsed.Seconds()
	ms := func(us float64) string { return fmtFloat(us/1e3) + " ms" }
	t := res.table(fmt.Sprintf("Soak: %v of %d events/s and %d queries/s over %d users of %d tenants, presenced in a process of its own, snapshots every %v", s.Duration, s.Events, s.Queries, s.Users, s.Tenants, snapshots),
		"measure", "value")
	t.Add("events published", fmt.Sprintf("%d (%.0f/s), publisher behind its schedule at most %v", d.Published, float64(d.Published)/secs, d.PublisherBehind.Round(time.Millisecond)))
	t.Add("events stored, lost", fmt.Sprintf("%d, %d", d.Stored, int64(d.Published)-int64(d.Stored)))
	t.Add("events applied during the run", fmt.Sprintf("%d (%.0f/s); all applied %v after the end%s", d.Applied, float64(d.Applied)/secs, d.CatchUp.Round(time.Millisecond), errText(catchUpErr)))
	t.Add("events rejected", d.Rejected)
	t.Add("ingest backlog, sampled every second (messages)", fmt.Sprintf("p50 %s, max %s", fmtFloat(Median(d.Pending)), fmtFloat(slices.Max(append([]float64{0}, d.Pending...)))))
	t.Add("queries sent", fmt.Sprintf("%d (%.0f/s)", d.Queries, float64(d.Queries)/secs))
	t.Add("query errors", fmt.Sprintf("%d (dropped for want of a worker: %d)", d.Errors, d.Dropped))
	sum := func(l Summary) string {
		if l.N == 0 {
			return "none"
		}
		return fmt.Sprintf("%s / %s / %s / %s (%d)", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.N)
	}
	t.Add("query latency from due, p50 / p90 / p99 / max (n): all seconds", sum(d.Latency))
	t.Add("query latency from due: snapshot seconds", sum(d.LatencySnapshot))
	t.Add("freshness, publish to visible, p50 / p90 / p99 / max (n): all seconds", sum(d.Freshness))
	t.Add("freshness: snapshot seconds", sum(d.FreshnessSnapshot))
	t.Add("freshness probes lost (not visible after 10 s)", d.ProbesLost)
	marked := 0
	for _, sec := range d.Seconds {
		if sec.Snapshot {
			marked++
		}
	}
	var durs []string
	for _, sn := range d.Snapshots {
		durs = append(durs, fmt.Sprintf("+%.1fs %v", sn.Start, sn.Duration.Round(time.Millisecond)))
	}
	t.Add("snapshots overlapping the load (start, duration); seconds marked", fmt.Sprintf("%d: %s; %d of %d seconds", len(d.Snapshots), strings.Join(durs, ", "), marked, len(d.Seconds)))
	t.Add("presenced heap in use: empty service, population loaded, end, after settle", fmt.Sprintf("%s, %s, %s (%+.1f MiB), %s after %v",
		mib(d.HeapEmpty), mib(d.HeapStart), mib(d.HeapEnd), float64(int64(d.HeapEnd)-int64(d.HeapStart))/(1<<20), mib(d.HeapSettled), s.Settle))
	perUser := float64(int64(d.HeapStart)-int64(d.HeapEmpty)) / float64(s.Users)
	added := d.UsersEnd - d.UsersStart
	t.Add("users tracked, start -> end", fmt.Sprintf("%.0f -> %.0f (+%.0f, about %.1f MiB at %.0f B each)", d.UsersStart, d.UsersEnd, added, added*perUser/(1<<20), perUser))
	t.Add("presenced goroutines, start -> end", fmt.Sprintf("%d -> %d", d.GoroutinesStart, d.GoroutinesEnd))

	pt := res.table(fmt.Sprintf("Soak: per second of the load (S: a snapshot overlaps it; snapshots every %v, the first due %v before the load)", snapshots, warmup.Round(time.Millisecond)),
		"second", "snapshot", "queries", "query p50", "query p99", "query max", "probes", "fresh p50", "fresh p99", "fresh max")
	for _, sec := range d.Seconds {
		mark := ""
		if sec.Snapshot {
			mark = "S"
		}
		q, f := sec.Latency, sec.Freshness
		of := func(l Summary, us float64) string {
			if l.N == 0 {
				return "-"
			}
			return ms(us)
		}
		pt.Add(fmt.Sprintf("+%ds", sec.Second), mark, q.N, of(q, q.P50), of(q, q.P99), of(q, q.Max), f.N, of(f, f.P50), of(f, f.P99), of(f, f.Max))
	}

	for _, tg := range []struct {
		what string
		l    Summary
		lost int
	}{{"query", d.Latency, 0}, {"query, snapshot seconds", d.LatencySnapshot, 0},
		{"freshness", d.Freshness, d.ProbesLost}, {"freshness, snapshot seconds", d.FreshnessSnapshot, 0}} {
		got := func(us float64) string {
			if tg.lost > 0 {
				return fmt.Sprintf("%s, and %d probes lost", ms(us), tg.lost)
			}
			return ms(us)
		}
		res.target(tg.what+" p99", "≤ 2 ms", got(tg.l.P99), tg.l.N > 0 && tg.lost == 0 && tg.l.P99 <= 2_000)
		res.target(tg.what+" max", "≤ 20 ms", got(tg.l.Max), tg.l.N > 0 && tg.lost == 0 && tg.l.Max <= 20_000)
	}
	if pubErr != nil {
		res.note("the publisher stopped early: %v", pubErr)
	}
	for _, e := range d.FirstErrors {
		res.note("query error: %s", e)
	}
	res.note("latencies are bench.Summarize's (nearest rank) over every query, from the moment it was due, and over every probe, from before its publish to the answer that showed it; the backlog's p50 is bench.Median's")
	res.note("a snapshot second is one the interval [end - duration, end] of a snapshot overlaps, from presenced's presence_snapshot_duration_seconds and presence_snapshot_last_end_timestamp_seconds")
	res.note("the heap is presenced's go_memstats_heap_inuse_bytes, no GC forced (garbage not yet collected included); the embedded NATS server lives in the same process")
	res.note("events stored and applied leave out the probe's %d", d.Freshness.N)
}

func errText(err error) string {
	if err != nil {
		return " (" + err.Error() + ")"
	}
	return ""
}
