package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Defaults of Config (contract sections 1 and 5).
const (
	DefaultPrefix       = "presence"
	DefaultStream       = "PRESENCE"
	DefaultMaxClockSkew = 5 * time.Minute
	// DefaultMaxAge is the retention the program asks for (-stream-max-age).
	// It is not applied to a zero Config.MaxAge, which means unlimited as in
	// JetStream itself.
	DefaultMaxAge = 24 * time.Hour
)

// Headers of a dead letter (contract section 1.4).
const (
	// HeaderError gives the reason the message was rejected.
	HeaderError = "Presence-Error"
	// HeaderSubject gives the subject the message was published on.
	HeaderSubject = "Presence-Subject"
	// HeaderSequence gives the message's sequence in the source stream. The
	// ingester reads it back at start-up to dead-letter each message once.
	HeaderSequence = "Presence-Sequence"
)

// DeadLetterSuffix is appended to Config.Stream to name the dead-letter
// stream.
const DeadLetterSuffix = "_DEADLETTER"

const (
	// requestTimeout bounds one JetStream API call or dead-letter publish.
	requestTimeout = 10 * time.Second
	// rejectLogEvery bounds the log lines about rejected messages.
	rejectLogEvery = time.Second
)

// Applier receives the valid events. *engine.Engine is one. The ingester
// calls it from one goroutine, one event at a time, in stream order. It must
// not keep ev or its slices after it returns: they are reused.
type Applier interface {
	Apply(tenant string, ev *presence.Event) engine.Result
}

var _ Applier = (*engine.Engine)(nil)

// Config configures an Ingester. Conn and Applier are required; every other
// zero field takes the default its comment gives.
type Config struct {
	// Conn is the connection to NATS, made and closed by the caller (see
	// Connect). Required.
	Conn *nats.Conn
	// Applier receives the events. Required.
	Applier Applier
	// Prefix is the first token(s) of the event subjects,
	// <prefix>.<tenantId>.<type>. Zero means "presence".
	Prefix string
	// Stream is the JetStream stream that keeps the events; the dead letters
	// go to Stream + "_DEADLETTER". Zero means "PRESENCE".
	Stream string
	// MaxAge is the retention of both streams when the ingester creates
	// them; it never changes an existing stream. Zero means unlimited (the
	// program's flag defaults to DefaultMaxAge).
	MaxAge time.Duration
	// MaxClockSkew is how far after the time the message was stored an
	// event's ts may be. Zero means 5m.
	MaxClockSkew time.Duration
	// StartSeq is the first stream sequence to read, the one after what a
	// snapshot covers. Zero means 1, the whole stream.
	StartSeq uint64
	// Logger receives the ingester's log lines. Nil discards them.
	Logger *slog.Logger
	// Registerer gets the ingester's metrics. Nil means no metrics.
	Registerer prometheus.Registerer
}

// Ingester reads the event stream into an Applier, in stream order: the
// Applier's state is always the effect of the stream's messages up to
// AppliedSeq (contract section 1, "The stream is the record"). Create it
// with New and start it with Run; AppliedSeq, Ready and Pending may be
// called from any goroutine at any time.
type Ingester struct {
	cfg        Config
	log        *slog.Logger
	js         jetstream.JetStream
	metrics    *metrics
	subjects   string // what the source stream must capture
	dlStream   string
	dlSubjects string // what the dead-letter stream must capture

	// commit is held while a message's effect and its sequence are stored,
	// so that Checkpoint sees an engine state that covers AppliedSeq.
	commit   sync.Mutex
	applied  atomic.Uint64 // last sequence applied, or StartSeq-1
	target   atomic.Uint64 // the stream's last sequence when Run started
	pending  atomic.Uint64
	caughtUp atomic.Bool
	running  atomic.Bool

	// Owned by the goroutine in Run.
	ev        presence.Event // reused for every message
	dlMark    uint64         // highest source sequence already dead-lettered
	rejectLog limiter
	errLog    limiter
}

// New checks cfg, fills in its defaults and registers the metrics. It does
// not talk to NATS: Run does.
func New(cfg Config) (*Ingester, error) {
	if cfg.Conn == nil {
		return nil, fmt.Errorf("%w: Conn is required", ErrConfig)
	}
	if cfg.Applier == nil {
		return nil, fmt.Errorf("%w: Applier is required", ErrConfig)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	// The domain owns the subject rules; a valid subject under the prefix
	// proves the prefix valid.
	if _, err := presence.Subject(cfg.Prefix, "t", presence.Login); err != nil {
		return nil, fmt.Errorf("%w: Prefix %q must be a NATS subject of literal tokens", ErrConfig, cfg.Prefix)
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if !validStreamName(cfg.Stream) {
		return nil, fmt.Errorf("%w: Stream %q must be 1 to %d characters without spaces, '.', '*', '>', '/' or '\\'",
			ErrConfig, cfg.Stream, maxStreamName)
	}
	if cfg.MaxAge < 0 {
		return nil, fmt.Errorf("%w: MaxAge must not be negative (0 means unlimited)", ErrConfig)
	}
	if cfg.MaxClockSkew < 0 {
		return nil, fmt.Errorf("%w: MaxClockSkew must not be negative", ErrConfig)
	}
	if cfg.MaxClockSkew == 0 {
		cfg.MaxClockSkew = DefaultMaxClockSkew
	}
	if cfg.StartSeq == 0 {
		cfg.StartSeq = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("ingest: JetStream context: %w", err)
	}
	i := &Ingester{
		cfg:        cfg,
		log:        cfg.Logger.With("stream", cfg.Stream),
		js:         js,
		subjects:   cfg.Prefix + ".*.*",
		dlStream:   cfg.Stream + DeadLetterSuffix,
		dlSubjects: "deadletter." + cfg.Prefix + ".>",
		rejectLog:  limiter{every: rejectLogEvery},
		errLog:     limiter{every: 10 * time.Second},
	}
	i.applied.Store(cfg.StartSeq - 1)
	if i.metrics, err = newMetrics(cfg.Registerer, i); err != nil {
		return nil, fmt.Errorf("ingest: registering metrics: %w", err)
	}
	return i, nil
}

// AppliedSeq returns the last stream sequence whose effect is visible to
// queries (StartSeq-1 before the first).
func (i *Ingester) AppliedSeq() uint64 { return i.applied.Load() }

// Ready reports whether the connection to NATS is up and every message the
// stream held when Run started is applied. It turns false again while the
// connection is down.
func (i *Ingester) Ready() bool { return i.caughtUp.Load() && i.cfg.Conn.IsConnected() }

// Pending returns how many stream messages are not applied yet, as of the
// last message read (or of the start of Run, before the first).
func (i *Ingester) Pending() uint64 { return i.pending.Load() }

// Run creates the streams when missing, then reads the event stream from
// StartSeq (or from the message after AppliedSeq when run again) and applies
// it, message by message, until ctx ends. It rides out NATS outages: the
// reading resumes after the last applied message, so nothing is lost or
// applied twice. On cancellation it finishes the message in hand and returns
// nil; it returns an error for a stream whose configuration cannot work, for
// a closed connection, or when another Run is in progress.
func (i *Ingester) Run(ctx context.Context) error {
	if !i.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer i.running.Store(false)

	stream, err := i.setup(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for attempt := 0; ; attempt++ {
		progress, err := i.consume(ctx, stream)
		switch {
		case ctx.Err() != nil:
			return nil
		case i.cfg.Conn.IsClosed():
			return ErrConnClosed
		case progress:
			attempt = 0
		}
		i.logErr("ingest: reading the stream failed, retrying", err)
		if !sleep(ctx, reconnectDelay(attempt+1)) {
			return nil
		}
	}
}

// setup prepares the streams, retrying what a NATS outage explains, until
// ctx ends.
func (i *Ingester) setup(ctx context.Context) (jetstream.Stream, error) {
	for attempt := 1; ; attempt++ {
		stream, err := i.prepare(ctx)
		if err == nil || permanent(err) {
			return stream, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		i.logErr("ingest: preparing the streams failed, retrying", err)
		if !sleep(ctx, reconnectDelay(attempt)) {
			return nil, ctx.Err()
		}
	}
}

// prepare makes sure both streams exist and capture what they must, and
// notes where reading starts and what it must reach to be ready.
func (i *Ingester) prepare(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	stream, err := i.ensureStream(ctx, i.cfg.Stream, i.subjects)
	if err != nil {
		return nil, err
	}
	dl, err := i.ensureStream(ctx, i.dlStream, i.dlSubjects)
	if err != nil {
		return nil, err
	}
	target := stream.CachedInfo().State.LastSeq
	mark, err := i.deadLetterMark(ctx, dl, target)
	if err != nil {
		return nil, err
	}

	i.dlMark = mark
	i.target.Store(target)
	applied := i.applied.Load()
	if applied > target {
		i.log.Warn("ingest: the stream ends before the start sequence; was it purged or recreated?",
			"start_seq", applied+1, "last_seq", target)
	}
	i.pending.Store(target - min(applied, target))
	i.caughtUp.Store(applied >= target)
	i.log.Info("ingest: reading the stream", "start_seq", applied+1, "ready_at_seq", target,
		"deadlettered_up_to", mark)
	return stream, nil
}

// ensureStream returns the stream called name, creating it to capture need
// when missing. An existing stream is left as its operator configured it, but
// it must capture need.
func (i *Ingester) ensureStream(ctx context.Context, name, need string) (jetstream.Stream, error) {
	stream, err := i.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		stream, err = i.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:     name,
			Subjects: []string{need},
			Storage:  jetstream.FileStorage,
			MaxAge:   i.cfg.MaxAge,
		})
		if err == nil {
			i.log.Info("ingest: created stream", "name", name, "subjects", need, "max_age", i.cfg.MaxAge)
			return stream, nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another engine created it meanwhile.
			stream, err = i.js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: stream %s: %w", name, err)
	}
	subjects := stream.CachedInfo().Config.Subjects
	for _, s := range subjects {
		if covers(s, need) {
			return stream, nil
		}
	}
	return nil, fmt.Errorf("%w: stream %s captures %q, which does not include %s", ErrStreamSubjects, name, subjects, need)
}

// deadLetterMark returns the highest source sequence already dead-lettered,
// read from the last dead letter: dead letters are written in source order,
// so every rejected message at or below it has its dead letter.
func (i *Ingester) deadLetterMark(ctx context.Context, dl jetstream.Stream, lastSeq uint64) (uint64, error) {
	last, err := dl.GetLastMsgForSubject(ctx, i.dlSubjects)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ingest: reading the last dead letter of %s: %w", i.dlStream, err)
	}
	mark, err := strconv.ParseUint(last.Header.Get(HeaderSequence), 10, 64)
	if err != nil {
		i.log.Warn("ingest: the last dead letter has no valid "+HeaderSequence+" header; earlier dead letters may be written again",
			"dl_seq", last.Sequence)
		return 0, nil
	}
	if mark > lastSeq {
		// The source stream is younger than its dead letters: its sequences
		// started again, and the old mark says nothing about them.
		i.log.Warn("ingest: dead letters refer to sequences beyond the stream's end; was the stream recreated?",
			"deadlettered_up_to", mark, "last_seq", lastSeq)
		return 0, nil
	}
	return mark, nil
}

// consume reads the stream with an ordered consumer from the message after
// the last applied one, until ctx ends or reading fails in a way the ordered
// consumer does not recover from itself. progress says whether any message
// was handled.
func (i *Ingester) consume(ctx context.Context, stream jetstream.Stream) (progress bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	cons, err := stream.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   i.applied.Load() + 1,
	})
	cancel()
	if err != nil {
		return false, err
	}
	it, err := cons.Messages()
	if err != nil {
		return false, err
	}
	defer it.Stop()
	// While NATS is away, Next sits in the consumer's own reset loop, which
	// only Stop interrupts.
	defer context.AfterFunc(ctx, it.Stop)()

	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return progress, err
		}
		if err := i.handle(ctx, msg); err != nil {
			return progress, err
		}
		progress = true
	}
}

// handle applies or rejects one message. It returns an error only when ctx
// ends while a dead letter is being written; the message then stays
// unapplied, to be read again.
func (i *Ingester) handle(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: no sequence to track, nothing to apply.
		i.logErr("ingest: message without JetStream metadata skipped", err)
		return nil
	}
	seq := md.Sequence.Stream
	if seq <= i.applied.Load() {
		return nil // delivered again by a recreated consumer
	}

	start := time.Now()
	tenant, typ, err := presence.ParseSubject(i.cfg.Prefix, msg.Subject())
	if err == nil {
		i.ev.Type = typ
		err = presence.Decode(msg.Data(), &i.ev)
	}
	if err == nil {
		err = i.ev.ResolveTime(md.Timestamp, i.cfg.MaxClockSkew)
	}
	if err != nil {
		if err := i.reject(ctx, msg, seq, typ, err); err != nil {
			return err
		}
	}
	i.commit.Lock()
	defer i.commit.Unlock()
	if err == nil {
		res := i.cfg.Applier.Apply(tenant, &i.ev)
		i.metrics.apply.Observe(time.Since(start).Seconds())
		i.metrics.count(typ, outcome(res))
	}
	i.advance(seq, md.NumPending)
	return nil
}

// advance records that the message at seq is handled. The caller holds
// commit.
func (i *Ingester) advance(seq, pending uint64) {
	i.applied.Store(seq)
	i.pending.Store(pending)
	// No pending message also covers a target that was deleted before we
	// got to it.
	if seq >= i.target.Load() || pending == 0 {
		i.caughtUp.Store(true)
	}
}

func outcome(res engine.Result) result {
	if res == engine.Stale {
		return resultStale
	}
	return resultApplied
}

// Checkpoint calls fn with the last applied sequence while the ingester
// applies nothing, so that what fn reads of the Applier is exactly the
// effect of the stream up to that sequence. Keep fn short: ingest waits for
// it.
func (i *Ingester) Checkpoint(fn func(seq uint64)) {
	i.commit.Lock()
	defer i.commit.Unlock()
	fn(i.applied.Load())
}

// reject dead-letters a bad message, unless an earlier run already did, and
// counts and logs it.
func (i *Ingester) reject(ctx context.Context, msg jetstream.Msg, seq uint64, typ presence.Type, cause error) error {
	if seq > i.dlMark {
		if err := i.deadLetter(ctx, msg, seq, cause); err != nil {
			return err
		}
	}
	i.metrics.count(typ, resultRejected)
	if ok, suppressed := i.rejectLog.allow(time.Now()); ok {
		i.log.Warn("ingest: event rejected", "subject", msg.Subject(), "seq", seq, "reason", cause.Error(),
			"suppressed", suppressed)
	}
	return nil
}

// deadLetter copies msg to its dead-letter subject and waits for the
// JetStream acknowledgement, retrying until it comes: moving on without it
// could lose the dead letter. The message id makes a retry, or a replay
// inside the stream's duplicate window, land once.
func (i *Ingester) deadLetter(ctx context.Context, msg jetstream.Msg, seq uint64, cause error) error {
	dl := nats.NewMsg(presence.DeadLetterSubject(i.cfg.Prefix, msg.Subject()))
	dl.Data = msg.Data()
	dl.Header.Set(HeaderError, headerValue(cause.Error()))
	dl.Header.Set(HeaderSubject, msg.Subject())
	dl.Header.Set(HeaderSequence, strconv.FormatUint(seq, 10))
	id := i.cfg.Stream + ":" + strconv.FormatUint(seq, 10)

	for attempt := 1; ; attempt++ {
		// The attempt under way when ctx ends may finish: shutdown lets the
		// message in hand complete.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), requestTimeout)
		ack, err := i.js.PublishMsg(pctx, dl, jetstream.WithMsgID(id), jetstream.WithExpectStream(i.dlStream))
		cancel()
		if err == nil {
			i.dlMark = seq
			if !ack.Duplicate {
				i.metrics.deadletters.Inc()
			}
			return nil
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			// The headers pushed a message at the size limit over it. No
			// retry can help, and the engine must go on.
			i.log.Error("ingest: dead letter too large for the server, dropped", "subject", msg.Subject(), "seq", seq)
			i.dlMark = seq
			return nil
		}
		i.logErr("ingest: writing a dead letter failed, retrying", err, "seq", seq)
		if !sleep(ctx, reconnectDelay(attempt)) {
			return ctx.Err()
		}
	}
}

// logErr logs a failure that may repeat for as long as NATS is away, at most
// once per errLog interval.
func (i *Ingester) logErr(msg string, err error, args ...any) {
	if ok, suppressed := i.errLog.allow(time.Now()); ok {
		i.log.Warn(msg, append(args, "err", err, "suppressed", suppressed)...)
	}
}

// permanent reports whether a set-up error needs an operator rather than
// time: a stream that does not fit, a request JetStream refused as bad, or an
// account without JetStream (a 503 that no wait mends).
func permanent(err error) bool {
	if errors.Is(err, ErrStreamSubjects) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.Code >= 400 && apiErr.Code < 500 ||
		apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount
}

// sleep waits for d or the end of ctx, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
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

// covers reports whether pattern matches every subject sub matches; both may
// hold wildcards.
func covers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for k, tok := range p {
		if tok == ">" {
			return k < len(s)
		}
		if k >= len(s) {
			return false
		}
		if tok == "*" {
			if s[k] == ">" {
				return false
			}
		} else if tok != s[k] {
			return false
		}
	}
	return len(p) == len(s)
}

// maxStreamName keeps the dead-letter stream's name within JetStream's limit
// of 255 characters.
const maxStreamName = 255 - len(DeadLetterSuffix)

func validStreamName(name string) bool {
	return name != "" && len(name) <= maxStreamName && !strings.ContainsAny(name, " \t\r\n.*>/\\")
}
