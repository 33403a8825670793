package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/presenced/presenced/ingest"
)

// Membership timing. A member refreshes its key every heartbeatEvery; the
// bucket forgets a key memberTTL after its last refresh, and tells the
// watchers with a marker, so that a member killed with no goodbye is gone
// for the others within memberTTL (contract section 7: its partitions held
// again within 5 s plus the catch-up).
const (
	memberTTL      = 3 * time.Second
	heartbeatEvery = time.Second
	// markerTTL is how long the bucket keeps the marker of an expired key;
	// JetStream's minimum.
	markerTTL = time.Second
)

// Member is what an instance says of itself in the members bucket.
type Member struct {
	// Instance is its name (-instance), the key.
	Instance string `json:"instance"`
	// HTTP is the address it serves on, for operators.
	HTTP string `json:"http"`
	// Ready lists the partitions it holds and has caught up with: the ones
	// it answers for.
	Ready []int `json:"ready"`
	// Leaving says it is stopping (SIGTERM): the others take its
	// partitions over while it still answers for them.
	Leaving bool `json:"leaving,omitempty"`
}

// members keeps this instance's key in the members bucket alive and
// follows everyone's. It is JetStream KV doing the membership: keys with a
// time to live, refreshed, and a watch.
type members struct {
	kv   jetstream.KeyValue
	self Member
	log  *slog.Logger

	mu      sync.Mutex
	live    map[string]Member
	changed chan struct{} // closed and replaced when live changes
	dirty   chan struct{} // 1-buffered: self changed, to be put at once

	stopBeat context.CancelFunc
	beating  sync.WaitGroup
}

// bucketName is the members bucket of stream.
func bucketName(stream string) string { return stream + "_MEMBERS" }

// joinMembers opens (creating when missing) the members bucket of stream
// with replicas replicas and puts self, retrying until ctx ends, and follows the members
// and heartbeats until life ends.
func joinMembers(ctx, life context.Context, js jetstream.JetStream, stream string, replicas int, self Member, log *slog.Logger) (*members, error) {
	var kv jetstream.KeyValue
	err := ingest.Retry(ctx, log, "cluster: opening the members bucket", func(actx context.Context) (err error) {
		kv, err = openMembers(actx, js, stream, replicas)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: members bucket %s: %w", bucketName(stream), err)
	}
	m := &members{kv: kv, self: self, log: log, live: map[string]Member{self.Instance: self},
		changed: make(chan struct{}), dirty: make(chan struct{}, 1)}
	if err := ingest.Retry(ctx, log, "cluster: joining the members", m.put); err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(life)
	if err != nil {
		return nil, fmt.Errorf("cluster: watching %s: %w", bucketName(stream), err)
	}
	go m.follow(life, w)
	bctx, stopBeat := context.WithCancel(life)
	m.stopBeat = stopBeat
	m.beating.Go(func() { m.heartbeat(bctx) })
	return m, nil
}

// openMembers opens the members bucket, creating it when missing. It does
// not update an existing one: on a NATS cluster, instances that start
// together and each create-or-update the bucket wait on each other until
// their requests time out.
func openMembers(ctx context.Context, js jetstream.JetStream, stream string, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, bucketName(stream))
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         bucketName(stream),
		Description:    "presenced instances of stream " + stream + " (section 7 of the contract)",
		History:        1,
		TTL:            memberTTL,
		LimitMarkerTTL: markerTTL,
		Storage:        jetstream.MemoryStorage, // who is alive now: nothing to keep across a restart
		Replicas:       replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.KeyValue(ctx, bucketName(stream)) // another instance made it meanwhile
	}
	return kv, err
}

func (m *members) put(ctx context.Context) error {
	m.mu.Lock()
	data, err := json.Marshal(m.self)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if _, err := m.kv.Put(ctx, m.self.Instance, data); err != nil {
		return fmt.Errorf("cluster: putting member %s: %w", m.self.Instance, err)
	}
	return nil
}

// heartbeat refreshes self's key every heartbeatEvery, and at once when it
// changed, until ctx ends.
func (m *members) heartbeat(ctx context.Context) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-m.dirty:
		}
		pctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
		if err := m.put(pctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cluster: membership heartbeat failed", "err", err)
		}
		cancel()
	}
}

// follow applies the bucket's updates to live until ctx ends.
func (m *members) follow(ctx context.Context, w jetstream.KeyWatcher) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // the end of the initial values
			}
			m.update(e)
		}
	}
}

func (m *members) update(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name := e.Key()
	if name == m.self.Instance {
		return // self is alive as long as it runs, whatever the bucket says
	}
	old, had := m.live[name]
	switch e.Operation() {
	case jetstream.KeyValuePut:
		var v Member
		if err := json.Unmarshal(e.Value(), &v); err != nil || v.Instance != name {
			m.log.Warn("cluster: unreadable member entry ignored", "key", name, "err", err)
			return
		}
		if had && old.HTTP == v.HTTP && old.Leaving == v.Leaving && slices.Equal(old.Ready, v.Ready) {
			return // a heartbeat
		}
		m.live[name] = v
	default: // deleted (a goodbye) or expired (no heartbeat)
		if !had {
			return
		}
		delete(m.live, name)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// setReady records the partitions self is ready for and puts them at once.
func (m *members) setReady(ready []int) {
	m.changeSelf(func(self *Member) bool {
		if slices.Equal(self.Ready, ready) {
			return false
		}
		self.Ready = slices.Clone(ready)
		return true
	})
}

// setLeaving says self is leaving, at once.
func (m *members) setLeaving() {
	m.changeSelf(func(self *Member) bool {
		self.Leaving = true
		return true
	})
}

// changeSelf applies change to self, under the lock; when it reports a
// change, the live members show it at once, and the heartbeat puts it.
func (m *members) changeSelf(change func(self *Member) bool) {
	m.mu.Lock()
	if !change(&m.self) {
		m.mu.Unlock()
		return
	}
	m.live[m.self.Instance] = m.self
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	select {
	case m.dirty <- struct{}{}:
	default:
	}
}

// snapshot returns the live members, sorted by name, and a channel closed
// at the next change.
func (m *members) snapshot() ([]Member, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.live))
	for _, v := range m.live {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Member) int { return compareStrings(a.Instance, b.Instance) })
	return out, m.changed
}

// leave stops the heartbeat and deletes self's key: the others take over
// at once (SIGTERM) rather than after memberTTL.
func (m *members) leave(ctx context.Context) error {
	m.stopBeat()
	m.beating.Wait()
	err := m.kv.Delete(ctx, m.self.Instance)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: leaving: %w", err)
	}
	return nil
}
