package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/presenced/presenced/cluster"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/presence"
)

// ClusterData is the cluster scenario's numbers.
type ClusterData struct {
	Forwarding []ForwardData   `json:"forwarding"`
	Takeovers  []TakeoverPoint `json:"takeovers"`
	Memory     MemoryData      `json:"memory"`
}

// ForwardData is the forwarded against local query: per repetition, the
// same queries asked of the holder of the tenant and of the instances that
// do not hold it, interleaved.
type ForwardData struct {
	// Nodes is the NATS servers: 1, or a cluster of 3, each instance
	// connected to one of them.
	Nodes      int          `json:"nats_nodes"`
	Users      int          `json:"users"`
	Partitions int          `json:"partitions"`
	Runs       []ForwardRun `json:"runs"`
}

// ForwardRun is one repetition.
type ForwardRun struct {
	Local     Summary `json:"local"`
	Forwarded Summary `json:"forwarded"`
	// FloorLocal and FloorForwarded are their floor, asked the same way
	// in the same loop: the HTTP floor answering a constant body
	// (FloorEnv), and another HTTP floor, on the node of a forwarding
	// instance, answering with a bare NATS request-reply to a process on
	// the holder's node that answers the same body (NATSEchoEnv). What
	// forwarding over NATS costs at least here is FloorForwarded less
	// FloorLocal.
	FloorLocal     Summary `json:"floor_local"`
	FloorForwarded Summary `json:"floor_forwarded"`
}

// TakeoverPoint is one partition's size and the takeovers timed at it.
type TakeoverPoint struct {
	Users int `json:"users"`
	// After is the events published after the snapshot the next holder
	// loads: its catch-up.
	After    int            `json:"events_after_snapshot"`
	Kills    []TakeoverRun  `json:"kills"`
	Graceful []HandoverRun  `json:"graceful"`
	Snapshot SnapshotOnDisk `json:"snapshot"`
}

// SnapshotOnDisk is the size of the snapshot the next holder loads.
type SnapshotOnDisk struct {
	Bytes int64 `json:"bytes"`
}

// TakeoverRun is one kill -9 of the holder, timed from the kill as the
// standby's /metrics and /readyz show it.
type TakeoverRun struct {
	// Detected: the standby sees one instance (the holder's member key
	// expired).
	Detected time.Duration `json:"detected_ns"`
	// Held: it holds the partition (its snapshot loaded from the object
	// store, the reading started).
	Held time.Duration `json:"held_ns"`
	// Answering: it is caught up and answers the tenant itself, with the
	// holder's answer.
	Answering time.Duration `json:"answering_ns"`
}

// HandoverRun is one SIGTERM of the holder while the standby runs.
type HandoverRun struct {
	// Answering: the standby holds the partition and is caught up.
	Answering time.Duration `json:"answering_ns"`
	// Exited: the holder's process has exited.
	Exited time.Duration `json:"exited_ns"`
	// Asked and Failed count the queries asked of the standby meanwhile,
	// and those not answered with the holder's answer.
	Asked  int `json:"asked"`
	Failed int `json:"failed"`
}

// MemoryData is each instance's memory with a population over many tenants
// in 16 partitions, for several instance counts and copies.
type MemoryData struct {
	Users      int           `json:"users"`
	Tenants    int           `json:"tenants"`
	Partitions int           `json:"partitions"`
	Empty      InstanceMem   `json:"empty"` // one instance holding every partition of an empty stream
	Configs    []MemoryPoint `json:"configs"`
}

// MemoryPoint is one configuration.
type MemoryPoint struct {
	Instances int           `json:"instances"`
	Copies    int           `json:"copies"`
	Each      []InstanceMem `json:"each"`
}

// InstanceMem is one instance's memory once loaded and idle, right after a
// garbage collection.
type InstanceMem struct {
	Partitions int    `json:"partitions"`
	Users      int    `json:"users"`
	HeapInUse  uint64 `json:"heap_in_use"`
	RSS        uint64 `json:"rss"`
}

// clusterPartitions is the memory part's partition count.
const clusterPartitions = 16

// Cluster measures presenced as several instances on one NATS system
// (contract section 7), each a process of its own (cmd/presenced, built
// once), NATS in this process on loopback:
//
//   - forwarding: three instances on a three-node NATS cluster (each
//     connected to its own node, streams of 3 replicas), then on one NATS
//     server; 4 partitions, one copy, so that one instance holds the
//     tenant; the same queries asked of the holder and of the two others in
//     turn, one at a time, every answer checked byte for byte against the
//     holder's;
//   - takeover: one partition of 10k, 100k and 1M users, a snapshot of it
//     in the object store and a tenth as many events after it; its holder
//     killed (-9) while a standby runs, timed until the standby answers
//     with the holder's answer, and split into the detection (the member
//     key's expiry), the snapshot's load and the catch-up; then the holder
//     stopped with SIGTERM instead, queries asked of the standby meanwhile;
//   - memory: a population over many tenants in 16 partitions, over 1, 2
//     and 3 instances with one copy and 2 and 3 with two: each instance's
//     heap in use right after a garbage collection, and its RSS.
func Cluster(ctx context.Context, o Options) (*Result, error) { return runCluster(ctx, o, false) }

// Forwarding is the cluster scenario's forwarding part alone (see
// Cluster), a minute or two where the whole scenario takes ten.
func Forwarding(ctx context.Context, o Options) (*Result, error) { return runCluster(ctx, o, true) }

// runCluster runs the cluster scenario, or with forwardingOnly its first part.
func runCluster(ctx context.Context, o Options, forwardingOnly bool) (*Result, error) {
	name := "cluster"
	if forwardingOnly {
		name = "forwarding"
	}
	res := newResult(name, &o)
	data := &ClusterData{}
	res.Data = data
	dir, err := os.MkdirTemp("", "presencebench-"+name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin, err := buildPresenced(ctx, dir)
	if err != nil {
		return nil, err
	}
	if data.Forwarding, err = forwardings(ctx, &o, bin, dir); err != nil {
		return nil, err
	}
	if forwardingOnly {
		forwardingTable(res, data.Forwarding)
		return res.finish(&o)
	}
	sizes := []int{o.scaled(10_000, 2_000), o.scaled(100_000, 0), o.scaled(1_000_000, 0)}
	if o.Short {
		sizes = sizes[:1]
	}
	for _, n := range sizes {
		p, err := clusterTakeover(ctx, &o, bin, filepath.Join(dir, "takeover-"+strconv.Itoa(n)), n)
		if err != nil {
			return nil, fmt.Errorf("takeover of %d users: %w", n, err)
		}
		data.Takeovers = append(data.Takeovers, *p)
	}
	if err := clusterMemory(ctx, &o, bin, filepath.Join(dir, "memory"), &data.Memory); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	clusterTables(res, data)
	return res.finish(&o)
}

// forwardings runs the forwarding part on a 3-node NATS cluster, then
// (unless short) on one NATS server.
func forwardings(ctx context.Context, o *Options, bin, dir string) ([]ForwardData, error) {
	nodes := []int{3, 1}
	if o.Short {
		nodes = nodes[:1]
	}
	var all []ForwardData
	for _, n := range nodes {
		d := ForwardData{Nodes: n}
		if err := clusterForwarding(ctx, o, bin, filepath.Join(dir, "forwarding-"+strconv.Itoa(n)), &d); err != nil {
			return nil, fmt.Errorf("forwarding, %d NATS nodes: %w", n, err)
		}
		all = append(all, d)
	}
	return all, nil
}

// clusterArgs are the flags of every instance of a part.
func clusterArgs(partitions, copies, replicas int) []string {
	return []string{"-partitions", strconv.Itoa(partitions), "-copies", strconv.Itoa(copies),
		"-stream-replicas", strconv.Itoa(replicas), "-snapshot-interval", "0"}
}

// waitInstances waits until each of ins sees them all, is ready, and they
// hold held partitions between them.
func waitInstances(ctx context.Context, ins []*instance, held int, timeout time.Duration) error {
	return waitFor(ctx, fmt.Sprintf("%d instances ready, holding %d partitions", len(ins), held), timeout, 20*time.Millisecond, func() bool {
		sum := 0.0
		for _, in := range ins {
			if !in.running() || in.gauge("presence_cluster_instances") != float64(len(ins)) || !in.ready() {
				return false
			}
			sum += in.gauge("presence_partitions_held")
		}
		return sum == float64(held)
	})
}

func killAll(ins []*instance) {
	for _, in := range ins {
		if in != nil {
			in.kill()
		}
	}
}

// clusterForwarding runs the forwarding part.
func clusterForwarding(ctx context.Context, o *Options, bin, dir string, d *ForwardData) error {
	const partitions = 4
	d.Users, d.Partitions = o.scaled(100_000, 1_000), partitions
	budget := 10 * time.Second
	if o.Short {
		budget = time.Second
	}
	nn, err := startNATSNodes(ctx, d.Nodes)
	if err != nil {
		return err
	}
	defer nn.close()
	ins := make([]*instance, 3)
	defer killAll(ins)
	for i, name := range []string{"a", "b", "c"} {
		url := nn.urls[i%d.Nodes]
		if ins[i], err = startInstance(ctx, bin, filepath.Join(dir, name), url, name, clusterArgs(partitions, 1, d.Nodes)...); err != nil {
			return err
		}
	}
	if err := waitInstances(ctx, ins, partitions, time.Minute); err != nil {
		return err
	}
	env, err := dialNATS(ctx, nn.urls[0], ingest.DefaultStream, ingest.DefaultPrefix)
	if err != nil {
		return err
	}
	defer env.close()
	pop := NewPopulation(d.Users, 13)
	if err := publishAcked(ctx, env.js, env.prefix, Tenant, pop.LoadEvents()); err != nil {
		return err
	}
	last, err := env.lastSeq(ctx)
	if err != nil {
		return err
	}
	// The holder is the instance with the partition's series.
	part := []string{"partition", strconv.Itoa(presence.Partition(Tenant, partitions))}
	var holder *instance
	var others []*instance
	for _, in := range ins {
		if in.gauge("presence_stream_applied_sequence", part...) >= 0 {
			holder = in
		} else {
			others = append(others, in)
		}
	}
	if holder == nil || len(others) != 2 {
		return fmt.Errorf("tenant %s: want one holder of partition %s, got %d instances without it", Tenant, part[1], len(others))
	}
	if err := waitApplied(ctx, holder.http, last, 5*time.Minute, part...); err != nil {
		return err
	}
	local := newGQLClient(holder.http, Tenant, 1)
	defer local.close()
	var fwd []*gqlClient
	for _, in := range others {
		c := newGQLClient(in.http, Tenant, 1)
		defer c.close()
		fwd = append(fwd, c)
	}
	var bodies, want [][]byte
	for _, c := range Classes {
		for _, f := range pop.Filters(c, 8) {
			bodies = append(bodies, GraphQLBody(f))
		}
	}
	var buf bytes.Buffer
	for _, b := range bodies {
		got, err := local.post(ctx, b, &buf)
		if err != nil {
			return err
		}
		want = append(want, bytes.Clone(got))
	}
	// The floors: the same client and bodies, the forwarding one from the
	// node of the first other instance to the holder's, as a forward goes.
	echo, err := startServerProcess(ctx, NATSEchoEnv+"="+holder.nats)
	if err != nil {
		return err
	}
	defer echo.close()
	var floors [2]*gqlClient
	for i, env := range []string{"1", others[0].nats} {
		proc, err := startServerProcess(ctx, FloorEnv+"="+env)
		if err != nil {
			return err
		}
		defer proc.close()
		floors[i] = newGQLClient(proc.addr[0], Tenant, 1)
		defer floors[i].close()
	}
	before := 0.0
	for _, in := range others {
		before += in.gauge("presence_forwarded_requests_total", "result", "ok")
	}
	// Closed loop, one query at a time: each body asked of the holder and
	// of one of the others, which first alternating, the others in turn.
	ask := func(i int, c *gqlClient) (time.Duration, error) {
		t0 := time.Now()
		got, err := c.post(ctx, bodies[i%len(bodies)], &buf)
		lat := time.Since(t0)
		if err == nil && !bytes.Equal(got, want[i%len(bodies)]) {
			err = fmt.Errorf("query %d: forwarded answer %s, the holder's %s", i%len(bodies), got, want[i%len(bodies)])
		}
		return lat, err
	}
	for rep := -1; rep < o.Repeat; rep++ { // rep -1: warm-up, not kept
		var lats [4][]time.Duration // local, forwarded, floor local, floor forwarded
		start := time.Now()
		for i := 0; time.Since(start) < budget && (rep >= 0 || i < 200); i++ {
			for k := range 2 {
				c, which := local, 0
				if (i+k)%2 == 1 {
					c, which = fwd[(i/2)%2], 1
				}
				lat, err := ask(i, c)
				if err != nil {
					return err
				}
				lats[which] = append(lats[which], lat)
			}
			for k, c := range floors {
				t0 := time.Now()
				if _, err := c.post(ctx, bodies[i%len(bodies)], &buf); err != nil {
					return fmt.Errorf("floor: %w", err)
				}
				lats[2+k] = append(lats[2+k], time.Since(t0))
			}
		}
		if rep >= 0 {
			r := ForwardRun{Local: Summarize(lats[0]), Forwarded: Summarize(lats[1]), FloorLocal: Summarize(lats[2]), FloorForwarded: Summarize(lats[3])}
			d.Runs = append(d.Runs, r)
			o.logf("cluster: forwarding, %d NATS nodes, run %d: local p50 %.0f p99 %.0f µs, forwarded p50 %.0f p99 %.0f µs; floor: local p50 %.0f, forwarded p50 %.0f µs (%d each)",
				d.Nodes, rep+1, r.Local.P50, r.Local.P99, r.Forwarded.P50, r.Forwarded.P99, r.FloorLocal.P50, r.FloorForwarded.P50, r.Local.N)
		}
	}
	after := 0.0
	for _, in := range others {
		after += in.gauge("presence_forwarded_requests_total", "result", "ok")
	}
	if after-before < float64(d.Runs[0].Forwarded.N) {
		return fmt.Errorf("the others counted %v forwarded requests, fewer than the %d asked of them", after-before, d.Runs[0].Forwarded.N)
	}
	return nil
}

// clusterTakeover runs the takeover part for one partition of n users.
func clusterTakeover(ctx context.Context, o *Options, bin, dir string, n int) (*TakeoverPoint, error) {
	pt := &TakeoverPoint{Users: n, After: n / 10}
	nn, err := startNATSNodes(ctx, 1)
	if err != nil {
		return nil, err
	}
	defer nn.close()
	// One partition, one copy: of the two names, the one the assignment
	// gives the partition to holds it, the other stands by.
	names := []string{"a", "b"}
	if cluster.Assign(1, 1, names)[0][0] != "a" {
		names[0], names[1] = names[1], names[0]
	}
	args := clusterArgs(1, 1, 1)
	holder, err := startInstance(ctx, bin, filepath.Join(dir, names[0]), nn.url(), names[0], args...)
	if err != nil {
		return nil, err
	}
	defer holder.kill()
	if err := waitInstances(ctx, []*instance{holder}, 1, time.Minute); err != nil {
		return nil, err
	}
	env, err := dialNATS(ctx, nn.url(), ingest.DefaultStream, ingest.DefaultPrefix)
	if err != nil {
		return nil, err
	}
	defer env.close()

	// Every user logged in with a profile; the snapshot; a tenth as many
	// changes after it.
	pop := NewPopulation(n, 17)
	pop.Offline = 0
	evs := pop.Events(n + pt.After)
	ref, err := engine.New(engine.Config{})
	if err != nil {
		return nil, err
	}
	for i := range evs {
		ref.Apply(Tenant, &evs[i])
	}
	wantCount := ref.Query(Tenant, &engine.Filter{}).Connected
	ref = nil
	publish := func(evs []presence.Event) error {
		if err := publishAcked(ctx, env.js, env.prefix, Tenant, evs); err != nil {
			return err
		}
		last, err := env.lastSeq(ctx)
		if err != nil {
			return err
		}
		return waitApplied(ctx, holder.http, last, 10*time.Minute)
	}
	if err := publish(evs[:n]); err != nil {
		return nil, err
	}
	if err := holder.terminate(time.Minute); err != nil { // the snapshot, in the data dir and the object store
		return nil, err
	}
	if pt.Snapshot.Bytes, err = dirSize(filepath.Join(holder.dir, "data", "snapshots")); err != nil {
		return nil, err
	}
	if err := holder.start(ctx, bin); err != nil {
		return nil, err
	}
	if err := waitInstances(ctx, []*instance{holder}, 1, 5*time.Minute); err != nil {
		return nil, err
	}
	if err := publish(evs[n:]); err != nil {
		return nil, err
	}
	body := GraphQLBody(&engine.Filter{})
	var buf bytes.Buffer
	hc := newGQLClient(holder.http, Tenant, 1)
	defer hc.close()
	got, err := hc.post(ctx, body, &buf)
	if err != nil {
		return nil, err
	}
	want := bytes.Clone(got)
	if ind, err := hc.indicator(ctx, &engine.Filter{}); err != nil || ind.Connected != wantCount {
		return nil, fmt.Errorf("the holder counts %d users connected (%v), the engine fed the same events %d", ind.Connected, err, wantCount)
	}

	standby, err := startInstance(ctx, bin, filepath.Join(dir, names[1]), nn.url(), names[1], args...)
	if err != nil {
		return nil, err
	}
	defer standby.kill()
	sc := newGQLClient(standby.http, Tenant, 1)
	defer sc.close()
	// answers reports whether the standby answers with the holder's
	// answer, and err what it answered otherwise.
	answers := func() (bool, error) {
		got, err := sc.post(ctx, body, &buf)
		if err == nil && !bytes.Equal(got, want) {
			err = fmt.Errorf("the standby answers %s, the holder answered %s", got, want)
		}
		return err == nil, err
	}
	// back waits until the holder holds the partition again and the
	// standby, which forwards to it, nothing.
	back := func() error {
		if err := waitInstances(ctx, []*instance{holder, standby}, 1, 5*time.Minute); err != nil {
			return err
		}
		if holder.gauge("presence_partitions_held") != 1 {
			return fmt.Errorf("the standby holds the partition: the names' assignment is not the bench's")
		}
		if _, err := answers(); err != nil {
			return err
		}
		return nil
	}
	if err := back(); err != nil {
		return nil, err
	}
	for rep := range o.Repeat {
		var r TakeoverRun
		killed := time.Now()
		holder.kill()
		err := waitFor(ctx, "the standby to take the partition over", 10*time.Minute, 5*time.Millisecond, func() bool {
			since := time.Since(killed)
			if r.Detected == 0 && standby.gauge("presence_cluster_instances") == 1 {
				r.Detected = since
			}
			if r.Detected != 0 && r.Held == 0 && standby.gauge("presence_partitions_held") == 1 {
				r.Held = since
			}
			return r.Held != 0 && standby.ready()
		})
		r.Answering = time.Since(killed)
		if err != nil {
			return nil, err
		}
		if _, err := answers(); err != nil {
			return nil, fmt.Errorf("after the takeover: %w", err)
		}
		pt.Kills = append(pt.Kills, r)
		o.logf("cluster: takeover of %d users, run %d: detected %v, held %v, answering %v", n, rep+1,
			r.Detected.Round(time.Millisecond), r.Held.Round(time.Millisecond), r.Answering.Round(time.Millisecond))
		if err := holder.start(ctx, bin); err != nil {
			return nil, err
		}
		if err := back(); err != nil {
			return nil, err
		}
	}

	// SIGTERM: the standby takes the partition at once while the holder
	// still answers; queries asked of the standby meanwhile.
	var h HandoverRun
	var asked, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c := newGQLClient(standby.http, Tenant, 1)
		defer c.close()
		var buf bytes.Buffer
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := c.post(ctx, body, &buf)
			asked.Add(1)
			if err != nil || !bytes.Equal(got, want) {
				failed.Add(1)
			}
		}
	})
	stopped := time.Now()
	exited := make(chan error, 1)
	go func() {
		err := holder.terminate(time.Minute)
		h.Exited = time.Since(stopped)
		exited <- err
	}()
	err = waitFor(ctx, "the standby to take the partition over", 10*time.Minute, 5*time.Millisecond, func() bool {
		return standby.gauge("presence_partitions_held") == 1 && standby.ready()
	})
	h.Answering = time.Since(stopped)
	if err == nil {
		err = <-exited
	}
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	h.Asked, h.Failed = int(asked.Load()), int(failed.Load())
	pt.Graceful = append(pt.Graceful, h)
	o.logf("cluster: handover of %d users on SIGTERM: standby answering %v, holder exited %v, %d of %d queries failed",
		n, h.Answering.Round(time.Millisecond), h.Exited.Round(time.Millisecond), h.Failed, h.Asked)
	if h.Failed > 0 {
		return nil, fmt.Errorf("%d of %d queries asked of the standby during the SIGTERM handover did not get the holder's answer", h.Failed, h.Asked)
	}
	return pt, nil
}

// memoryTenant names the memory part's tenant i.
func memoryTenant(i int) string { return "t" + strconv.Itoa(i) }

// clusterMemory runs the memory part.
func clusterMemory(ctx context.Context, o *Options, bin, dir string, d *MemoryData) error {
	d.Users, d.Tenants, d.Partitions = o.scaled(1_000_000, 4_000), 200, clusterPartitions
	configs := [][2]int{{1, 1}, {2, 1}, {3, 1}, {2, 2}, {3, 2}}
	if o.Short {
		d.Tenants, configs = 8, [][2]int{{1, 1}, {2, 2}}
	}
	perTenant := d.Users / d.Tenants
	d.Users = perTenant * d.Tenants
	nn, err := startNATSNodes(ctx, 1)
	if err != nil {
		return err
	}
	defer nn.close()

	// One instance holds every partition of the empty stream, then has
	// the population published and read; its SIGTERM writes a snapshot of
	// each partition, which every configuration then loads.
	first, err := startInstance(ctx, bin, filepath.Join(dir, "load"), nn.url(), "load", clusterArgs(clusterPartitions, 1, 1)...)
	if err != nil {
		return err
	}
	defer first.kill()
	if err := waitInstances(ctx, []*instance{first}, clusterPartitions, time.Minute); err != nil {
		return err
	}
	if d.Empty, err = settledMemory(ctx, first); err != nil {
		return err
	}
	env, err := dialNATS(ctx, nn.url(), ingest.DefaultStream, ingest.DefaultPrefix)
	if err != nil {
		return err
	}
	defer env.close()
	for t := range d.Tenants {
		pop := NewPopulation(perTenant, uint64(1000+t))
		pop.Offline = 0
		if err := publishAcked(ctx, env.js, env.prefix, memoryTenant(t), pop.Events(perTenant)); err != nil {
			return err
		}
	}
	if err := waitFor(ctx, "the population read", 10*time.Minute, 20*time.Millisecond, func() bool {
		return first.gauge("presence_connected_users") == float64(d.Users)
	}); err != nil {
		return err
	}
	if err := first.terminate(2 * time.Minute); err != nil {
		return err
	}
	o.logf("cluster: memory: %d users of %d tenants in %d partitions published and snapshotted", d.Users, d.Tenants, clusterPartitions)

	for ci, cfg := range configs {
		k, copies := cfg[0], cfg[1]
		ins := make([]*instance, k)
		for i := range ins {
			name := fmt.Sprintf("m%d-%d", ci, i)
			if ins[i], err = startInstance(ctx, bin, filepath.Join(dir, name), nn.url(), name, clusterArgs(clusterPartitions, copies, 1)...); err != nil {
				killAll(ins)
				return err
			}
		}
		p := MemoryPoint{Instances: k, Copies: copies}
		err := waitInstances(ctx, ins, clusterPartitions*min(copies, k), 10*time.Minute)
		total := 0
		for _, in := range ins {
			if err != nil {
				break
			}
			var m InstanceMem
			if m, err = settledMemory(ctx, in); err == nil {
				p.Each = append(p.Each, m)
				total += m.Users
			}
		}
		if err == nil && total != d.Users*min(copies, k) {
			err = fmt.Errorf("%d instances, %d copies: %d users held between them, want %d", k, copies, total, d.Users*min(copies, k))
		}
		// All at once: each sees the others leaving too, so none waits.
		var wg sync.WaitGroup
		for _, in := range ins {
			wg.Go(func() { _ = in.terminate(2 * time.Minute) })
		}
		wg.Wait()
		if err != nil {
			return err
		}
		d.Configs = append(d.Configs, p)
		o.logf("cluster: memory: %d instances, %d copies: %+v", k, copies, p.Each)
		if err := waitMembersGone(ctx, env.js, ingest.DefaultStream); err != nil {
			return err
		}
	}
	return nil
}

// settledMemory asks in queries until it has run two garbage collections
// (which the queries' garbage brings about), then reads its heap in use and
// RSS: the heap then holds little more than what is live.
func settledMemory(ctx context.Context, in *instance) (InstanceMem, error) {
	gcs := in.gauge("go_gc_duration_seconds")
	c := newGQLClient(in.http, memoryTenant(0), 4)
	defer c.close()
	body := GraphQLBody(&engine.Filter{})
	var wg sync.WaitGroup
	done := make(chan struct{})
	var failed atomic.Value
	for range 4 {
		wg.Go(func() {
			var buf bytes.Buffer
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := c.post(ctx, body, &buf); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	err := waitFor(ctx, "two garbage collections", 5*time.Minute, 10*time.Millisecond, func() bool {
		return in.gauge("go_gc_duration_seconds") >= gcs+2 || failed.Load() != nil
	})
	close(done)
	wg.Wait()
	if e, ok := failed.Load().(error); ok {
		return InstanceMem{}, e
	}
	if err != nil {
		return InstanceMem{}, err
	}
	time.Sleep(100 * time.Millisecond) // the sweep
	m := InstanceMem{
		Partitions: int(in.gauge("presence_partitions_held")),
		Users:      int(max(0, in.gauge("presence_connected_users"))),
		HeapInUse:  uint64(in.gauge("go_memstats_heap_inuse_bytes")),
		RSS:        uint64(in.gauge("process_resident_memory_bytes")),
	}
	return m, nil
}

// forwardingTable prints the forwarding part.
func forwardingTable(res *Result, fds []ForwardData) {
	ft := res.table("Cluster: connectedUsersIndicator over HTTP, asked of the tenant's holder (local) and of the two other instances (forwarded), and the same of the floors (an HTTP server answering a constant body, and one answering with a bare NATS request-reply), interleaved, one at a time; 4 partitions, 1 copy, 3 instances; µs, median of the runs",
		"NATS", "users", "runs", "queries per run", "local p50", "forwarded p50", "**forwarded - local p50**", "floor: local p50", "floor: forwarded p50", "**floor: forwarded - local p50**", "local p99", "forwarded p99", "forwarded - local p99", "floor: forwarded - local p99")
	for _, fd := range fds {
		var lp50, fp50, dp50, lp99, fp99, dp99, flp50, ffp50, fdp50, fdp99 []float64
		for _, r := range fd.Runs {
			lp50, fp50, dp50 = append(lp50, r.Local.P50), append(fp50, r.Forwarded.P50), append(dp50, r.Forwarded.P50-r.Local.P50)
			lp99, fp99, dp99 = append(lp99, r.Local.P99), append(fp99, r.Forwarded.P99), append(dp99, r.Forwarded.P99-r.Local.P99)
			flp50, ffp50 = append(flp50, r.FloorLocal.P50), append(ffp50, r.FloorForwarded.P50)
			fdp50, fdp99 = append(fdp50, r.FloorForwarded.P50-r.FloorLocal.P50), append(fdp99, r.FloorForwarded.P99-r.FloorLocal.P99)
		}
		nats := "1 server (streams R1)"
		if fd.Nodes > 1 {
			nats = fmt.Sprintf("%d-node cluster, one instance per node (streams R%d)", fd.Nodes, fd.Nodes)
		}
		ft.Add(nats, fd.Users, len(fd.Runs), fd.Runs[0].Local.N, Median(lp50), Median(fp50), Median(dp50), Median(flp50), Median(ffp50), Median(fdp50),
			Median(lp99), Median(fp99), Median(dp99), Median(fdp99))
		res.target(fmt.Sprintf("forwarding adds to the p50 on loopback, NATS: %s", nats), "≤ 150 µs",
			fmt.Sprintf("%.0f µs (the floor: %.0f µs)", Median(dp50), Median(fdp50)), Median(dp50) <= 150)
	}
	res.note("the floors are processes of their own, like the instances: the forwarding floor is on the NATS node of one of the instances that forward, and asks a process on the holder's node; the floor's forwarded - local is the least any forward over NATS adds here")
}

func clusterTables(res *Result, data *ClusterData) {
	forwardingTable(res, data.Forwarding)

	ms := func(ds []time.Duration) string { return MedianDuration(ds).Round(time.Millisecond).String() }
	tt := res.table("Cluster: one partition's takeover by a standby instance (1 partition, 1 copy, 1 NATS node); from the holder's kill -9, or SIGTERM; median of the runs",
		"users", "snapshot", "events after it", "runs", "kill: detected", "kill: snapshot loaded (held)", "kill: caught up, answering", "load + catch-up", "SIGTERM: standby answering", "SIGTERM: holder exited", "queries failed during SIGTERM")
	for _, p := range data.Takeovers {
		var det, held, ans, work, gans, gexit []time.Duration
		failed, asked := 0, 0
		for _, r := range p.Kills {
			det, held, ans, work = append(det, r.Detected), append(held, r.Held), append(ans, r.Answering), append(work, r.Answering-r.Detected)
		}
		for _, g := range p.Graceful {
			gans, gexit = append(gans, g.Answering), append(gexit, g.Exited)
			failed, asked = failed+g.Failed, asked+g.Asked
		}
		tt.Add(p.Users, mib(uint64(p.Snapshot.Bytes)), p.After, len(p.Kills), ms(det), ms(held), ms(ans), ms(work), ms(gans), ms(gexit), fmt.Sprintf("%d of %d", failed, asked))
	}
	md := &data.Memory
	mt := res.table(fmt.Sprintf("Cluster: memory per instance, %d users (each logged in with a profile) of %d tenants in %d partitions, right after a GC once loaded from the snapshots and idle",
		md.Users, md.Tenants, md.Partitions),
		"instances", "copies", "partitions held (each)", "users held (each)", "heap in use (each)", "RSS (each)", "heap in use, all", "heap bytes per user held")
	mt.Add("1, stream empty", 1, md.Empty.Partitions, 0, mib(md.Empty.HeapInUse), mib(md.Empty.RSS), mib(md.Empty.HeapInUse), "-")
	for _, p := range md.Configs {
		var parts, users, heap, rss []string
		var heapAll uint64
		held := 0
		for _, m := range p.Each {
			parts, users = append(parts, strconv.Itoa(m.Partitions)), append(users, strconv.Itoa(m.Users))
			heap, rss = append(heap, mib(m.HeapInUse)), append(rss, mib(m.RSS))
			heapAll += m.HeapInUse
			held += m.Users
		}
		// Over the empty instance's heap: what the users add.
		perUser := ratio(float64(heapAll)-float64(len(p.Each))*float64(md.Empty.HeapInUse), float64(held))
		mt.Add(p.Instances, p.Copies, strings.Join(parts, ", "), strings.Join(users, ", "), strings.Join(heap, ", "), strings.Join(rss, ", "), mib(heapAll), fmt.Sprintf("%.0f", perUser))
	}
	res.note("every instance is the presenced program (cmd/presenced built by the bench), a process of its own, on 127.0.0.1; NATS is embedded in the bench's process")
	res.note("forwarded answers were checked byte for byte against the holder's, every one; a takeover ends when the standby answers as the holder did before the kill (and its count is the engine's fed the same events)")
	res.note("detection is the holder's member key expiring (TTL 3 s, refreshed every second), as the standby's presence_cluster_instances shows it; held: presence_partitions_held, set once the snapshot is loaded from the object store; answering: /readyz 200 with the partition held")
	res.note("heap in use is go_memstats_heap_inuse_bytes after two garbage collections brought about by queries, RSS process_resident_memory_bytes, both from /metrics; heap bytes per user held: (heap of all instances - that many empty instances) / users held counting copies")
}
