package publish

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/presence"
)

// DefaultPrefix is the subject prefix New uses for an empty prefix.
const DefaultPrefix = "presence"

// window bounds the publishes of one batch awaiting their ack: enough to keep
// the connection busy, and far below jetstream's default cap of 4000 pending
// acks per JetStream context, past which PublishMsgAsync stalls and fails.
const window = 256

// maxPooled bounds the capacity of a buffer kept for reuse, so that one huge
// batch does not pin its memory.
const maxPooled = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooled {
		bufPool.Put(bp)
	}
}

// Publisher publishes presence events with JetStream and waits for their
// acknowledgement. It is safe for concurrent use.
type Publisher struct {
	js     jetstream.JetStream
	prefix string
}

// New returns a Publisher that publishes through js on subjects
// <prefix>.<tenantId>.<type>. An empty prefix means DefaultPrefix; prefix
// must otherwise be a NATS subject of literal tokens ("acme.presence").
func New(js jetstream.JetStream, prefix string) (*Publisher, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: js: required", ErrConfig)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	// Subject checks the prefix first; the tenant and type given are valid.
	if _, err := presence.Subject(prefix, "t", presence.Login); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &Publisher{js: js, prefix: prefix}, nil
}

// Prefix returns the subject prefix of p.
func (p *Publisher) Prefix() string { return p.prefix }

// Publish validates ev and tenant, publishes ev on
// <prefix>.<tenant>.<ev.Type> and waits for JetStream's acknowledgement. An
// invalid event is not published: the error matches ErrInvalid and wraps the
// *presence.FieldError. Any other error matches ErrNotAcked. ev is not
// modified; without a ts the engine uses the time the stream stored it.
func (p *Publisher) Publish(ctx context.Context, tenant string, ev *presence.Event) error {
	subject, err := p.subject(tenant, ev)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	bp := bufPool.Get().(*[]byte)
	*bp = ev.AppendJSON((*bp)[:0])
	// PublishMsg copies the payload into the connection's buffer, retries
	// included, before it returns: the buffer can go back at once.
	_, err = p.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: *bp})
	putBuf(bp)
	if err != nil {
		return notAcked("", subject, ev, err)
	}
	return nil
}

// PublishBatch publishes evs, all of tenant, and waits until JetStream has
// acknowledged every one. It sends them in order without waiting for each ack
// in turn (at most 256 await theirs at a time), so the stream may store them
// in another order when one is sent again (after "no responders", while a
// stream comes up or changes leader): give the events of one user distinct
// ts values, as the contract's ordering asks anyway.
//
// It validates every event first and publishes none when one is invalid
// (ErrInvalid, naming it as evs[i]). When some are not acknowledged, the
// error matches ErrNotAcked, counts them and names the first; the others are
// stored. evs is not modified.
func (p *Publisher) PublishBatch(ctx context.Context, tenant string, evs []presence.Event) error {
	// The events share the tenant: one subject per type.
	var subjects [presence.NumTypes]string
	for i := range evs {
		ev := &evs[i]
		if err := ev.Validate(); err != nil {
			return fmt.Errorf("%w: evs[%d]: %w", ErrInvalid, i, err)
		}
		if ev.Type < presence.NumTypes && subjects[ev.Type] != "" {
			continue
		}
		s, err := presence.Subject(p.prefix, tenant, ev.Type)
		if err != nil {
			return fmt.Errorf("%w: evs[%d]: %w", ErrInvalid, i, err)
		}
		subjects[ev.Type] = s
	}

	var (
		bp        = bufPool.Get().(*[]byte)
		buf       = (*bp)[:0]
		futs      = make([]jetstream.PubAckFuture, len(evs))
		failed    int
		first     = -1  // index of the first event not acknowledged
		firstErr  error // and why
		abandoned bool  // a future was left unresolved when ctx ended
		settled   = 0   // futs[:settled] have been waited for
	)
	fail := func(i int, err error) {
		failed++
		if first < 0 || i < first {
			first, firstErr = i, err
		}
	}
	settle := func(n int) {
		for ; settled < n; settled++ {
			if futs[settled] == nil {
				continue // not sent: already counted
			}
			resolved, err := await(ctx, futs[settled])
			abandoned = abandoned || !resolved
			if err != nil {
				fail(settled, err)
			}
		}
	}
	for i := range evs {
		settle(i + 1 - window)
		if err := ctx.Err(); err != nil {
			for j := i; j < len(evs); j++ {
				fail(j, err)
			}
			break
		}
		start := len(buf)
		buf = evs[i].AppendJSON(buf)
		// The message keeps its slice of buf until its ack: a retry after
		// "no responders" sends it again. Appending past it leaves it intact.
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: subjects[evs[i].Type], Data: buf[start:]})
		if err != nil {
			fail(i, err)
			continue
		}
		futs[i] = f
	}
	settle(len(evs))
	if !abandoned {
		*bp = buf
		putBuf(bp)
	}
	if failed > 0 {
		ev := &evs[first]
		which := strconv.Itoa(failed) + " of " + strconv.Itoa(len(evs)) + " events, first evs[" + strconv.Itoa(first) + "] "
		return notAcked(which, subjects[ev.Type], ev, firstErr)
	}
	return nil
}

// await waits for the ack of f. resolved is false when ctx ended first: the
// ack may still come, or a retry may still send the message.
func await(ctx context.Context, f jetstream.PubAckFuture) (resolved bool, err error) {
	select {
	case <-f.Ok():
		return true, nil
	case err := <-f.Err():
		return true, err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// subject validates ev and tenant and returns the subject of ev.
func (p *Publisher) subject(tenant string, ev *presence.Event) (string, error) {
	if err := ev.Validate(); err != nil {
		return "", err
	}
	return presence.Subject(p.prefix, tenant, ev.Type)
}

// notAcked wraps the cause of a failed publish of ev on subject; which says
// which event of a batch it was.
func notAcked(which, subject string, ev *presence.Event, cause error) error {
	hint := ""
	if errors.Is(cause, jetstream.ErrNoStreamResponse) {
		hint = " (no stream captures the subject; presenced creates it at start-up)"
	}
	return fmt.Errorf("%w: %s%s, userId %q: %w%s", ErrNotAcked, which, subject, ev.UserID, cause, hint)
}
