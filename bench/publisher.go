package bench

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
)

// The one publisher of every scenario: acked, through the project's own
// publisher, or plain (core NATS, fire and forget), all at once or paced by
// the clock. Events go to <prefix>.<tenant>.<type>, the prefix being the
// one the stream under test captures.

// publishAcked publishes evs of tenant with the project's publisher, which
// waits for every JetStream acknowledgement, in batches.
func publishAcked(ctx context.Context, js jetstream.JetStream, prefix, tenant string, evs []presence.Event) error {
	pub, err := publish.New(js, prefix)
	if err != nil {
		return err
	}
	const batch = 4096
	for i := 0; i < len(evs); i += batch {
		if err := pub.PublishBatch(ctx, tenant, evs[i:min(i+batch, len(evs))]); err != nil {
			return err
		}
	}
	return nil
}

// wire is an event as a plain publisher sends it.
type wire struct {
	subject string
	data    []byte
}

// subjects are one tenant's subjects under a prefix, by event type.
type subjects [presence.NumTypes]string

func newSubjects(prefix, tenant string) (*subjects, error) {
	var s subjects
	for ty := presence.Login; ty < presence.NumTypes; ty++ {
		var err error
		if s[ty], err = presence.Subject(prefix, tenant, ty); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

// wire validates ev and encodes it, appending to buf.
func (s *subjects) wire(ev *presence.Event, buf []byte) (wire, error) {
	if err := ev.Validate(); err != nil {
		return wire{}, err
	}
	return wire{s[ev.Type], ev.AppendJSON(buf)}, nil
}

// encode returns evs of tenant as plain publishes under prefix.
func encode(prefix, tenant string, evs []presence.Event) ([]wire, error) {
	s, err := newSubjects(prefix, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]wire, len(evs))
	for i := range evs {
		if out[i], err = s.wire(&evs[i], nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// publishPlain sends msgs with a plain (core NATS) publish, fire and forget,
// as fast as the connection takes them, then flushes.
func publishPlain(nc *nats.Conn, msgs []wire) error {
	for _, m := range msgs {
		if err := nc.Publish(m.subject, m.data); err != nil {
			return err
		}
	}
	return nc.FlushTimeout(time.Minute)
}

// publishAt sends next(0), next(1), ... with plain publishes at rate per
// second, open loop: each millisecond it sends what the clock says is due,
// whatever the consumer does, until ctx ends or total are sent (0: no
// end); then it flushes. It returns how many it sent and how far behind
// its schedule it fell at most (the age of the oldest message due but not
// sent, at a tick).
func publishAt(ctx context.Context, nc *nats.Conn, rate float64, total int, next func(i int) (wire, error)) (sent int, behind time.Duration, err error) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for total == 0 || sent < total {
		select {
		case <-ctx.Done():
			return sent, behind, nc.Flush()
		case <-tick.C:
		}
		elapsed := time.Since(start)
		behind = max(behind, elapsed-time.Duration(float64(sent)/rate*float64(time.Second)))
		due := int(elapsed.Seconds() * rate)
		if total > 0 {
			due = min(due, total)
		}
		for ; sent < due; sent++ {
			m, err := next(sent)
			if err == nil {
				err = nc.Publish(m.subject, m.data)
			}
			if err != nil {
				return sent, behind, err
			}
		}
	}
	return sent, behind, nc.Flush()
}
