package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/snapshot"
)

// holder holds one partition: an engine of its own, the reader of the
// partition's messages of the stream into it, its expiry timer and its
// snapshots. It answers for the partition (through its micro service) only
// once caught up with the stream.
type holder struct {
	n      *Node
	p      int
	log    *slog.Logger
	engine *engine.Engine
	ing    *ingest.Ingester
	dir    *snapshot.Dir
	bucket *snapshot.Bucket

	cancel  context.CancelFunc
	done    chan struct{}
	metrics *scopedRegisterer // nil without a registry
	snaps   *snapshotMetrics

	mu      sync.Mutex
	serving *serving // nil while not caught up
	ready   atomic.Bool
}

// take starts holding partition p: its newest snapshot (the data dir's,
// else the object store's), then the stream from there. It returns once
// the reading has started; ready turns true when caught up.
func (n *Node) take(ctx context.Context, p int) (*holder, error) {
	eng, err := engine.New(n.cfg.Engine)
	if err != nil {
		return nil, err
	}
	h := &holder{n: n, p: p, log: n.log.With("partition", p), engine: eng, done: make(chan struct{}),
		dir:    &snapshot.Dir{Path: n.snapshotDir(p), Logger: n.log},
		bucket: snapshot.NewBucket(n.cfg.JS, n.cfg.Ingest.Stream+"_SNAPSHOTS").Prefix(n.snapshotPrefix(p)).Replicas(n.cfg.Replicas)}
	info := h.load(ctx)
	icfg := n.cfg.Ingest
	icfg.Conn, icfg.Applier = n.cfg.Conn, eng
	icfg.Partitions, icfg.Partition = n.cfg.Partitions, p
	icfg.StartSeq, icfg.StreamCreated = info.Sequence+1, info.StreamCreated
	icfg.Logger = h.log
	if n.cfg.Registerer != nil {
		h.metrics = &scopedRegisterer{reg: n.cfg.Registerer}
		icfg.Registerer = h.metrics
	}
	var reg prometheus.Registerer
	if h.metrics != nil {
		reg = h.metrics
	}
	if h.snaps, err = newSnapshotMetrics(reg, n.cfg.Partitions, p); err != nil {
		h.releaseMetrics()
		return nil, fmt.Errorf("cluster: registering snapshot metrics: %w", err)
	}
	if h.ing, err = ingest.New(icfg); err != nil {
		h.releaseMetrics()
		return nil, err
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	var work sync.WaitGroup
	work.Go(func() {
		if err := h.ing.Run(hctx); err != nil {
			h.log.Error("cluster: reading the partition stopped", "err", err)
			n.fail(err)
		}
	})
	work.Go(func() { h.followReady(hctx) })
	work.Go(func() { h.expireLoop(hctx) })
	work.Go(func() { h.snapshotLoop(hctx) })
	go func() {
		work.Wait()
		close(h.done)
	}()
	return h, nil
}

// load reads the partition's newest usable snapshot into the engine and
// returns what it covers (zero: none, the stream is read from its start).
func (h *holder) load(ctx context.Context) engine.SnapshotInfo {
	stream := h.n.cfg.Ingest.Stream
	accept := func(info engine.SnapshotInfo) error {
		if info.Stream != "" && info.Stream != stream {
			return fmt.Errorf("taken of stream %s, and -stream is %s", info.Stream, stream)
		}
		return nil
	}
	info, err := h.dir.Load(h.engine, accept)
	from := "data dir"
	if err != nil || info.Sequence == 0 {
		if err != nil {
			h.log.Warn("cluster: no snapshot from the data dir", "err", err)
		}
		from = "object store"
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		info, err = h.bucket.Load(lctx, h.engine, accept)
		cancel()
		if err != nil {
			h.log.Info("cluster: no snapshot from the object store: reading the partition from the stream's start", "err", err)
			return engine.SnapshotInfo{}
		}
	}
	if info.Sequence > 0 {
		h.log.Info("cluster: loaded snapshot", "from", from, "sequence", info.Sequence, "format", info.Version,
			"written", info.Written, "users", h.engine.Stats().Users)
	}
	return info
}

// followReady serves the partition while the reader is caught up, and
// tells the node whenever that changes.
func (h *holder) followReady(ctx context.Context) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := h.ing.Ready()
		if ready != h.ready.Load() {
			if ready {
				s, err := serve(ctx, h.n.cfg.Conn, h.n.cfg.Ingest.Stream, h.n.cfg.Instance, h.p, h.n, h.engine)
				if err != nil {
					h.log.Warn("cluster: cannot serve the partition yet", "err", err)
					ready = false
				} else {
					h.mu.Lock()
					h.serving = s
					h.mu.Unlock()
				}
			} else {
				h.unserve()
			}
			if ready != h.ready.Load() {
				h.ready.Store(ready)
				h.n.readyChanged()
			}
		}
		select {
		case <-ctx.Done():
			h.unserve()
			return
		case <-tick.C:
		}
	}
}

func (h *holder) unserve() {
	h.mu.Lock()
	s := h.serving
	h.serving = nil
	h.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// expireLoop ends expired sessions every tenth of the TTL (at most every
// second, at least every minute), so a session outlives its TTL by at most
// that much.
func (h *holder) expireLoop(ctx context.Context) {
	ttl := h.n.cfg.Engine.SessionTTL
	if ttl == 0 {
		return
	}
	tick := time.NewTicker(min(max(ttl/10, time.Second), time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if n := h.engine.Expire(now); n > 0 {
				h.log.Debug("sessions expired", "count", n)
			}
		}
	}
}

func (h *holder) snapshotLoop(ctx context.Context) {
	if h.n.cfg.SnapshotInterval == 0 {
		return
	}
	tick := time.NewTicker(h.n.cfg.SnapshotInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := h.snapshot(false); err != nil {
				h.log.Error("snapshot failed", "err", err)
			}
		}
	}
}

// snapshot writes the partition's state as of its last applied message to
// the data dir and the object store. Ingest waits only while the engine
// takes the cut (each shard's tenants listed), not while it is encoded
// (engine.Cut) nor for the disk. A snapshot written is timed in the
// snapshot metrics, up to its copy in the object store. alone says that
// nothing changes the engine meanwhile (engine.Cut.Alone).
func (h *holder) snapshot(alone bool) error {
	start := time.Now()
	var cut *engine.Cut
	var info engine.SnapshotInfo
	h.ing.Checkpoint(func(pos ingest.Position) {
		info = engine.SnapshotInfo{Sequence: pos.Seq, Written: time.Now(), Stream: h.n.cfg.Ingest.Stream, StreamCreated: pos.StreamCreated}
		cut = h.engine.Cut()
	})
	defer cut.Release() // written, or given up if the file cannot be made
	if info.Sequence == 0 {
		return nil
	}
	cut.Alone = alone
	path, err := h.dir.Save(info, func(w io.Writer) error { return cut.Write(w, info) })
	if err != nil {
		return err
	}
	// The object store is a convenience for the next holder: failing to
	// update it leaves it a longer replay, not a wrong state. It is sent
	// from the file just written (the page cache), as the file was
	// written: never the whole snapshot in memory.
	f, err := os.Open(path)
	if err != nil {
		h.log.Warn("snapshot not copied to the object store", "err", err)
		h.snaps.written(start)
		return nil
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch err := h.bucket.Save(ctx, f, info); {
	case errors.Is(err, snapshot.ErrNotNewer):
		h.log.Debug("snapshot not copied to the object store: another instance's is as new", "err", err)
	case err != nil:
		h.log.Warn("snapshot not copied to the object store", "err", err)
	}
	h.snaps.written(start)
	return nil
}

// stop stops holding the partition: it stops answering for it (telling the
// fronts of its relayed watches to move on), stops reading, and, when final
// is set (the instance stops), writes a last snapshot.
func (h *holder) stop(final bool) {
	h.cancel()
	<-h.done
	h.ready.Store(false)
	if final { // the reading and the expiry have stopped
		if err := h.snapshot(true); err != nil {
			h.log.Error("final snapshot failed", "err", err)
		}
	}
	h.releaseMetrics()
}

func (h *holder) releaseMetrics() {
	if h.metrics != nil {
		h.metrics.release()
	}
}

// snapshotDir is where partition p's snapshots go in the data dir: the
// snapshots directory itself with one partition, as before partitions.
func (n *Node) snapshotDir(p int) string {
	dir := filepath.Join(n.cfg.DataDir, "snapshots")
	if n.cfg.Partitions > 1 {
		dir = filepath.Join(dir, "p"+strconv.Itoa(p))
	}
	return dir
}

// snapshotPrefix names partition p's objects in the object store: none with
// one partition, as before partitions.
func (n *Node) snapshotPrefix(p int) string {
	if n.cfg.Partitions > 1 {
		return "p" + strconv.Itoa(p) + "-"
	}
	return ""
}

// scopedRegisterer registers a holder's collectors in the node's registry
// and takes them all out again when the holder stops, so that the
// partition can be taken again later.
type scopedRegisterer struct {
	reg prometheus.Registerer
	mu  sync.Mutex
	cs  []prometheus.Collector
}

func (s *scopedRegisterer) Register(c prometheus.Collector) error {
	if err := s.reg.Register(c); err != nil {
		return err
	}
	s.mu.Lock()
	s.cs = append(s.cs, c)
	s.mu.Unlock()
	return nil
}

func (s *scopedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := s.Register(c); err != nil {
			panic(err)
		}
	}
}

func (s *scopedRegisterer) Unregister(c prometheus.Collector) bool { return s.reg.Unregister(c) }

// release unregisters every collector registered through s.
func (s *scopedRegisterer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cs {
		s.reg.Unregister(c)
	}
	s.cs = nil
}
