package cluster

import (
	"context"
	"sync"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Follow watches f for tenant: from this instance's engine while it holds
// the tenant's partition, caught up, else through a holder (relay.go). A
// watch of a partition this instance stops holding moves to a holder
// elsewhere; the subscription goes on (contract section 7).
func (n *Node) Follow(ctx context.Context, tenant string, f *engine.Filter) (api.Watcher, error) {
	w := &nodeWatch{n: n, ctx: ctx, tenant: tenant, f: *f, p: presence.Partition(tenant, n.cfg.Partitions),
		closed: make(chan struct{})}
	if err := w.attach(); err != nil {
		return nil, err
	}
	return w, nil
}

// nodeWatch is what Follow returns: a watch of a local engine, or of a
// holder's relayed.
type nodeWatch struct {
	n      *Node
	ctx    context.Context
	tenant string
	f      engine.Filter
	p      int
	closed chan struct{}

	mu     sync.Mutex
	local  *engine.Watch
	holder *holder // of local
	remote *remoteWatch
	err    error
}

// attach starts following from where the partition is answered now. The
// caller holds mu, or has w to itself.
func (w *nodeWatch) attach() error {
	if h := w.n.holder(w.tenant); h != nil && h.ready.Load() {
		w.local, w.holder = h.engine.Watch(w.tenant, &w.f), h
		return nil
	}
	r, err := w.n.fwd.watch(w.ctx, w.p, w.tenant, &w.f)
	if err != nil {
		return err
	}
	w.remote = r
	return nil
}

// Next returns the current value and a channel closed when it changes, or
// when the partition stops being held here (the next Next then follows
// from its next holder), or when the watch fails (Err).
func (w *nodeWatch) Next() (engine.Indicator, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return engine.Indicator{}, nil
	}
	if w.local != nil {
		select {
		case <-w.holder.done: // the partition moved on
			w.local.Close()
			w.local, w.holder = nil, nil
			if w.err = w.attach(); w.err != nil {
				return engine.Indicator{}, nil
			}
		default:
		}
	}
	if w.remote != nil {
		return w.remote.Next()
	}
	ind, changed := w.local.Next()
	out := make(chan struct{})
	done := w.holder.done
	go func() {
		select {
		case <-changed:
		case <-done:
		case <-w.closed:
		}
		close(out)
	}()
	return ind, out
}

// Err says why the watch could not go on (no holder reachable), nil while
// it does.
func (w *nodeWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && w.remote != nil {
		return w.remote.Err()
	}
	return w.err
}

// Close ends the watch.
func (w *nodeWatch) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
		return
	default:
	}
	close(w.closed)
	if w.local != nil {
		w.local.Close()
	}
	if w.remote != nil {
		w.remote.Close()
	}
}
