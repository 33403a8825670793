package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/presence"
)

// IngestData is the ingest scenario's numbers (rates in events per second).
type IngestData struct {
	Events      int     `json:"events"`
	Users       int     `json:"users"`
	LiveEvents  int     `json:"live_events"`
	PublishRate float64 `json:"publish_acked_rate"`
	// Per repetition, in the order measured.
	RawOrdered  []float64 `json:"raw_ordered_rate"`
	EngineCatch []float64 `json:"engine_catchup_rate"`
	RawSub      []float64 `json:"raw_subscriber_rate"`
	RawOrdLive  []float64 `json:"raw_ordered_live_rate"`
	EngineLive  []float64 `json:"engine_live_rate"`
	CatchRatios []float64 `json:"catchup_ratios"`
	LiveRatios  []float64 `json:"live_ratios"`
	LivePublish []float64 `json:"live_publish_rate"`
	LiveDropped []int     `json:"live_not_stored"`
	LiveAhead   []int     `json:"live_applied_ahead"`
	CatchRatio  float64   `json:"catchup_ratio_median"`
	LiveRatio   float64   `json:"live_ratio_median"`
}

// Ingest publishes a day of events of a 100k-agent population (1M events)
// into the stream of an embedded NATS server, then measures, alternately:
// the catch-up of a raw JetStream ordered consumer that does nothing with the
// messages (the limit) and that of the real ingest.Ingester applying them to
// an engine.Engine; then, live, a raw core NATS subscriber against the
// ingester following the stream, both fed by a plain publisher.
func Ingest(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	res := newResult("ingest", &o)
	users, total, live := o.scaled(100_000, 2_000), o.scaled(1_000_000, 10_000), o.scaled(200_000, 5_000)
	data := &IngestData{Events: total, Users: users, LiveEvents: live}
	res.Data = data

	pop := NewPopulation(users, 1)
	all := pop.Events(total + live)
	evs, liveEvs := all[:total], all[total:]
	liveMsgs, err := encode(liveEvs)
	if err != nil {
		return nil, err
	}

	env, err := startNATS(ctx)
	if err != nil {
		return nil, err
	}
	defer env.close()
	o.logf("ingest: publishing %d events of %d users (acked)", total, users)
	start := time.Now()
	if err := env.publishAcked(ctx, evs); err != nil {
		return nil, err
	}
	data.PublishRate = float64(total) / time.Since(start).Seconds()
	last, err := env.lastSeq(ctx)
	if err != nil {
		return nil, err
	}
	if last != uint64(total) {
		return nil, fmt.Errorf("stream holds %d messages, want %d", last, total)
	}

	// Catch-up, alternating so that a burst of load from elsewhere on the
	// machine hits both sides.
	var keep *follower
	for rep := range o.Repeat {
		raw, err := rawOrdered(ctx, env, last)
		if err != nil {
			return nil, err
		}
		f, eng, err := engineCatchUp(ctx, env, last)
		if err != nil {
			return nil, err
		}
		data.RawOrdered = append(data.RawOrdered, raw)
		data.EngineCatch = append(data.EngineCatch, eng)
		data.CatchRatios = append(data.CatchRatios, eng/raw)
		o.logf("ingest: catch-up %d/%d: raw ordered consumer %.0f/s, engine %.0f/s (%.0f%%)", rep+1, o.Repeat, raw, eng, 100*eng/raw)
		if rep == o.Repeat-1 {
			keep = f
		} else {
			f.stop()
		}
	}
	defer keep.stop()
	if err := keep.pause(); err != nil {
		return nil, err
	}

	// Live: a plain publisher sends liveEvs; the clock runs from the first
	// publish to the last message received (raw) or applied (engine).
	for rep := range o.Repeat {
		raw, err := rawSubscriber(ctx, env, liveMsgs)
		if err != nil {
			return nil, err
		}
		profile := ""
		if o.LiveCPUProfile != "" {
			profile = fmt.Sprintf("%s.%d", o.LiveCPUProfile, rep+1)
		}
		eng, pubRate, notStored, ahead, err := keep.live(ctx, env, liveMsgs, liveEvs, profile)
		if err != nil {
			return nil, err
		}
		rawJS, err := rawOrderedLive(ctx, env, liveMsgs)
		if err != nil {
			return nil, err
		}
		data.RawOrdLive = append(data.RawOrdLive, rawJS)
		data.RawSub = append(data.RawSub, raw)
		data.EngineLive = append(data.EngineLive, eng)
		data.LiveRatios = append(data.LiveRatios, eng/raw)
		data.LivePublish = append(data.LivePublish, pubRate)
		data.LiveDropped = append(data.LiveDropped, notStored)
		data.LiveAhead = append(data.LiveAhead, ahead)
		o.logf("ingest: live %d/%d: raw subscriber %.0f/s, engine %.0f/s (%.0f%%), raw ordered consumer live %.0f/s, publisher %.0f/s, applied ahead of the stream %d",
			rep+1, o.Repeat, raw, eng, 100*eng/raw, rawJS, pubRate, ahead)
	}
	if u := keep.engine.Stats().Users; u == 0 {
		return nil, fmt.Errorf("the engine holds no user after ingest")
	}

	data.CatchRatio, data.LiveRatio = Median(data.CatchRatios), Median(data.LiveRatios)
	t := res.table(fmt.Sprintf("Ingest: %d events of %d users, then %d live events (median of %d, events/s)", total, users, live, o.Repeat),
		"path", "raw NATS (the limit)", "presenced engine", "engine / raw")
	t.Add("catch-up from the stream (ordered consumer)", Median(data.RawOrdered), Median(data.EngineCatch), pct(data.CatchRatio))
	t.Add("live (plain publish; raw: core subscriber)", Median(data.RawSub), Median(data.EngineLive), pct(data.LiveRatio))
	res.note("live, a raw ordered consumer following the stream and doing nothing reads %.0f events/s (median): the engine reaches %s of that JetStream read limit",
		Median(data.RawOrdLive), pct(ratio(Median(data.EngineLive), Median(data.RawOrdLive))))
	res.note("live events applied by the live tail ahead of the stream, per repetition: %v of %d", data.LiveAhead, live)
	res.note("acked publish of the %d events (publish.PublishBatch): %.0f events/s; live plain publisher: %.0f events/s; live messages not stored by the stream: %v",
		total, data.PublishRate, Median(data.LivePublish), data.LiveDropped)
	res.note("ratios are per repetition (raw and engine measured back to back), then the median: catch-up %v, live %v",
		fmtRatios(data.CatchRatios), fmtRatios(data.LiveRatios))
	res.target("catch-up ≥ 60% of the raw ordered consumer", "≥ 60%", pct(data.CatchRatio), data.CatchRatio >= 0.6)
	res.target("live ≥ 60% of the raw subscriber", "≥ 60%", pct(data.LiveRatio), data.LiveRatio >= 0.6)
	return res.finish(&o)
}

func pct(r float64) string { return fmt.Sprintf("%.0f%%", 100*r) }

func fmtRatios(rs []float64) string {
	s := ""
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		s += pct(r)
	}
	return s
}

// rawOrdered reads the stream up to last with an ordered consumer, through
// the same iterator the ingester uses, touching nothing but the payload
// length, and returns messages per second.
func rawOrdered(ctx context.Context, env *natsEnv, last uint64) (float64, error) {
	nc, err := env.connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	start := time.Now()
	it, err := orderedMessages(ctx, nc, 1)
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	var n uint64
	var bytes int
	for n < last {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return 0, err
		}
		bytes += len(msg.Data())
		n++
	}
	_ = bytes
	return float64(n) / time.Since(start).Seconds(), nil
}

// orderedMessages reads the event stream through nc with an ordered
// consumer from sequence start, through the iterator the ingester uses.
func orderedMessages(ctx context.Context, nc *nats.Conn, start uint64) (jetstream.MessagesContext, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, ingest.DefaultStream)
	if err != nil {
		return nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start})
	if err != nil {
		return nil, err
	}
	return cons.Messages()
}

// follower is an ingest.Ingester applying the stream to an engine, as the
// service runs it (with its metrics registered).
type follower struct {
	engine  *engine.Engine
	applier *visibleApplier
	ing     *ingest.Ingester
	reg     *prometheus.Registry
	nc      *nats.Conn
	cancel  context.CancelFunc
	done    chan error
}

func newFollower(env *natsEnv) (*follower, error) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		return nil, err
	}
	nc, err := ingest.Connect(env.url, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return nil, err
	}
	applier := &visibleApplier{engine: e}
	reg := prometheus.NewRegistry()
	ing, err := ingest.New(ingest.Config{Conn: nc, Applier: applier, Registerer: reg})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &follower{engine: e, applier: applier, ing: ing, nc: nc, reg: reg}, nil
}

func (f *follower) run(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan error, 1)
	go func() { f.done <- f.ing.Run(ctx) }()
}

func (f *follower) pause() error {
	f.cancel()
	f.cancel = nil
	return <-f.done
}

func (f *follower) stop() {
	if f.cancel != nil {
		_ = f.pause()
	}
	f.nc.Close()
}

// engineCatchUp starts a new engine and ingester on the stream and returns
// the messages per second until it has applied up to last.
func engineCatchUp(ctx context.Context, env *natsEnv, last uint64) (*follower, float64, error) {
	f, err := newFollower(env)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	f.run(ctx)
	err = waitFor(ctx, "the engine to catch up", 10*time.Minute, 200*time.Microsecond, func() bool { return f.ing.AppliedSeq() >= last })
	elapsed := time.Since(start)
	if err != nil {
		f.stop()
		return nil, 0, err
	}
	return f, float64(last) / elapsed.Seconds(), nil
}

// live resumes the ingester, lets it catch up with what the stream got while
// it was paused (not timed), then publishes msgs and returns the rate at
// which they became visible in the engine, from the live tail or from the
// stream, the publisher's rate and how many messages the stream did not
// store.
func (f *follower) live(ctx context.Context, env *natsEnv, msgs []wire, evs []presence.Event, profile string) (rate, pubRate float64, notStored, ahead int, err error) {
	before, err := env.settle(ctx)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	f.run(ctx)
	defer func() {
		if perr := f.pause(); err == nil {
			err = perr
		}
	}()
	if err := waitFor(ctx, "the engine to catch up before the live run", 10*time.Minute, time.Millisecond,
		func() bool { return f.ing.AppliedSeq() >= before && f.ing.Ready() }); err != nil {
		return 0, 0, 0, 0, err
	}
	aheadBefore, err := f.ahead()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	seen := f.applier.watch(evs)
	defer f.applier.watch(nil)
	if profile != "" {
		stop, err := startCPUProfile(profile)
		if err != nil {
			return 0, 0, 0, 0, err
		}
		defer stop()
	}
	rate, pubRate, notStored, err = measureLive(ctx, env, msgs, before,
		func() uint64 { return before + seen.Load() },
		func(last uint64) bool { return f.ing.AppliedSeq() >= last })
	if err != nil {
		return 0, 0, 0, 0, err
	}
	aheadAfter, err := f.ahead()
	return rate, pubRate, notStored, int(aheadAfter - aheadBefore), err
}

// startCPUProfile starts writing a CPU profile to path and returns what
// stops it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// ahead reads the ingester's presence_events_ahead_total.
func (f *follower) ahead() (float64, error) {
	mfs, err := f.reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == "presence_events_ahead_total" {
			return mf.GetMetric()[0].GetCounter().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("the ingester has no presence_events_ahead_total")
}

// visibleApplier applies to the engine and counts, while watching, the
// distinct watched events applied: the live tail and the stream's reader may
// both apply one. The watched events' ts are consecutive microseconds (see
// Population.Events), which names each by its position without a lookup.
type visibleApplier struct {
	engine  *engine.Engine
	watched atomic.Pointer[watched]
}

type watched struct {
	firstTS int64
	done    []atomic.Bool
	visible atomic.Uint64
}

// watch starts counting evs (none: stops) and returns the counter.
func (v *visibleApplier) watch(evs []presence.Event) *atomic.Uint64 {
	w := &watched{done: make([]atomic.Bool, len(evs))}
	if len(evs) > 0 {
		w.firstTS = evs[0].TS
		for i := range evs {
			if evs[i].TS != w.firstTS+int64(i)*int64(time.Microsecond) {
				panic("bench: watched events are not 1µs apart")
			}
		}
	}
	v.watched.Store(w)
	return &w.visible
}

func (v *visibleApplier) Apply(tenant string, ev *presence.Event) engine.Result {
	res := v.engine.Apply(tenant, ev)
	if w := v.watched.Load(); w != nil {
		i := (ev.TS - w.firstTS) / int64(time.Microsecond)
		if i >= 0 && i < int64(len(w.done)) && w.done[i].CompareAndSwap(false, true) {
			w.visible.Add(1)
		}
	}
	return res
}

// measureLive publishes msgs with a plain publisher and returns the rate at
// which progress (messages handled, counted from before) moved until every
// message was handled, or until nothing moved for a second once drained
// reports that the reader has handled all the stream stored; with the
// publisher's rate and how many messages the stream did not store.
func measureLive(ctx context.Context, env *natsEnv, msgs []wire, before uint64, progress func() uint64, drained func(lastSeq uint64) bool) (rate, pubRate float64, notStored int, err error) {
	pubNC, err := env.connect()
	if err != nil {
		return 0, 0, 0, err
	}
	defer pubNC.Close()
	start := time.Now()
	if err := publishPlain(pubNC, msgs); err != nil {
		return 0, 0, 0, err
	}
	pubRate = float64(len(msgs)) / time.Since(start).Seconds()
	// The stream may still be storing what the publisher sent, and may
	// drop some of it (plain publishes get no acknowledgement): wait for
	// every message, or for the reader to have handled all the stream has
	// once nothing moves.
	want := before + uint64(len(msgs))
	handled, progressed := progress(), time.Now()
	last, lastCheck := uint64(0), time.Time{}
	for deadline := time.Now().Add(10 * time.Minute); ; {
		if a := progress(); a != handled {
			handled, progressed = a, time.Now()
		}
		if handled >= want {
			break
		}
		if time.Since(lastCheck) > 100*time.Millisecond {
			if last, err = env.lastSeq(ctx); err != nil {
				return 0, 0, 0, err
			}
			lastCheck = time.Now()
			if drained(last) && time.Since(progressed) > time.Second {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, 0, fmt.Errorf("%d of %d live events handled", handled-before, len(msgs))
		}
		time.Sleep(200 * time.Microsecond)
	}
	if last, err = env.lastSeq(ctx); err != nil {
		return 0, 0, 0, err
	}
	return float64(handled-before) / progressed.Sub(start).Seconds(), pubRate, len(msgs) - int(last-before), nil
}

// rawOrderedLive follows the stream with an ordered consumer that does
// nothing with the messages while a plain publisher sends msgs: the live
// limit of reading through JetStream.
func rawOrderedLive(ctx context.Context, env *natsEnv, msgs []wire) (float64, error) {
	before, err := env.settle(ctx)
	if err != nil {
		return 0, err
	}
	nc, err := env.connect()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	it, err := orderedMessages(ctx, nc, before+1)
	if err != nil {
		return 0, err
	}
	var seen atomic.Uint64
	seen.Store(before)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := it.Next(); err != nil {
				return
			}
			seen.Add(1)
		}
	}()
	rate, _, _, err := measureLive(ctx, env, msgs, before, seen.Load,
		func(last uint64) bool { return seen.Load() >= last })
	it.Stop()
	<-done
	return rate, err
}

// rawSubscriber subscribes to the event subjects with core NATS and returns
// the messages per second received while a plain publisher sends msgs.
func rawSubscriber(ctx context.Context, env *natsEnv, msgs []wire) (float64, error) {
	if _, err := env.settle(ctx); err != nil {
		return 0, err
	}
	subNC, err := env.connect()
	if err != nil {
		return 0, err
	}
	defer subNC.Close()
	var (
		n    atomic.Int64
		mu   sync.Mutex
		last time.Time
		done = make(chan struct{})
	)
	want := int64(len(msgs))
	sub, err := subNC.Subscribe(ingest.DefaultPrefix+".*.*", func(m *nats.Msg) {
		if c := n.Add(1); c == want {
			mu.Lock()
			last = time.Now()
			mu.Unlock()
			close(done)
		}
	})
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return 0, err
	}
	if err := subNC.Flush(); err != nil {
		return 0, err
	}
	pubNC, err := env.connect()
	if err != nil {
		return 0, err
	}
	defer pubNC.Close()
	start := time.Now()
	if err := publishPlain(pubNC, msgs); err != nil {
		return 0, err
	}
	// Wait for the last message, or for the count to stop moving (a
	// message dropped as a slow consumer never comes).
	prev, quiet := int64(-1), time.Now()
	for {
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			return float64(want) / last.Sub(start).Seconds(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if c := n.Load(); c != prev {
			prev, quiet = c, time.Now()
		} else if time.Since(quiet) > 3*time.Second {
			return 0, fmt.Errorf("raw subscriber: %w: %d of %d", errShort, c, want)
		}
	}
}
