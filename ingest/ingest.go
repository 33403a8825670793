package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
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
	// HeaderSequence gives the message's sequence in the source stream.
	HeaderSequence = "Presence-Sequence"
	// HeaderStreamCreated gives the source stream's creation time (RFC 3339
	// with nanoseconds): with HeaderSequence, it says which message of which
	// stream the dead letter copies, also after the stream was recreated and
	// its sequences started again. The ingester reads both back from the
	// newest dead letter to write each one once.
	HeaderStreamCreated = "Presence-Stream-Created"
)

// PullMaxBytes bounds what the ingester's pull requests ask the stream for,
// and so what waits in the client's buffer: about 4,000 events of 250 bytes.
// Pulls of a few thousand events read the stream 1.5 to 2 times as fast as
// nats.go's default of 500 messages (BENCHMARKS.md). Exported for the
// benchmarks, whose raw reader pulls the same.
const PullMaxBytes = 1 << 20

// DeadLetterSuffix is appended to Config.Stream to name the dead-letter
// stream.
const DeadLetterSuffix = "_DEADLETTER"

const (
	// requestTimeout bounds one JetStream API call or dead-letter publish
	// (prepare: all of its calls). A request made while the cluster elects
	// a leader gets no answer at all: a short bound, then a retry, has the
	// reading resume within a few seconds of a NATS node's loss (10 s
	// before, measured by TestNodeLostWhileReading).
	requestTimeout = 3 * time.Second
	// rejectLogEvery bounds the log lines about rejected messages.
	rejectLogEvery = time.Second
	// idleCheckEvery is how long the ingester waits for a message before it
	// checks that the stream is still the one it reads: a stream recreated
	// with fewer messages than were applied would otherwise deliver nothing
	// and never be noticed.
	idleCheckEvery = 2 * time.Second
	// maxReplicas is the most replicas JetStream keeps of a stream.
	maxReplicas = 5
	// maxPartitions is the most partitions the server's partition
	// function takes (an int32).
	maxPartitions = math.MaxInt32
	// consumerResetAttempts bounds the ordered consumer's own attempts to
	// recreate itself (1s, 2s, 4s... apart). After them Run takes over,
	// which also creates the stream again when it was deleted.
	consumerResetAttempts = 3
	// pullHeartbeat is how often the server says a pull of the reading is
	// alive while it has no message to deliver.
	pullHeartbeat = time.Second
)

// Applier receives the valid events. *engine.Engine is one. The ingester
// calls it from one goroutine, one call at a time: Apply for each event in
// stream order, and Reset when the stream was recreated. Apply must not keep
// ev or its slices after it returns: they are reused.
type Applier interface {
	Apply(tenant string, ev *presence.Event) engine.Result
	// Reset empties the Applier's state, before the ingester reads a
	// recreated stream from its first message.
	Reset()
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
	// Replicas is how many replicas JetStream keeps of every stream and
	// bucket the ingester creates (3 on a 3-node cluster); it never changes
	// an existing one. Zero means 1.
	Replicas int
	// Partitions is how many partitions the tenants are split into, by
	// presence.Partition of the tenant id (contract section 7). It is the
	// stream's: recorded in its metadata (MetadataPartitions) when the
	// ingester creates it, with a subject transform that puts the partition
	// in the stored subjects, <prefix>.<partition>.<tenantId>.<type>; a
	// stream of another count is refused with ErrPartitions. Zero means 1:
	// no transform, as a stream created before partitions.
	Partitions int
	// Partition is the partition this Ingester reads, from 0 to
	// Partitions-1. Each partition is read by an Ingester of its own, into
	// an Applier of its own. With one partition, the Ingester reads the
	// whole stream.
	Partition int
	// MaxClockSkew is how far after the time the message was stored an
	// event's ts may be. Zero means 5m.
	MaxClockSkew time.Duration
	// StartSeq is the first stream sequence to read, the one after what a
	// snapshot covers. Zero means 1, the whole stream.
	StartSeq uint64
	// StreamCreated is the creation time of the stream StartSeq counts in
	// (the snapshot's engine.SnapshotInfo.StreamCreated). When the stream
	// has another, it was recreated since: the Applier is Reset and the
	// stream read from its first message. Zero means unknown (a snapshot of
	// format 1): StartSeq is then trusted when the stream reaches it, and
	// otherwise treated the same way.
	StreamCreated time.Time
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
	layout
	metrics *metrics
	markKey string // this partition's key in the marks bucket
	// With Partitions > 1: the partition's stored subjects,
	// <prefix>.<partition>.*.*, which the consumer filters on. Empty with
	// one partition: the whole stream.
	filter string
	// parsePrefix is what the stored subjects start with before
	// <tenantId>.<type>: <prefix>, or <prefix>.<partition>.
	parsePrefix string

	// commit is held while a message's effect and its sequence are stored,
	// and while the Applier is Reset, so that Checkpoint sees an Applier
	// state that is exactly the stream up to AppliedSeq.
	//
	// Lock order: commit is taken before the engine's shard locks (Apply,
	// Reset and a Checkpoint's engine.Cut run under it, and take them);
	// nothing that holds a shard lock may take commit.
	commit  sync.Mutex
	created time.Time     // creation time of the stream applied counts in; written under commit
	applied atomic.Uint64 // last sequence applied, or StartSeq-1

	target   atomic.Uint64 // the partition's last sequence when Run started, or at the last reset
	pending  atomic.Uint64
	caughtUp atomic.Bool
	running  atomic.Bool

	// Owned by the goroutine that handles the messages: Run's, and the
	// consumer's while consume waits for it.
	ev         presence.Event     // reused for every message
	dl         jetstream.Stream   // the dead-letter stream
	dupWindow  time.Duration      // its duplicate window
	marks      jetstream.KeyValue // the dead-letter marks
	mark       mark               // this partition's, as far as known
	unmarked   mark               // a dead letter stored whose mark is not moved yet
	streamLast uint64             // the stream's last sequence, as far as known
	retarget   bool               // prepare is to note the stream's end for Ready
	rejectLog  limiter
	errLog     limiter

	// afterDeadLetterPublish, when set (by tests, before Run), is called
	// between a dead letter's publish and its mark's update; an error it
	// returns is the attempt's.
	afterDeadLetterPublish func() error
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
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("ingest: JetStream context: %w", err)
	}
	i := &Ingester{
		layout:      newLayout(cfg, js),
		markKey:     "p" + strconv.Itoa(cfg.Partition),
		parsePrefix: cfg.Prefix,
		rejectLog:   limiter{every: rejectLogEvery},
		errLog:      limiter{every: 10 * time.Second},
	}
	reg := cfg.Registerer
	if cfg.Partitions > 1 {
		i.parsePrefix = cfg.Prefix + "." + strconv.Itoa(cfg.Partition)
		i.filter = i.parsePrefix + ".*.*"
		i.log = i.log.With("partition", cfg.Partition)
		if reg != nil {
			// The Ingesters of several partitions may share a registry.
			reg = prometheus.WrapRegistererWith(prometheus.Labels{"partition": strconv.Itoa(cfg.Partition)}, reg)
		}
	}
	i.applied.Store(cfg.StartSeq - 1)
	i.created = cfg.StreamCreated
	i.retarget = true
	if i.metrics, err = newMetrics(reg, i); err != nil {
		return nil, fmt.Errorf("ingest: registering metrics: %w", err)
	}
	return i, nil
}

// fill checks the fields of cfg that New and Prepare share, and fills in
// their defaults.
func (cfg *Config) fill() error {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	// The domain owns the subject rules; a valid subject under the prefix
	// proves the prefix valid.
	if _, err := presence.Subject(cfg.Prefix, "t", presence.Login); err != nil {
		return fmt.Errorf("%w: Prefix %q must be a NATS subject of literal tokens", ErrConfig, cfg.Prefix)
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if !validStreamName(cfg.Stream) {
		return fmt.Errorf("%w: Stream %q must be 1 to %d characters of A-Z a-z 0-9 _ - (it names the streams and the bucket of the dead letters too)",
			ErrConfig, cfg.Stream, maxStreamName)
	}
	if cfg.MaxAge < 0 {
		return fmt.Errorf("%w: MaxAge must not be negative (0 means unlimited)", ErrConfig)
	}
	if cfg.Replicas < 0 || cfg.Replicas > maxReplicas {
		return fmt.Errorf("%w: Replicas must be from 1 to %d, JetStream's limit (0 means 1)", ErrConfig, maxReplicas)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Partitions < 0 || cfg.Partitions > maxPartitions {
		return fmt.Errorf("%w: Partitions must be from 1 to %d (0 means 1)", ErrConfig, maxPartitions)
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.Partition < 0 || cfg.Partition >= cfg.Partitions {
		return fmt.Errorf("%w: Partition %d must be from 0 to Partitions-1 (%d)", ErrConfig, cfg.Partition, cfg.Partitions-1)
	}
	if cfg.MaxClockSkew < 0 {
		return fmt.Errorf("%w: MaxClockSkew must not be negative", ErrConfig)
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
	return nil
}

// AppliedSeq returns the last stream sequence whose effect is visible to
// queries (StartSeq-1 before the first). With several partitions, it is the
// sequence of the last of the partition's messages applied: the stream's
// other messages are not this Ingester's.
func (i *Ingester) AppliedSeq() uint64 { return i.applied.Load() }

// Ready reports whether the connection to NATS is up and every message of
// the partition (of the stream, with one) that the stream held when Run
// started is applied. It turns false again while the connection is down.
func (i *Ingester) Ready() bool { return i.caughtUp.Load() && i.cfg.Conn.IsConnected() }

// Pending returns how many of the partition's messages are not applied yet,
// as of the last message read. Before the first, it is the distance from
// AppliedSeq to the last message when Run started: with several partitions,
// an upper bound, as the sequences between are partly other partitions'.
func (i *Ingester) Pending() uint64 { return i.pending.Load() }

// Run creates the streams when missing, then reads the event stream from
// StartSeq (or from the message after AppliedSeq when run again) and applies
// it, message by message, until ctx ends. It rides out NATS outages: the
// reading resumes after the last applied message, so nothing is lost or
// applied twice. When the stream turns out to be another one than the
// Applier's state comes from (recreated under the same name), it Resets the
// Applier and reads the new stream from its first message. On cancellation
// it finishes the message in hand and returns nil; it returns an error for a
// stream whose configuration cannot work, for a closed connection, or when
// another Run is in progress.
func (i *Ingester) Run(ctx context.Context) error {
	if !i.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer i.running.Store(false)

	for attempt := 0; ; attempt++ {
		stream, err := i.prepare(ctx)
		badStream := err != nil && permanent(err)
		progress := false
		if err == nil {
			progress, err = i.consume(ctx, stream)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case i.cfg.Conn.IsClosed():
			return ErrConnClosed
		case badStream:
			return err
		case errors.Is(err, errStreamChanged):
			// Not a failure: the next prepare rebuilds from the new stream.
			attempt = -1
			continue
		case progress:
			attempt = 0
		}
		i.logErr("ingest: reading the stream failed, retrying", err)
		if !sleep(ctx, reconnectDelay(attempt+1)) {
			return nil
		}
	}
}

// errStreamChanged ends a consume that found the stream is not the one it
// was reading: the next prepare looks at it again.
var errStreamChanged = errors.New("ingest: the stream changed under the consumer")

// prepare makes sure both streams exist and capture what they must, makes
// the Applier's state one of this stream (see follow), and reads the newest
// dead letter. It runs before every consume, so that a stream deleted or
// recreated meanwhile is seen. The first time, and after a reset, it notes
// what the stream holds: Ready waits for that much.
func (i *Ingester) prepare(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	res, err := i.ensure(ctx)
	if err != nil {
		return nil, err
	}
	stream := res.events
	i.dl, i.marks = res.dl, res.marks
	i.dupWindow = i.dl.CachedInfo().Config.Duplicates
	info := stream.CachedInfo()
	i.follow(info)
	i.streamLast = max(i.streamLast, info.State.LastSeq)
	if err := i.readMark(ctx); err != nil {
		return nil, err
	}
	if i.retarget {
		target, err := i.partitionLast(ctx, stream)
		if err != nil {
			return nil, err
		}
		i.retarget = false
		applied := i.applied.Load()
		i.target.Store(target)
		i.pending.Store(target - min(applied, target))
		i.caughtUp.Store(applied >= target)
		i.log.Info("ingest: reading the stream", "start_seq", applied+1, "ready_at_seq", target,
			"stream_created", stamp(info.Created), "deadletters_written_to_seq", i.mark.seq,
			"deadletters_written_of", stamp(i.mark.created))
	}
	return stream, nil
}

// partitionLast returns the sequence of the last message the partition
// holds (0: none), which Ready waits for.
func (i *Ingester) partitionLast(ctx context.Context, stream jetstream.Stream) (uint64, error) {
	if i.filter == "" {
		return stream.CachedInfo().State.LastSeq, nil
	}
	last, err := stream.GetLastMsgForSubject(ctx, i.filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ingest: reading the last message of partition %d (%s): %w", i.cfg.Partition, i.filter, err)
	}
	return last.Sequence, nil
}

// follow makes the Applier's state one of the stream described by info. The
// state belongs to
// another stream when the stream's creation time is not the one the state
// was built from, or, that time unknown, when the state goes beyond the
// stream's end. Then follow Resets the Applier, to read the stream from its
// first message. When the stream no longer holds the messages after the
// state (retention or a purge removed them), it reports the gap and moves
// on to the first message the stream holds.
func (i *Ingester) follow(info *jetstream.StreamInfo) {
	st := info.State
	applied := i.applied.Load()
	var why string
	switch {
	case !i.created.IsZero() && !i.created.Equal(info.Created):
		why = "the stream is not the one the engine's state comes from: it was recreated"
	case i.created.IsZero() && applied > st.LastSeq:
		why = "the start sequence is beyond the stream's end, so it counts in another stream"
	case i.created.IsZero() && applied > 0:
		i.log.Warn("ingest: the stream the start sequence counts in is unknown (a snapshot of format 1); "+
			"trusting it, as the stream reaches it", "start_seq", applied+1, "last_seq", st.LastSeq)
	}

	i.commit.Lock()
	defer i.commit.Unlock()
	if why != "" {
		i.cfg.Applier.Reset()
		i.applied.Store(0)
		i.caughtUp.Store(false) // an empty engine answers nothing right
		i.retarget = true
		i.metrics.resets.Inc()
		i.log.Warn("ingest: "+why+"; the engine is emptied and rebuilt from the stream's first message",
			"stream_created", stamp(info.Created), "engine_stream_created", stamp(i.created),
			"engine_seq", applied, "first_seq", st.FirstSeq, "last_seq", st.LastSeq)
		applied = 0
	}
	i.created = info.Created
	if st.FirstSeq > applied+1 {
		why := "the stream starts after the start sequence"
		if i.filter != "" {
			why += "; some of the missing messages may be other partitions', which cannot be told"
		}
		i.gap(applied+1, st.FirstSeq-1, why)
		i.applied.Store(st.FirstSeq - 1)
	}
}

// gap reports that the messages from..to are not in the stream any more
// though the Applier needed them: its state misses their effect, for good.
func (i *Ingester) gap(from, to uint64, why string) {
	i.metrics.gaps.Inc()
	i.log.Error("ingest: messages the engine needed are gone from the stream (retention or a purge); "+
		"going on from what the stream holds", "from", from, "to", to, "missing", to-from+1, "why", why)
}

// consume reads the stream with an ordered consumer from the message after
// the last applied one, until ctx ends, the stream turns out to have changed
// (errStreamChanged), or reading fails in a way the ordered consumer does
// not recover from itself. progress says whether any message was handled.
func (i *Ingester) consume(ctx context.Context, stream jetstream.Stream) (progress bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:    jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:      i.applied.Load() + 1,
		MaxResetAttempts: consumerResetAttempts,
	}
	if i.filter != "" {
		cfg.FilterSubjects = []string{i.filter}
	}
	cons, err := stream.OrderedConsumer(cctx, cfg)
	cancel()
	if err != nil {
		return false, err
	}

	// The consumer calls handler from a goroutine of its own, one message
	// at a time. After the first failure (and once consume returns) it
	// handles nothing: a message after one left unapplied would be a gap.
	var (
		mu      sync.Mutex // held while a message is handled
		failed  bool
		handled atomic.Uint64
		stop    = make(chan error, 1)
	)
	fail := func(err error) {
		select {
		case stop <- err:
		default:
		}
	}
	handler := func(msg jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		if failed {
			return
		}
		if err := i.handle(ctx, msg); err != nil {
			failed = true
			fail(err)
			return
		}
		handled.Add(1)
	}
	cc, err := cons.Consume(handler,
		jetstream.PullMaxBytes(PullMaxBytes),
		// Two heartbeats missed tell that the pull was lost (its server
		// gone, or the consumer's): the ordered consumer then recreates
		// itself. The default, 5 s, leaves a partition unread for 10 s
		// after a NATS node's loss.
		jetstream.PullHeartbeat(pullHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// The ordered consumer recreates itself after these; any other
			// error (its attempts exhausted, the connection closed) ends
			// the reading, for Run to start it again.
			if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, jetstream.ErrConsumerDeleted) &&
				!errors.Is(err, nats.ErrNoResponders) {
				fail(err)
			}
		}))
	if err != nil {
		return false, err
	}
	defer func() {
		cc.Stop()
		<-cc.Closed()
		mu.Lock()
		failed = true
		mu.Unlock()
		progress = handled.Load() > 0
	}()

	idle := time.NewTicker(idleCheckEvery)
	defer idle.Stop()
	for seen := uint64(0); ; {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case err := <-stop:
			return false, err
		case <-idle.C:
			if n := handled.Load(); n != seen {
				seen = n
				continue
			}
			if err := i.checkStream(ctx); err != nil {
				return false, err
			}
		}
	}
}

// checkStream returns errStreamChanged when the stream is not the one being
// read any more, and an error when it cannot tell.
func (i *Ingester) checkStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	stream, err := i.js.Stream(ctx, i.cfg.Stream)
	if err != nil {
		return fmt.Errorf("ingest: checking stream %s: %w", i.cfg.Stream, err)
	}
	if !stream.CachedInfo().Created.Equal(i.created) {
		return errStreamChanged
	}
	return nil
}

// handle applies or rejects one message. It returns an error when the
// stream turns out to have changed, or when ctx ends while a dead letter is
// being written; the message then stays unapplied, to be read again.
func (i *Ingester) handle(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: no sequence to track, nothing to apply.
		i.logErr("ingest: message without JetStream metadata skipped", err)
		return nil
	}
	seq, applied := md.Sequence.Stream, i.applied.Load()
	// With a filter, the stream's sequences jump between the partition's
	// messages by design: a jump is neither a gap nor a sign of anything.
	jump := seq > applied+1 && i.filter == ""
	if jump || seq <= applied || md.Sequence.Consumer == 1 {
		// A new consumer (this consume's, or one the ordered consumer made
		// itself after losing the last), a jump or a step back: the stream
		// may have been recreated under the consumer, which then goes on in
		// the new stream from where it was in the old.
		if err := i.checkStream(ctx); err != nil {
			return err
		}
		if seq <= applied {
			return nil // delivered again by a recreated consumer
		}
		if jump {
			i.gap(applied+1, seq-1, "deleted before they were read")
		}
	}

	start := time.Now()
	tenant, typ, err := presence.ParseSubject(i.parsePrefix, msg.Subject())
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
	i.streamLast = max(i.streamLast, seq+pending)
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

// Position is where the Applier's state stands: the effect of the messages
// up to Seq of the stream created at StreamCreated.
type Position struct {
	Seq uint64
	// StreamCreated is the stream's creation time: Config.StreamCreated
	// until Run has looked at the stream (zero if that was unknown too),
	// then the stream's own.
	StreamCreated time.Time
}

// Checkpoint calls fn with the Applier's position while the ingester
// applies nothing, so that what fn reads of the Applier is exactly the
// effect of the stream up to that position. Keep fn short: ingest waits for
// it.
func (i *Ingester) Checkpoint(fn func(Position)) {
	i.commit.Lock()
	defer i.commit.Unlock()
	fn(Position{Seq: i.applied.Load(), StreamCreated: i.created})
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
// account without JetStream (a 503 that no wait mends). Something not found
// (a stream deleted between two requests) is not: the next set-up creates it.
func permanent(err error) bool {
	if errors.Is(err, ErrStreamSubjects) || errors.Is(err, ErrPartitions) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 404 ||
		apiErr.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount
}

// Retry calls fn until it succeeds, its error is permanent (a JetStream
// API error of the request itself, or a stream that does not fit), or ctx
// ends, and returns its last error. Each call gets a context of at most
// requestTimeout: on a NATS cluster a request made during a leader
// election, or while a node is lost, gets no answer at all. Between calls
// it logs what failed and waits as a reconnection does. Starting
// instances together on a loaded cluster needs it.
func Retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := fn(actx)
		cancel()
		if err == nil || permanent(err) || ctx.Err() != nil {
			return err
		}
		log.Warn(what+" failed, retrying", "err", err, "attempt", attempt)
		if !sleep(ctx, reconnectDelay(attempt)) {
			return err
		}
	}
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

// stamp is how a stream's creation time is written, in dead letters and in
// log lines: exact, for comparison with StreamInfo.Created.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339Nano)
}
