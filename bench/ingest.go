package bench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
)

// IngestData is the ingest scenario's numbers (rates in events per second).
type IngestData struct {
	Events      int     `json:"events"`
	Users       int     `json:"users"`
	LiveEvents  int     `json:"live_events"`
	LiveUsers   int     `json:"live_users"`
	PublishRate float64 `json:"publish_acked_rate"`
	// Per repetition, in the order measured.
	RawOrdered  []float64 `json:"raw_ordered_rate"`
	EngineCatch []float64 `json:"engine_catchup_rate"`
	EngineLive  []float64 `json:"engine_live_rate"`
	RawOrdLive  []float64 `json:"raw_ordered_rate_of_live_events"`
	RawFollow   []float64 `json:"raw_ordered_follower_live_rate"`
	LivePublish []float64 `json:"live_publish_rate"`
	CatchRatios []float64 `json:"catchup_ratios"`
	LiveRatios  []float64 `json:"live_ratios"`
	CatchRatio  float64   `json:"catchup_ratio_median"`
	LiveRatio   float64   `json:"live_ratio_median"`
}

// Ingest publishes a day of events of a 100k-agent population (1M events)
// into the stream of an embedded NATS server, then measures, alternately:
// the catch-up of a raw JetStream ordered consumer that does nothing with the
// messages (the limit) and that of the real ingest.Ingester applying them to
// an engine.Engine. Then, live, the ingester follows the stream while a plain
// publisher sends 500k events of 20k other agents, paced so that the stream
// stores every one: the rate runs from the first publish until the
// ingester's presence_events_total has grown by 500k, and is compared with a
// raw ordered consumer reading the same 500k from the stream right after.
func Ingest(ctx context.Context, o Options) (*Result, error) {
	res := newResult("ingest", &o)
	users, total := o.scaled(100_000, 2_000), o.scaled(1_000_000, 10_000)
	liveUsers, live := o.scaled(20_000, 500), o.scaled(500_000, 5_000)
	data := &IngestData{Events: total, Users: users, LiveEvents: live, LiveUsers: liveUsers}
	res.Data = data

	evs := NewPopulation(users, 1).Events(total)
	// The live agents' events come after the day already in the stream.
	liveEvs := NewPopulation(liveUsers, 2).Events(live)
	for i := range liveEvs {
		liveEvs[i].TS += int64(total) * int64(time.Microsecond)
	}
	env, err := startNATS(ctx)
	if err != nil {
		return nil, err
	}
	defer env.close()
	liveMsgs, err := encode(env.prefix, Tenant, liveEvs)
	if err != nil {
		return nil, err
	}
	o.logf("ingest: publishing %d events of %d users (acked)", total, users)
	start := time.Now()
	if err := publishAcked(ctx, env.js, env.prefix, Tenant, evs); err != nil {
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
		raw, err := rawOrdered(ctx, env, 1, last)
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

	// Live: the clock runs from the first publish until every live event is
	// counted; then the raw ordered consumer reads the same events from the
	// stream.
	for rep := range o.Repeat {
		profile := ""
		if o.LiveCPUProfile != "" {
			profile = fmt.Sprintf("%s.%d", o.LiveCPUProfile, rep+1)
		}
		from, eng, pubRate, err := keep.live(ctx, env, liveMsgs, profile)
		if err != nil {
			return nil, err
		}
		raw, err := rawOrdered(ctx, env, from, uint64(len(liveMsgs)))
		if err != nil {
			return nil, err
		}
		follow, err := rawFollower(ctx, env, liveMsgs)
		if err != nil {
			return nil, err
		}
		data.EngineLive = append(data.EngineLive, eng)
		data.RawOrdLive = append(data.RawOrdLive, raw)
		data.RawFollow = append(data.RawFollow, follow)
		data.LiveRatios = append(data.LiveRatios, eng/raw)
		data.LivePublish = append(data.LivePublish, pubRate)
		o.logf("ingest: live %d/%d: engine %.0f/s, raw ordered consumer on the same events %.0f/s (%.0f%%), raw follower live %.0f/s, paced publisher %.0f/s",
			rep+1, o.Repeat, eng, raw, 100*eng/raw, follow, pubRate)
	}
	if u := keep.engine.Stats().Users; u == 0 {
		return nil, fmt.Errorf("the engine holds no user after ingest")
	}

	data.CatchRatio, data.LiveRatio = Median(data.CatchRatios), Median(data.LiveRatios)
	t := res.table(fmt.Sprintf("Ingest: %d events of %d users, then %d live events (median of %d, events/s)", total, users, live, o.Repeat),
		"path", "raw NATS (the limit)", "presenced engine", "engine / raw")
	t.Add("catch-up from the stream (ordered consumer)", Median(data.RawOrdered), Median(data.EngineCatch), pct(data.CatchRatio))
	t.Add(fmt.Sprintf("live, %d events of %d users (plain publish, paced; raw: ordered consumer reading them after)", live, liveUsers),
		Median(data.RawOrdLive), Median(data.EngineLive), pct(data.LiveRatio))
	res.note("a raw ordered consumer following the stream while the same events are published again, paced the same way, reads %.0f events/s (median): JetStream's own live limit here, storing and delivering at once; the engine reaches %s of it",
		Median(data.RawFollow), pct(ratio(Median(data.EngineLive), Median(data.RawFollow))))
	res.note("acked publish of the %d events (publish.PublishBatch): %.0f events/s; live plain publisher, paced so that the stream stores all: %.0f events/s",
		total, data.PublishRate, Median(data.LivePublish))
	res.note("ratios are per repetition (raw and engine measured back to back), then the median: catch-up %v, live %v",
		fmtRatios(data.CatchRatios), fmtRatios(data.LiveRatios))
	res.target("catch-up ≥ 75% of the raw ordered consumer", "≥ 75%", pct(data.CatchRatio), data.CatchRatio >= 0.75)
	res.target("live ≥ 60% of the raw ordered consumer on the same events", "≥ 60%", pct(data.LiveRatio), data.LiveRatio >= 0.6)
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

// rawOrdered reads count messages of the stream from sequence from with an
// ordered consumer pulling as the ingester does, touching nothing but the
// payload length, and returns messages per second.
func rawOrdered(ctx context.Context, env *natsEnv, from, count uint64) (float64, error) {
	nc, js, err := jetStream(env.url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	start := time.Now()
	var n uint64
	var bytes int
	done := make(chan struct{})
	cc, err := consumeOrdered(ctx, js, from, func(msg jetstream.Msg) {
		bytes += len(msg.Data())
		if n++; n == count {
			close(done)
		}
	})
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return float64(count) / time.Since(start).Seconds(), nil
}

// rawFollower publishes msgs again, paced as the live run does, while an
// ordered consumer pulling as the ingester does follows the stream and does
// nothing with them, and returns the rate from the first publish to the
// last message read: what JetStream delivers live when it also stores.
func rawFollower(ctx context.Context, env *natsEnv, msgs []wire) (float64, error) {
	before, err := env.settle(ctx)
	if err != nil {
		return 0, err
	}
	nc, js, err := jetStream(env.url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var n int
	done := make(chan struct{})
	cc, err := consumeOrdered(ctx, js, before+1, func(jetstream.Msg) {
		if n++; n == len(msgs) {
			close(done)
		}
	})
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	pubNC, err := env.connect()
	if err != nil {
		return 0, err
	}
	defer pubNC.Close()
	start := time.Now()
	if err := publishPaced(ctx, pubNC, env, msgs, before); err != nil {
		return 0, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("raw follower: fewer than %d messages after 10 minutes", len(msgs))
	}
	return float64(len(msgs)) / time.Since(start).Seconds(), nil
}

// follower is an ingest.Ingester applying the stream to an engine, as the
// service runs it (with its metrics registered).
type follower struct {
	engine *engine.Engine
	ing    *ingest.Ingester
	reg    *prometheus.Registry
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
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
	reg := prometheus.NewRegistry()
	ing, err := ingest.New(ingest.Config{Conn: nc, Applier: e, Registerer: reg})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &follower{engine: e, ing: ing, nc: nc, reg: reg}, nil
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
// it was paused (not timed), then publishes msgs with a plain publisher,
// paced so that the stream stores every one. It returns the stream sequence
// of the first, the rate from the first publish until the ingester's
// presence_events_total has grown by len(msgs), and the publisher's rate.
func (f *follower) live(ctx context.Context, env *natsEnv, msgs []wire, profile string) (from uint64, rate, pubRate float64, err error) {
	before, err := env.settle(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	f.run(ctx)
	defer func() {
		if perr := f.pause(); err == nil {
			err = perr
		}
	}()
	if err := waitFor(ctx, "the engine to catch up before the live run", 10*time.Minute, time.Millisecond,
		func() bool { return f.ing.AppliedSeq() >= before && f.ing.Ready() }); err != nil {
		return 0, 0, 0, err
	}
	counted, err := f.eventsTotal()
	if err != nil {
		return 0, 0, 0, err
	}
	want := counted + float64(len(msgs))
	if profile != "" {
		stop, err := startCPUProfile(profile)
		if err != nil {
			return 0, 0, 0, err
		}
		defer stop()
	}
	pubNC, err := env.connect()
	if err != nil {
		return 0, 0, 0, err
	}
	defer pubNC.Close()

	start := time.Now()
	published := make(chan error, 1)
	go func() { published <- publishPaced(ctx, pubNC, env, msgs, before) }()
	var pubDone time.Time
	for counted < want {
		select {
		case err := <-published:
			if err != nil {
				return 0, 0, 0, err
			}
			pubDone = time.Now()
			published = nil
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if counted, err = f.eventsTotal(); err != nil {
			return 0, 0, 0, err
		}
		if time.Since(start) > 10*time.Minute {
			return 0, 0, 0, fmt.Errorf("live: %.0f of %d events counted after 10 minutes", counted-want+float64(len(msgs)), len(msgs))
		}
	}
	elapsed := time.Since(start)
	if published != nil {
		if err := <-published; err != nil {
			return 0, 0, 0, err
		}
		pubDone = time.Now()
	}
	last, err := env.lastSeq(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	if last != before+uint64(len(msgs)) {
		return 0, 0, 0, fmt.Errorf("live: the stream stored %d of %d events: the pacing let it drop some", last-before, len(msgs))
	}
	return before + 1, float64(len(msgs)) / elapsed.Seconds(), float64(len(msgs)) / pubDone.Sub(start).Seconds(), nil
}

// livePacingWindow bounds the messages published but not yet stored: a
// JetStream stream drops plain publishes that arrive faster than it stores
// them, and the live run must lose none.
const livePacingWindow = 8192

// publishPaced sends msgs with plain publishes in batches, waiting whenever
// more than livePacingWindow are not stored yet by the stream, whose last
// sequence was before.
func publishPaced(ctx context.Context, nc *nats.Conn, env *natsEnv, msgs []wire, before uint64) error {
	const batch = 1024
	for i := 0; i < len(msgs); i += batch {
		for {
			last, err := env.lastSeq(ctx)
			if err != nil {
				return err
			}
			if uint64(i) <= last-before+livePacingWindow-batch {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err := publishPlain(nc, msgs[i:min(i+batch, len(msgs))]); err != nil {
			return err
		}
	}
	return nil
}

// eventsTotal sums the ingester's presence_events_total over its labels.
func (f *follower) eventsTotal() (float64, error) {
	mfs, err := f.reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() == "presence_events_total" {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum, nil
		}
	}
	return 0, fmt.Errorf("the ingester has no presence_events_total")
}
