package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/presence"
)

// Dead letters are written once per partition (see the package doc): each
// writer publishes a dead letter with a JetStream message id of the source
// message, then moves its partition's mark, in the bucket Stream +
// MarksSuffix, to the message, by revision. A message is dead-lettered
// already when the mark counts in its stream and is at or past it.

// MarksSuffix is appended to Config.Stream to name the JetStream key-value
// bucket of the dead-letter marks: one key per partition, "p<k>", whose value
// says up to which message of which stream the partition's dead letters are
// written.
const MarksSuffix = "_DEADLETTER_MARKS"

// deadLetterWindow is the duplicate window of the dead-letter stream when the
// ingester creates it. Within it, the message id keeps a second copy of a
// dead letter out: the one a reader writes when the writer before it died
// between its publish and its mark. That reader is often one catching up,
// after a restart or while taking a partition over, behind the writer by the
// time it took to notice and replay: an hour covers that with room to spare,
// and the ids it holds cost little, dead letters being rare.
const deadLetterWindow = time.Hour

// mark is what the ingester knows of its partition's dead-letter mark.
type mark struct {
	known   bool      // false: read the bucket before deciding
	rev     uint64    // the entry's revision; 0: there is none, Create it
	created time.Time // creation time of the stream seq counts in
	seq     uint64    // the highest source sequence dead-lettered; 0: none
	// seen is when the bucket was last known to hold this mark: the start of
	// the request that read or wrote it.
	seen time.Time
}

// markValue is a mark as the bucket holds it, JSON for operators to read
// with `nats kv get`.
type markValue struct {
	StreamCreated time.Time `json:"streamCreated"`
	Seq           uint64    `json:"seq"`
}

// covers reports whether the dead letter of message seq of the stream
// created at created is written already. newer reports a mark of a stream
// created after this one: this stream is then likely replaced.
func (m mark) covers(created time.Time, seq uint64) (covered, newer bool) {
	switch {
	case m.seq == 0, m.created.Before(created):
		return false, false
	case m.created.After(created):
		return false, true
	}
	return m.seq >= seq, false
}

// fresh reports whether the mark may be trusted at now without reading the
// bucket again, the dead-letter stream keeping message ids for window.
//
// Marks only move forward, so a stale mark says "not written" of a dead
// letter another writer wrote since: the publish that follows is then a
// second copy, which the message id drops only within the window of the
// first. A mark seen less than half a window ago keeps that so: the other
// writer stored its copy at most half a window before we saw the mark (it
// marks at once after), and we publish within the other half. An older
// mark is read again.
func (m mark) fresh(now time.Time, window time.Duration) bool {
	return m.known && now.Sub(m.seen) < window/2
}

// reject dead-letters a bad message, unless an instance or an earlier run
// already did, and counts and logs it.
func (i *Ingester) reject(ctx context.Context, msg jetstream.Msg, seq uint64, typ presence.Type, cause error) error {
	if err := i.deadLetter(ctx, msg, seq, cause); err != nil {
		return err
	}
	i.metrics.count(typ, resultRejected)
	if ok, suppressed := i.rejectLog.allow(time.Now()); ok {
		i.log.Warn("ingest: event rejected", "subject", i.published(msg.Subject()), "seq", seq, "reason", cause.Error(),
			"suppressed", suppressed)
	}
	return nil
}

// deadLetter copies msg to its dead-letter subject, unless the partition's
// mark shows it done, and waits for the JetStream acknowledgement and the
// mark's update, retrying until both come: moving on without them could lose
// the dead letter, or have a later reader write it again.
func (i *Ingester) deadLetter(ctx context.Context, msg jetstream.Msg, seq uint64, cause error) error {
	subject := i.published(msg.Subject())
	dl := nats.NewMsg(presence.DeadLetterSubject(i.cfg.Prefix, subject))
	dl.Data = msg.Data()
	dl.Header.Set(HeaderError, headerValue(cause.Error()))
	dl.Header.Set(HeaderSubject, subject)
	dl.Header.Set(HeaderSequence, strconv.FormatUint(seq, 10))
	dl.Header.Set(HeaderStreamCreated, stamp(i.created))
	// The creation time keeps the dead letter of the same sequence of a
	// recreated stream from passing for a duplicate.
	dl.Header.Set(jetstream.MsgIDHeader,
		i.cfg.Stream+":"+strconv.FormatInt(i.created.UnixNano(), 10)+":"+strconv.FormatUint(seq, 10))

	for attempt := 1; ; attempt++ {
		// The attempt under way when ctx ends may finish: shutdown lets the
		// message in hand complete.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
		err := i.deadLetterOnce(ctx, pctx, dl, seq)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errStreamChanged):
			return err
		case errors.Is(err, nats.ErrMaxPayload):
			// The headers pushed a message at the size limit over it. No
			// retry can help, and the engine must go on.
			i.log.Error("ingest: dead letter too large for the server, dropped", "subject", subject, "seq", seq)
			return nil
		}
		// A request that timed out may have been carried out.
		i.mark.known = false
		i.logErr("ingest: writing a dead letter failed, retrying", err, "seq", seq)
		if !sleep(ctx, reconnectDelay(attempt)) {
			return ctx.Err()
		}
	}
}

// published returns the subject a message stored on subject was published
// on: without the partition token the stream's transform put in.
func (i *Ingester) published(subject string) string {
	if rest, ok := strings.CutPrefix(subject, i.parsePrefix+"."); ok && i.filter != "" {
		return i.cfg.Prefix + "." + rest
	}
	return subject
}

// deadLetterOnce decides, from the partition's mark (read again when not
// fresh), whether dl, the dead letter of message seq, is to be written,
// publishes it if so, and moves the mark to it. ctx is the caller's, pctx
// bounds the requests.
func (i *Ingester) deadLetterOnce(ctx, pctx context.Context, dl *nats.Msg, seq uint64) error {
	if i.unmarked.seq == seq && i.unmarked.created.Equal(i.created) {
		// Stored by an earlier attempt, whose mark update failed.
		return i.advanceMark(ctx, pctx, seq)
	}
	covered, _ := i.mark.covers(i.created, seq)
	if !covered && !i.mark.fresh(time.Now(), i.dupWindow) {
		if err := i.readMark(pctx); err != nil {
			return err
		}
	}
	if covered, err := i.coveredByMark(ctx, seq); err != nil || covered {
		return err
	}
	ack, err := i.js.PublishMsg(pctx, dl, jetstream.WithExpectStream(i.dlStream))
	if err != nil {
		return err
	}
	if !ack.Duplicate {
		i.metrics.deadletters.Inc()
	}
	i.unmarked = mark{created: i.created, seq: seq}
	if i.afterDeadLetterPublish != nil {
		if err := i.afterDeadLetterPublish(); err != nil {
			return err
		}
	}
	return i.advanceMark(ctx, pctx, seq)
}

// newerMark handles a mark of a stream created after this one: this one was
// most likely replaced, and its remaining messages are not to be
// dead-lettered over the new stream's mark.
func (i *Ingester) newerMark(ctx context.Context) error {
	if err := i.checkStream(ctx); err != nil {
		return err
	}
	// Still the stream: the clocks of the servers that created the two
	// disagree. The mark is of a stream gone: take over from it.
	i.log.Warn("ingest: the dead-letter mark names a stream created after this one, which is still the stream; taking it over",
		"stream_created", stamp(i.created), "mark_stream_created", stamp(i.mark.created))
	return nil
}

// advanceMark moves the partition's mark to message seq, whose dead letter
// is stored, unless another writer moved it there or past it meanwhile.
func (i *Ingester) advanceMark(ctx, pctx context.Context, seq uint64) error {
	value, err := json.Marshal(markValue{StreamCreated: i.created, Seq: seq})
	if err != nil {
		return err
	}
	for {
		sent := time.Now()
		var rev uint64
		if i.mark.known && i.mark.rev != 0 {
			rev, err = i.marks.Update(pctx, i.markKey, value, i.mark.rev)
		} else if i.mark.known {
			rev, err = i.marks.Create(pctx, i.markKey, value)
		} else {
			err = errMarkUnknown
		}
		if err == nil {
			i.mark = mark{known: true, rev: rev, created: i.created, seq: seq, seen: sent}
			i.unmarked = mark{}
			return nil
		}
		if !errors.Is(err, errMarkUnknown) && !errors.Is(err, jetstream.ErrKeyExists) &&
			!errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
		// Another writer moved the mark since we read it: look again, and
		// leave it where it is if it covers the message.
		if err := i.readMark(pctx); err != nil {
			return err
		}
		if covered, err := i.coveredByMark(ctx, seq); err != nil || covered {
			if covered {
				i.unmarked = mark{}
			}
			return err
		}
	}
}

// errMarkUnknown has advanceMark read the mark before it writes one.
var errMarkUnknown = errors.New("ingest: the dead-letter mark is not known")

// readMark reads the partition's mark. Where there is none yet and the
// stream has one partition, the newest dead letter stands for it: it was the
// mark of presenced before marks (see lastDeadLetter). A stream of several
// partitions had marks from its start.
func (i *Ingester) readMark(ctx context.Context) error {
	seen := time.Now()
	e, err := i.marks.Get(ctx, i.markKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		m := mark{known: true, seen: seen}
		if i.cfg.Partitions == 1 {
			d, err := i.readLastDeadLetter(ctx)
			if err != nil {
				return err
			}
			m.created, m.seq = d.mark(i.created, i.streamLast)
		}
		i.mark = m
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingest: reading the dead-letter mark %s of %s: %w", i.markKey, i.marksBucket, err)
	}
	m := mark{known: true, rev: e.Revision(), seen: seen}
	var v markValue
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		// Not one of ours, or damaged: nothing says what it covers. The
		// next dead letter replaces it, possibly writing some again.
		i.log.Warn("ingest: the dead-letter mark is unreadable; earlier dead letters may be written again",
			"bucket", i.marksBucket, "key", i.markKey, "err", err)
	} else {
		m.created, m.seq = v.StreamCreated, v.Seq
	}
	i.mark = m
	return nil
}

// lastDeadLetter is what the newest dead letter says of the source message
// it copies. Before marks, presenced wrote dead letters in source order, each
// publish expecting the newest to be the one it knew, so that the newest
// told how far they went, as a mark does now. A stream of one partition that
// has no mark yet takes it from there, so that an upgrade writes none of the
// older dead letters again.
type lastDeadLetter struct {
	created time.Time // HeaderStreamCreated; zero: absent (an older presenced still)
	source  uint64    // HeaderSequence; 0: no dead letter, or unreadable
}

// mark returns the mark the dead letter stands for, for the stream created
// at created whose last sequence is streamLast as far as known.
func (d lastDeadLetter) mark(created time.Time, streamLast uint64) (time.Time, uint64) {
	switch {
	case d.source == 0:
		return time.Time{}, 0
	case d.created.IsZero():
		// Written before dead letters named their stream: take it as one of
		// this stream, unless its sequence is beyond this stream's end.
		if d.source > streamLast {
			return time.Time{}, 0
		}
		return created, d.source
	}
	return d.created, d.source
}

// readLastDeadLetter reads the newest dead letter.
func (i *Ingester) readLastDeadLetter(ctx context.Context) (lastDeadLetter, error) {
	last, err := i.dl.GetLastMsgForSubject(ctx, i.dlSubjects)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lastDeadLetter{}, nil
	}
	if err != nil {
		return lastDeadLetter{}, fmt.Errorf("ingest: reading the last dead letter of %s: %w", i.dlStream, err)
	}
	var d lastDeadLetter
	if v := last.Header.Get(HeaderStreamCreated); v != "" {
		if d.created, err = time.Parse(time.RFC3339Nano, v); err != nil {
			d.created = time.Time{}
		}
	}
	if d.source, err = strconv.ParseUint(last.Header.Get(HeaderSequence), 10, 64); err != nil {
		i.log.Warn("ingest: the last dead letter has no valid "+HeaderSequence+" header; earlier dead letters may be written again",
			"dl_seq", last.Sequence)
		return lastDeadLetter{}, nil
	}
	return d, nil
}

// headerValue keeps a header value on one line: a reason may quote the
// publisher's input, and a line break would end the header block.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// coveredByMark reports whether the mark as last read covers the message
// of seq, having dealt first with a mark of a newer stream (newerMark).
func (i *Ingester) coveredByMark(ctx context.Context, seq uint64) (bool, error) {
	covered, newer := i.mark.covers(i.created, seq)
	if newer {
		if err := i.newerMark(ctx); err != nil {
			return false, err
		}
	}
	return covered, nil
}
