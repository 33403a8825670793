package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/oracle"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// gatedEngine is an engine whose first Apply waits for gate to close, when
// gate is set: it holds an ingester that has read the streams' state.
type gatedEngine struct {
	*engine.Engine
	gate    chan struct{}
	entered atomic.Bool
}

func newEngine(t testing.TB, gate chan struct{}) *gatedEngine {
	t.Helper()
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &gatedEngine{Engine: e, gate: gate}
}

func (g *gatedEngine) Apply(tenant string, ev *presence.Event) engine.Result {
	if g.gate != nil && g.entered.CompareAndSwap(false, true) {
		<-g.gate
	}
	return g.Engine.Apply(tenant, ev)
}

var streamTenants = []string{"acme", "globex"}

// wire is one message as published.
type wire struct{ subject, body string }

// mixed returns users' events of streamTenants in random order, with a bad
// message every few events, and the events alone for the oracle.
func mixed(r *rand.Rand, users int) ([]wire, []oracle.Delivered) {
	return mixedOf(r, streamTenants, users)
}

// mixedOf is mixed for the given tenants.
func mixedOf(r *rand.Rand, tenants []string, users int) ([]wire, []oracle.Delivered) {
	events := oracle.Events(r, tenants, users, 3, 5)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	var msgs []wire
	for k, d := range events {
		if k%7 == 3 {
			msgs = append(msgs, wire{"presence." + d.Tenant + ".dance", fmt.Sprintf(`{"userId":"bad-%d"}`, k)})
		}
		subject, _ := presence.Subject("presence", d.Tenant, d.Ev.Type)
		msgs = append(msgs, wire{subject, string(d.Ev.AppendJSON(nil))})
	}
	return msgs, events
}

// publishAll publishes msgs with JetStream publishes, so that each is stored
// when it returns, and returns the stream's last sequence.
func publishAll(t testing.TB, js jetstream.JetStream, msgs []wire) uint64 {
	t.Helper()
	var last uint64
	for _, m := range msgs {
		ack, err := js.Publish(context.Background(), m.subject, []byte(m.body))
		if err != nil {
			t.Fatalf("publish %s: %v", m.subject, err)
		}
		last = ack.Sequence
	}
	return last
}

// checkOracle compares the engine's answers with the oracle's over the
// events, for random filters of every class.
func checkOracle(t testing.TB, e *engine.Engine, events []oracle.Delivered, users int, what string) {
	t.Helper()
	truth := oracle.State(events)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		tn := streamTenants[i%len(streamTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		if got, want := e.Query(tn, f), oracle.Query(truth[tn], f); got != want {
			t.Fatalf("%s: tenant %s filter %+v:\n got %+v\nwant %+v", what, tn, *f, got, want)
		}
	}
}

// sameEngines compares two engines' answers for random filters.
func sameEngines(t testing.TB, a, b *engine.Engine, users int, what string) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 200 {
		tn := streamTenants[i%len(streamTenants)]
		f := oracle.RandomFilter(r, oracle.Class(i%3), users)
		if got, want := a.Query(tn, f), b.Query(tn, f); got != want {
			t.Fatalf("%s: tenant %s filter %+v:\n got %+v\nwant %+v", what, tn, *f, got, want)
		}
	}
	if sa, sb := a.Stats(), b.Stats(); sa.Users != sb.Users || sa.Tenants != sb.Tenants {
		t.Fatalf("%s: %d users in %d tenants, want %d in %d", what, sa.Users, sa.Tenants, sb.Users, sb.Tenants)
	}
}

// streamCreated returns the creation time of the stream called name.
func streamCreated(t testing.TB, js jetstream.JetStream, name string) time.Time {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Created
}

// recreate deletes the event stream and creates it again as the ingester
// would, unless the ingester got there first; it returns the new stream's
// creation time.
func recreate(t testing.TB, js jetstream.JetStream, old time.Time) time.Time {
	t.Helper()
	ctx := context.Background()
	if err := js.DeleteStream(ctx, "PRESENCE"); err != nil {
		t.Fatal(err)
	}
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRESENCE", Subjects: []string{"presence.*.*"},
		Storage: jetstream.FileStorage})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		t.Fatal(err)
	}
	created := streamCreated(t, js, "PRESENCE")
	if created.Equal(old) {
		t.Fatal("the recreated stream has the old one's creation time")
	}
	return created
}

// badSeqs returns the sequences and subjects of the bad messages among
// msgs, published from sequence 1 on.
func badSeqs(msgs []wire) map[uint64]string {
	bad := map[uint64]string{}
	for k, m := range msgs {
		if strings.HasSuffix(m.subject, ".dance") {
			bad[uint64(k+1)] = m.subject
		}
	}
	return bad
}

// checkDeadLetters checks that the dead-letter stream holds exactly one
// dead letter of each bad message of each stream, keyed by the stream's
// creation time, with the headers of contract section 1.4, and nothing
// else but the test's probes.
func checkDeadLetters(t testing.TB, js jetstream.JetStream, want map[time.Time]map[uint64]string) {
	t.Helper()
	type key struct {
		created string
		seq     uint64
	}
	got := map[key]int{}
	for _, m := range streamMsgs(t, js, "PRESENCE_DEADLETTER") {
		if m.Subject == "probe" {
			continue
		}
		seq, err := strconv.ParseUint(m.Header.Get(ingest.HeaderSequence), 10, 64)
		if err != nil {
			t.Fatalf("dead letter %d without a sequence: %v", m.Sequence, m.Header)
		}
		k := key{m.Header.Get(ingest.HeaderStreamCreated), seq}
		got[k]++
		created, err := time.Parse(time.RFC3339Nano, k.created)
		subject, ok := want[created.UTC()][seq]
		if err != nil || !ok {
			t.Errorf("dead letter %d of message %d of the stream created %q: not a bad message", m.Sequence, seq, k.created)
			continue
		}
		if m.Header.Get(ingest.HeaderSubject) != subject || m.Subject != "deadletter."+strings.Replace(subject, "dance", "_", 1) ||
			!strings.Contains(m.Header.Get(ingest.HeaderError), "type") {
			t.Errorf("dead letter %d: subject %s, headers %v; want the copy of %s", m.Sequence, m.Subject, m.Header, subject)
		}
	}
	n := 0
	for created, bad := range want {
		for seq := range bad {
			n++
			if c := got[key{created.UTC().Format(time.RFC3339Nano), seq}]; c != 1 {
				t.Errorf("message %d of the stream created %v: %d dead letters, want 1", seq, created, c)
			}
		}
	}
	if len(got) != n {
		t.Errorf("%d messages dead-lettered, want %d", len(got), n)
	}
}

// TestStreamRecreated deletes and recreates the stream under a running
// ingester, once with fewer messages than it had applied (so that the
// consumer, going on from there, would deliver nothing) and once with more
// (so that it would deliver the new stream's later messages as if they
// followed the old ones). Each time the engine must be emptied and rebuilt
// from the new stream's first message: its answers equal the oracle's over
// the new stream and a fresh ingester's, and every bad message of every
// stream has one dead letter.
func TestStreamRecreated(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)
	logs := &testenv.Buffer{}
	e := newEngine(t, nil)
	r := startIngester(t, ingest.Config{Conn: nc, Applier: e, Logger: bufferLogger(logs)})
	testenv.WaitFor(t, "readiness", r.Ready)
	created := streamCreated(t, js, "PRESENCE")

	const users = 40
	rnd := rand.New(rand.NewPCG(1, 2))
	msgs, events := mixed(rnd, users)
	last := publishAll(t, js, msgs)
	r.waitApplied(t, last)
	checkOracle(t, e.Engine, events, users, "first stream")
	wantDL := map[time.Time]map[uint64]string{created: badSeqs(msgs)}

	for round, n := range []int{users / 4, 2 * users} {
		created = recreate(t, js, created)
		msgs, events = mixed(rnd, n)
		last = publishAll(t, js, msgs)
		wantDL[created] = badSeqs(msgs)
		what := fmt.Sprintf("recreated stream %d (%d messages)", round+1, len(msgs))
		testenv.WaitFor(t, what+" to be applied", func() bool {
			return counterValue(t, r.reg, "presence_stream_resets_total") == float64(round+1) && r.AppliedSeq() == last
		})
		if !r.Ready() {
			t.Errorf("%s: applied, not ready", what)
		}
		checkOracle(t, e.Engine, events, n, what)
		fresh := newEngine(t, nil)
		f := startIngester(t, ingest.Config{Conn: nc, Applier: fresh})
		f.waitApplied(t, last)
		sameEngines(t, e.Engine, fresh.Engine, n, what+" against a fresh replay")
		f.stop(t)
		checkDeadLetters(t, js, wantDL)
		var pos ingest.Position
		r.Checkpoint(func(p ingest.Position) { pos = p })
		if pos.Seq != last || !pos.StreamCreated.Equal(created) {
			t.Errorf("%s: position %+v, want %d of the stream created %v", what, pos, last, created)
		}
	}
	if n := strings.Count(logs.String(), "the engine is emptied and rebuilt"); n != 2 {
		t.Errorf("%d reset lines, want 2:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "engine_stream_created=") {
		t.Errorf("the reset line does not name the old stream:\n%s", logs)
	}
}

// TestStartOnAnotherStream starts ingesters as from a snapshot: of the
// stream as it is (read on from there), of a stream since recreated (reset,
// read from the first message, one Warn line naming both creation times), of
// an unknown stream within this one (format 1: trusted, with a warning) and
// beyond it (reset).
func TestStartOnAnotherStream(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)
	r := startIngester(t, ingest.Config{Conn: nc})
	testenv.WaitFor(t, "the streams", r.Ready)
	r.stop(t)
	for k := range 10 {
		publish(t, nc, "presence.acme.login", fmt.Sprintf(`{"userId":"u%d"}`, k))
	}
	waitStored(t, js, "PRESENCE", 10)
	created := streamCreated(t, js, "PRESENCE")
	older := created.Add(-time.Hour)

	tests := []struct {
		name       string
		startSeq   uint64
		created    time.Time
		applied    int // records after the run
		resets     int32
		logs, none string
	}{
		{"same stream", 7, created, 4, 0, "", "rebuilt"},
		{"recreated since", 7, older, 10, 1, "engine_stream_created=" + older.Format(time.RFC3339Nano), "trusting"},
		{"unknown, within", 7, time.Time{}, 4, 0, "trusting it", "rebuilt"},
		{"unknown, beyond", 50, time.Time{}, 10, 1, "beyond the stream's end", "trusting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &testenv.Buffer{}
			rec := &recorder{}
			r := startIngester(t, ingest.Config{Conn: nc, Applier: rec, StartSeq: tt.startSeq, StreamCreated: tt.created,
				Logger: bufferLogger(logs)})
			r.waitApplied(t, 10)
			testenv.WaitFor(t, "readiness", r.Ready)
			if rec.len() != tt.applied || rec.resets.Load() != tt.resets || r.AppliedSeq() != 10 {
				t.Errorf("%d applied after %d resets, AppliedSeq %d; want %d after %d, 10", rec.len(), rec.resets.Load(),
					r.AppliedSeq(), tt.applied, tt.resets)
			}
			if got := counterValue(t, r.reg, "presence_stream_resets_total"); got != float64(tt.resets) {
				t.Errorf("resets_total %v, want %d", got, tt.resets)
			}
			if tt.resets > 0 && (!strings.Contains(logs.String(), "stream_created="+created.Format(time.RFC3339Nano)) ||
				strings.Count(logs.String(), "level=WARN") != 1) {
				t.Errorf("want one Warn line naming the stream's creation time %v:\n%s", created, logs)
			}
			if !strings.Contains(logs.String(), tt.logs) || strings.Contains(logs.String(), tt.none) {
				t.Errorf("log lacks %q or has %q:\n%s", tt.logs, tt.none, logs)
			}
		})
	}
}

// TestStreamGaps checks that messages the ingester needed and the stream no
// longer holds are logged as an Error naming them and counted: at the start
// (a purge removed what followed the snapshot) and while reading (messages
// deleted in the middle). The ingester goes on with what the stream holds.
func TestStreamGaps(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)
	r := startIngester(t, ingest.Config{Conn: nc})
	testenv.WaitFor(t, "the streams", r.Ready)
	r.stop(t)
	ctx := context.Background()
	for k := 1; k <= 15; k++ {
		publish(t, nc, "presence.acme.login", fmt.Sprintf(`{"userId":"u%d"}`, k))
	}
	waitStored(t, js, "PRESENCE", 15)
	stream, err := js.Stream(ctx, "PRESENCE")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(8)); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{12, 13} {
		if err := stream.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	created := streamCreated(t, js, "PRESENCE")

	logs := &testenv.Buffer{}
	r = startIngester(t, ingest.Config{Conn: nc, StartSeq: 4, StreamCreated: created, Logger: bufferLogger(logs)})
	r.waitApplied(t, 15)
	var users []string
	for _, rec := range r.rec.records() {
		users = append(users, rec.Ev.UserID)
	}
	if got := strings.Join(users, " "); got != "u8 u9 u10 u11 u14 u15" {
		t.Errorf("applied %s, want what the stream holds from 8 on", got)
	}
	if got := counterValue(t, r.reg, "presence_stream_gaps_total"); got != 2 {
		t.Errorf("gaps_total %v, want 2", got)
	}
	for _, gap := range []string{"from=4 to=7 missing=4", "from=12 to=13 missing=2"} {
		if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), gap) {
			t.Errorf("no Error line for the gap %s:\n%s", gap, logs)
		}
	}
	if n := counterValue(t, r.reg, "presence_stream_resets_total"); n != 0 {
		t.Errorf("resets_total %v: a gap is not a recreated stream", n)
	}
}

// TestStreamDeletedNotRecreated deletes the stream under a running
// ingester: it creates it again itself, so that events published afterwards
// are kept and applied.
func TestStreamDeletedNotRecreated(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	nc := connect(t, url, nil)
	js, _ := jetstream.New(nc)
	r := startIngester(t, ingest.Config{Conn: nc})
	testenv.WaitFor(t, "readiness", r.Ready)
	publish(t, nc, "presence.acme.login", `{"userId":"before"}`)
	r.waitApplied(t, 1)
	if err := js.DeleteStream(context.Background(), "PRESENCE"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the stream to be created again", func() bool {
		_, err := js.Stream(context.Background(), "PRESENCE")
		return err == nil
	})
	pub := connect(t, url, nil, nats.ReconnectWait(20*time.Millisecond))
	publish(t, pub, "presence.acme.login", `{"userId":"after"}`)
	testenv.WaitFor(t, "the event after the deletion", func() bool {
		recs := r.rec.records()
		return len(recs) == 1 && recs[0].Ev.UserID == "after"
	})
	if got := counterValue(t, r.reg, "presence_stream_resets_total"); got != 1 {
		t.Errorf("resets_total %v, want 1", got)
	}
}

// TestPrepare prepares the streams of an empty server, as a caller does
// before it starts ingesters, then again once they hold messages.
func TestPrepare(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	js := jsOf(t, url)
	ctx := context.Background()
	info, err := ingest.Prepare(ctx, js, ingest.Config{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Created.Equal(streamCreated(t, js, "PRESENCE")) || info.LastSeq != 0 {
		t.Errorf("Prepare: %+v, want the new stream's creation time and no message", info)
	}
	for _, name := range []string{"PRESENCE", "PRESENCE_DEADLETTER", "KV_PRESENCE" + ingest.MarksSuffix} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	last := publishAll(t, js, []wire{{"presence.acme.login", `{"userId":"1"}`}, {"presence.acme.login", `{"userId":"2"}`}})
	again, err := ingest.Prepare(ctx, js, ingest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Created.Equal(info.Created) || again.FirstSeq != 1 || again.LastSeq != last {
		t.Errorf("Prepare again: %+v, want the same stream holding 1 to %d", again, last)
	}
	if _, err := ingest.Prepare(ctx, js, ingest.Config{Stream: "A.B"}); !errors.Is(err, ingest.ErrConfig) {
		t.Errorf("Prepare with a bad Stream: %v, want ErrConfig", err)
	}
}
