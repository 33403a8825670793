package ingest

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

const (
	// aheadLimit bounds the events the tail holds as applied ahead of the
	// stream (about 40 bytes each). When the stream falls that far behind,
	// the tail leaves new events to it until it catches up.
	aheadLimit = 1 << 20
	// aheadWindow is how long the tail remembers an event it applied ahead:
	// between one and two windows. The stream delivers an event within
	// milliseconds of the tail; an event it never delivers (not stored, or
	// past a restart) is forgotten after that.
	aheadWindow = time.Minute
)

// tail applies events from a plain subscription to the event subjects as
// soon as NATS delivers them. The stream stores each event before it
// delivers it, and that store is the slower path: a raw ordered consumer
// following the stream reads about a quarter of what a plain subscriber
// receives (BENCHMARKS.md).
//
// The stream stays the record. The ingester still reads every message from
// it, in order, and dead-letters, counts and tracks sequences as before; for
// a message the tail has already applied it counts the tail's outcome instead
// of applying it again. So every stored event is counted once, with the
// outcome it had when it took effect, and AppliedSeq, Checkpoint and
// snapshots keep their meaning (a snapshot may also hold events past its
// sequence; applying them again on replay changes nothing).
//
// The tail only applies what the stream would apply the same way, and only
// once the ingester has caught up with the stream: valid events that carry
// their own ts, well within the allowed clock skew of now. An event without
// ts takes the time the stream stored it, and a bad message must be
// dead-lettered by the stream's reader: both wait for the stream.
type tail struct {
	ing   *Ingester
	seeds [4]maphash.Seed

	// mu is held while an event is applied and recorded, so that the
	// stream's reader finds every event the tail has applied.
	mu       sync.Mutex
	ahead    map[digest]aheadEvent
	previous map[digest]aheadEvent // the window before; see aheadWindow
	rotated  time.Time
	// held is len(ahead)+len(previous), for the stream's reader to skip
	// the digest while the tail holds nothing (catching up, or idle).
	held atomic.Int64
}

// digest identifies a message by its subject and body. 128 bits make a
// collision between two different messages of one window as likely as none.
type digest [2]uint64

// aheadEvent is what the stream's reader counts for an event the tail
// applied.
type aheadEvent struct {
	typ presence.Type
	res engine.Result
}

func newTail(ing *Ingester) *tail {
	return &tail{
		ing:      ing,
		seeds:    [4]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed(), maphash.MakeSeed(), maphash.MakeSeed()},
		ahead:    make(map[digest]aheadEvent),
		previous: make(map[digest]aheadEvent),
		rotated:  time.Now(),
	}
}

// subscribe starts the tail's subscription. Its handler owns ev.
func (t *tail) subscribe() (*nats.Subscription, error) {
	var ev presence.Event
	return t.ing.cfg.Conn.Subscribe(t.ing.subjects, func(msg *nats.Msg) { t.handle(msg, &ev) })
}

func (t *tail) digest(subject string, data []byte) digest {
	// One-shot hashes: maphash.Hash's Write buffers and costs twice as much.
	return digest{
		maphash.Bytes(t.seeds[0], data) ^ maphash.String(t.seeds[1], subject),
		maphash.Bytes(t.seeds[2], data) ^ maphash.String(t.seeds[3], subject),
	}
}

// handle applies one message from the subscription, or leaves it to the
// stream.
func (t *tail) handle(msg *nats.Msg, ev *presence.Event) {
	if !t.ing.caughtUp.Load() {
		return
	}
	start := time.Now()
	tenant, typ, err := presence.ParseSubject(t.ing.cfg.Prefix, msg.Subject)
	if err != nil {
		return
	}
	ev.Type = typ
	if presence.Decode(msg.Data, ev) != nil || !ev.Has(presence.HasTS) {
		return
	}
	// Half the allowed skew: the stream's reader checks ts against the
	// time the server stored the message, which is not exactly now.
	if ev.ResolveTime(start, t.ing.cfg.MaxClockSkew/2) != nil {
		return
	}
	d := t.digest(msg.Subject, msg.Data)

	t.mu.Lock()
	defer t.mu.Unlock()
	if start.Sub(t.rotated) >= aheadWindow {
		clear(t.previous)
		t.ahead, t.previous = t.previous, t.ahead
		t.rotated = start
		t.held.Store(int64(len(t.previous)))
	}
	if len(t.ahead)+len(t.previous) >= aheadLimit {
		return
	}
	if _, ok := t.ahead[d]; ok {
		return // the same message again: the stream applies the repeat
	}
	if _, ok := t.previous[d]; ok {
		return
	}
	res := t.ing.cfg.Applier.Apply(tenant, ev)
	t.ahead[d] = aheadEvent{typ: typ, res: res}
	t.held.Store(int64(len(t.ahead) + len(t.previous)))
	t.ing.metrics.apply.Observe(time.Since(start).Seconds())
	t.ing.metrics.ahead.Inc()
}

// take reports whether the tail applied the message with this subject and
// body, and what came of it, and forgets it.
func (t *tail) take(subject string, data []byte) (aheadEvent, bool) {
	if t.held.Load() == 0 {
		return aheadEvent{}, false
	}
	d := t.digest(subject, data)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range [2]map[digest]aheadEvent{t.ahead, t.previous} {
		if a, ok := m[d]; ok {
			delete(m, d)
			t.held.Add(-1)
			return a, true
		}
	}
	return aheadEvent{}, false
}
