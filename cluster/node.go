package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/presence"
)

// Defaults of Config.
const (
	DefaultCopies = 2
	// handoverWait bounds how long a stopping instance keeps answering for
	// its partitions while their next holders catch up.
	handoverWait = 30 * time.Second
)

// Config configures a Node. Conn, JS, Instance and Ingest.Stream are
// required.
type Config struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Instance is this instance's name, unique among those of the stream.
	Instance string
	// HTTPAddr is where it serves HTTP, published for operators.
	HTTPAddr string
	// Partitions is the stream's partition count; zero means 1.
	Partitions int
	// Copies is how many running instances hold each partition (all of
	// them when fewer run); zero means DefaultCopies.
	Copies int
	// Replicas is the replicas of the buckets the node creates; zero means 1.
	Replicas int
	// Engine configures each partition's engine.
	Engine engine.Config
	// Ingest is the template of each partition's reader: its Conn, Applier,
	// Partition(s), start and Logger are the node's.
	Ingest ingest.Config
	// DataDir holds the snapshots (DataDir/snapshots), taken every
	// SnapshotInterval (zero: only when the instance stops).
	DataDir          string
	SnapshotInterval time.Duration
	Logger           *slog.Logger
	// Registerer gets the node's metrics (section 7 of the contract).
	Registerer prometheus.Registerer
}

// Node is this instance's part of the service: the partitions it holds,
// which it answers for, and the requests it forwards for the others.
type Node struct {
	cfg     Config
	log     *slog.Logger
	members *members
	fwd     *forwarder
	metrics *nodeMetrics

	exec       Executor
	wake       chan struct{} // 1-buffered: a holder's readiness changed
	leave      chan struct{} // closed by Leave
	end        context.CancelFunc
	stopped    chan struct{} // closed when run returns
	failed     chan error    // 1-buffered: a partition's reader stopped for good
	reconciled atomic.Bool   // the assignment was computed once

	mu      sync.Mutex
	holders map[int]*holder
	live    int // instances seen
}

// Start joins the members of the stream and starts holding the partitions
// assigned to this instance; ctx bounds the start only. The node runs
// until Leave, so that it goes on answering for its partitions, and
// following the others, while it hands them over. What answers the
// requests forwarded here (the api's server) is set with SetExecutor.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Conn == nil || cfg.JS == nil || cfg.Instance == "" || cfg.Ingest.Stream == "" {
		return nil, errors.New("cluster: Conn, JS, Instance and Ingest.Stream are required")
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.Copies == 0 {
		cfg.Copies = DefaultCopies
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("instance", cfg.Instance), holders: map[int]*holder{},
		wake: make(chan struct{}, 1), leave: make(chan struct{}), stopped: make(chan struct{}), failed: make(chan error, 1)}
	var err error
	if n.metrics, err = newNodeMetrics(cfg.Registerer, n); err != nil {
		return nil, err
	}
	n.fwd = &forwarder{nc: cfg.Conn, stream: cfg.Ingest.Stream, count: n.metrics.forwarded}
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	n.members, err = joinMembers(ctx, life, cfg.JS, cfg.Ingest.Stream, cfg.Replicas,
		Member{Instance: cfg.Instance, HTTP: cfg.HTTPAddr}, n.log)
	if err != nil {
		end()
		return nil, err
	}
	n.end = end
	go n.run(life)
	return n, nil
}

// SetExecutor sets what answers the requests forwarded here.
func (n *Node) SetExecutor(exec Executor) {
	n.mu.Lock()
	n.exec = exec
	n.mu.Unlock()
}

// ServeForwarded answers a request forwarded here by another instance (or
// this one) from this instance's own state.
func (n *Node) ServeForwarded(ctx context.Context, req api.ForwardRequest) api.Forwarded {
	n.mu.Lock()
	exec := n.exec
	n.mu.Unlock()
	if exec == nil {
		return api.Forwarded{Status: 503, ContentType: "text/plain; charset=utf-8", Body: []byte("cluster: not serving yet\n")}
	}
	return exec.ServeForwarded(ctx, req)
}

func (n *Node) readyChanged() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run follows the members and holds what is assigned to this instance,
// until ctx (the node's life) ends.
func (n *Node) run(ctx context.Context) {
	defer close(n.stopped)
	recheck := time.NewTicker(time.Second)
	defer recheck.Stop()
	for {
		live, changed := n.members.snapshot()
		n.reconcile(ctx, live, changed)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-n.wake:
		case <-recheck.C:
		}
	}
}

// reconcile takes the partitions assigned to this instance that it does not
// hold yet, and drops those assigned elsewhere once every one of their
// holders is ready: a partition moving away is answered for until then.
// Taking a partition loads its snapshot, which takes a while: once changed
// (live's) is closed, it takes no more in this pass (having taken one, so
// that it progresses), and the next pass goes by the new members. Instances
// that start together then do not each load every partition before they
// see the others.
func (n *Node) reconcile(ctx context.Context, live []Member, changed <-chan struct{}) {
	took := 0
	var names []string
	ready := map[string][]int{}
	leaving := n.leaving()
	for _, m := range live {
		ready[m.Instance] = m.Ready
		if m.Leaving || (m.Instance == n.cfg.Instance && leaving) {
			continue
		}
		names = append(names, m.Instance)
	}
	assign := Assign(n.cfg.Partitions, n.cfg.Copies, names)
	n.mu.Lock()
	n.live = len(names)
	n.mu.Unlock()
	for p, holders := range assign {
		mine := slices.Contains(holders, n.cfg.Instance)
		n.mu.Lock()
		h := n.holders[p]
		n.mu.Unlock()
		switch {
		case mine && h == nil && took > 0 && isClosed(changed):
			// The members changed meanwhile: reconcile again first.
		case mine && h == nil:
			took++
			h, err := n.take(ctx, p)
			if err != nil {
				n.log.Error("cluster: cannot take partition", "partition", p, "err", err)
				continue
			}
			n.log.Info("cluster: taking partition", "partition", p)
			n.mu.Lock()
			n.holders[p] = h
			n.mu.Unlock()
		case !mine && h != nil && allReady(holders, p, ready):
			n.log.Info("cluster: handing partition over", "partition", p, "to", holders)
			h.unserve() // the requests on their way answered first, from here
			n.mu.Lock()
			delete(n.holders, p)
			n.mu.Unlock()
			h.stop(false)
		}
	}
	n.members.setReady(n.readyPartitions())
	n.reconciled.Store(true)
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// leaving reports whether Leave was called.
func (n *Node) leaving() bool {
	select {
	case <-n.leave:
		return true
	default:
		return false
	}
}

// fail reports a partition's reader that stopped for good (a stream that no
// longer fits, the connection closed): the instance cannot go on.
func (n *Node) fail(err error) {
	select {
	case n.failed <- err:
	default:
	}
}

// Failed receives the error of a partition's reader that stopped for good.
func (n *Node) Failed() <-chan error { return n.failed }

// allReady reports whether partition p has holders and each says it is
// ready for p.
func allReady(holders []string, p int, ready map[string][]int) bool {
	if len(holders) == 0 {
		return false
	}
	for _, h := range holders {
		if !slices.Contains(ready[h], p) {
			return false
		}
	}
	return true
}

func (n *Node) readyPartitions() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []int
	for p, h := range n.holders {
		if h.ready.Load() {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Ready reports whether this instance has taken what is assigned to it and
// is caught up with every partition it holds, and can reach NATS (contract
// section 7: /readyz). A leaving instance is not ready: it still answers,
// but a load balancer should send the new work elsewhere.
func (n *Node) Ready() bool {
	if !n.reconciled.Load() || !n.cfg.Conn.IsConnected() || n.leaving() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.holders {
		if !h.ready.Load() {
			return false
		}
	}
	return true
}

var _ api.Router = (*Node)(nil)

// Local returns the engine of tenant's partition when this instance holds
// it and is caught up: the tenant is then answered from here.
func (n *Node) Local(tenant string) (api.Engine, bool) {
	h := n.holder(tenant)
	if h == nil || !h.ready.Load() {
		return nil, false
	}
	return h.engine, true
}

// holder returns the holder of tenant's partition here, or nil.
func (n *Node) holder(tenant string) *holder {
	p := presence.Partition(tenant, n.cfg.Partitions)
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.holders[p]
}

// Forward has a caught-up holder of req's tenant's partition answer it and
// returns its answer as is, or ErrUnavailable.
func (n *Node) Forward(ctx context.Context, req api.ForwardRequest) (api.Forwarded, error) {
	return n.fwd.forward(ctx, presence.Partition(req.Tenant, n.cfg.Partitions), req)
}

// Leave hands this instance's partitions over (SIGTERM): it tells the
// others it is leaving, so that they take its partitions at once, keeps
// answering for each until its next holders are ready (or handoverWait
// passes, or ctx ends), then stops holding them, with a last snapshot of
// each, and leaves the members. It is called once.
func (n *Node) Leave(ctx context.Context) error {
	close(n.leave)
	n.members.setLeaving()
	deadline := time.NewTimer(handoverWait)
	defer deadline.Stop()
handover:
	for {
		live, changed := n.members.snapshot()
		if n.handedOver(live) {
			break
		}
		select {
		case <-changed:
		case <-deadline.C:
			n.log.Warn("cluster: partitions not handed over in time", "waited", handoverWait)
			break handover
		case <-ctx.Done():
			break handover
		}
	}
	n.end()
	<-n.stopped
	n.mu.Lock()
	held := maps.Clone(n.holders)
	n.mu.Unlock()
	for _, h := range held {
		h.unserve()
	}
	n.mu.Lock()
	n.holders = map[int]*holder{}
	n.mu.Unlock()
	for _, h := range held {
		h.stop(true)
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return n.members.leave(lctx)
}

// handedOver reports whether every partition this instance holds is held,
// and answered for, by others among live (or no other instance runs).
func (n *Node) handedOver(live []Member) bool {
	var names []string
	ready := map[string][]int{}
	for _, m := range live {
		ready[m.Instance] = m.Ready
		if m.Instance != n.cfg.Instance && !m.Leaving {
			names = append(names, m.Instance)
		}
	}
	if len(names) == 0 {
		return true
	}
	assign := Assign(n.cfg.Partitions, n.cfg.Copies, names)
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.holders {
		if !allReady(assign[p], p, ready) {
			return false
		}
	}
	return true
}

// Stats merges the engine stats of the partitions held.
func (n *Node) Stats() engine.Stats {
	n.mu.Lock()
	engines := make([]*engine.Engine, 0, len(n.holders))
	for _, h := range n.holders {
		engines = append(engines, h.engine)
	}
	n.mu.Unlock()
	var st engine.Stats
	for _, e := range engines {
		s := e.Stats()
		st.Users += s.Users
		st.Tenants += s.Tenants
		st.IDs += s.IDs
		st.Views += s.Views
		st.ViewHits += s.ViewHits
		st.ViewMisses += s.ViewMisses
		st.PerTenant = append(st.PerTenant, s.PerTenant...)
	}
	slices.SortFunc(st.PerTenant, func(a, b engine.TenantStats) int { return compareStrings(a.Tenant, b.Tenant) })
	return st
}

// String is for logs.
func (n *Node) String() string { return fmt.Sprintf("node %s", n.cfg.Instance) }
