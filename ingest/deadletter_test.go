package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
)

// operatorDeadLetters creates the dead-letter stream as an operator would,
// with a duplicate window of 100ms, so that JetStream's message ids cannot
// be what keeps dead letters from being written twice, and capturing
// "probe" too, for waitWindow.
func operatorDeadLetters(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:       "PRESENCE_DEADLETTER",
		Subjects:   []string{"deadletter.presence.>", "probe"},
		Storage:    jetstream.MemoryStorage,
		Duplicates: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitWindow waits until the dead-letter stream's duplicate window has
// passed since now: a message id published now is no longer a duplicate.
func waitWindow(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	id := time.Now().String()
	probe := func() bool {
		ack, err := js.Publish(context.Background(), "probe", nil, jetstream.WithMsgID(id))
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return !ack.Duplicate
	}
	probe()
	testenv.WaitFor(t, "the duplicate window to pass", probe)
}

// TestDeadLettersTwoInstances runs two ingesters, each on its own
// connection with its own engine, on one stream with bad messages: every bad
// message must have exactly one dead letter, however their reading
// interleaves and whatever the dead-letter stream's duplicate window.
func TestDeadLettersTwoInstances(t *testing.T) {
	const users = 30
	t.Run("second after the first and the window", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		operatorDeadLetters(t, js)
		a := startIngester(t, ingest.Config{Conn: connect(t, url, nil), Applier: newEngine(t, nil)})
		testenv.WaitFor(t, "the first instance", a.Ready)
		msgs, _ := mixed(rand.New(rand.NewPCG(1, 1)), users)
		last := publishAll(t, js, msgs)
		a.waitApplied(t, last)
		waitWindow(t, js)

		b := startIngester(t, ingest.Config{Conn: connect(t, url, nil), Applier: newEngine(t, nil)})
		b.waitApplied(t, last)
		checkDeadLetters(t, js, map[time.Time]map[uint64]string{streamCreated(t, js, "PRESENCE"): badSeqs(msgs)})
		checkWritten(t, len(badSeqs(msgs)), a, b)
	})

	// The case message ids cannot cover: the second instance looked at the
	// dead letters before the first wrote them, and reaches the bad messages
	// after the window.
	t.Run("second started earlier, reading later", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		operatorDeadLetters(t, js)
		gate := make(chan struct{})
		slow := newEngine(t, gate)
		b := startIngester(t, ingest.Config{Conn: connect(t, url, nil), Applier: slow})
		testenv.WaitFor(t, "the second instance", b.Ready)
		msgs, _ := mixed(rand.New(rand.NewPCG(2, 2)), users)
		msgs[0] = wire{"presence.acme.login", `{"userId":"first"}`} // a good one, for the gate
		last := publishAll(t, js, msgs)
		testenv.WaitFor(t, "the second instance to hold the first message", slow.entered.Load)

		a := startIngester(t, ingest.Config{Conn: connect(t, url, nil), Applier: newEngine(t, nil)})
		a.waitApplied(t, last)
		waitWindow(t, js)
		close(gate)
		b.waitApplied(t, last)
		checkDeadLetters(t, js, map[time.Time]map[uint64]string{streamCreated(t, js, "PRESENCE"): badSeqs(msgs)})
		checkWritten(t, len(badSeqs(msgs)), a, b)
		sameEngines(t, a.Applier(t).Engine, slow.Engine, users, "the two instances")
	})

	t.Run("both reading while bad messages arrive", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		operatorDeadLetters(t, js)
		a := startIngester(t, ingest.Config{Conn: connect(t, url, nil), Applier: newEngine(t, nil)})
		b := startIngester(t, ingest.Config{Conn: connect(t, url, nil), Applier: newEngine(t, nil)})
		testenv.WaitFor(t, "both instances", func() bool { return a.Ready() && b.Ready() })
		var all []wire
		r := rand.New(rand.NewPCG(3, 3))
		for range 5 {
			msgs, _ := mixed(r, users/3)
			all = append(all, msgs...)
			publishAll(t, js, msgs)
			waitWindow(t, js)
		}
		last := uint64(len(all))
		a.waitApplied(t, last)
		b.waitApplied(t, last)
		checkDeadLetters(t, js, map[time.Time]map[uint64]string{streamCreated(t, js, "PRESENCE"): badSeqs(all)})
		checkWritten(t, len(badSeqs(all)), a, b)
		sameEngines(t, a.Applier(t).Engine, b.Applier(t).Engine, users, "the two instances")
	})
}

// checkWritten checks that the instances wrote n dead letters between them,
// and counted n rejected events each.
func checkWritten(t testing.TB, n int, runners ...*runner) {
	t.Helper()
	written := 0.0
	for _, r := range runners {
		written += counterValue(t, r.reg, "presence_deadletters_total")
		if c, err := eventsCounter(r.reg, "_", "rejected"); err != nil || c != float64(n) {
			t.Errorf("rejected %v (%v), want %d", c, err, n)
		}
	}
	if written != float64(n) {
		t.Errorf("the instances wrote %v dead letters, want %d", written, n)
	}
}

func jsOf(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(connect(t, url, nil))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// killedWriter runs an ingester on cfg that dies, as a process killed at
// that point would, right after its second dead letter is stored and before
// its mark is moved to it, and waits for its death. It returns the
// ingester's registry. (At the first, no mark would exist yet, and the
// newest dead letter, which presenced before marks went by, would stand for
// it.)
func killedWriter(t testing.TB, cfg ingest.Config) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	cfg.Registerer = reg
	if cfg.Applier == nil {
		cfg.Applier = &recorder{}
	}
	ing, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	published := 0
	ingest.SetAfterDeadLetterPublish(ing, func() error {
		if published++; published < 2 {
			return nil
		}
		cancel()
		return errors.New("killed between the publish and the mark")
	})
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the killed writer's Run: %v", err)
		}
	case <-time.After(testenv.WaitTimeout):
		t.Fatal("the writer was never killed: no dead letter")
	}
	return reg
}

// markOf reads partition p's dead-letter mark of the stream PRESENCE; ok is
// false when there is none.
func markOf(t testing.TB, js jetstream.JetStream, p int) (created time.Time, seq uint64, ok bool) {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "PRESENCE"+ingest.MarksSuffix)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "p"+strconv.Itoa(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, 0, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		StreamCreated time.Time `json:"streamCreated"`
		Seq           uint64    `json:"seq"`
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		t.Fatalf("mark p%d %q: %v", p, e.Value(), err)
	}
	return v.StreamCreated, v.Seq, true
}

// TestDeadLetterWriterKilled kills a writer between a dead letter's publish
// and its mark's update. The next reader of the message writes it again: the
// message id keeps the second copy out within the dead-letter stream's
// duplicate window (the hour of a stream the ingester creates), and after
// the window both stay, the one limit of "once" (see the package doc).
func TestDeadLetterWriterKilled(t *testing.T) {
	const users = 20
	msgs, _ := mixed(rand.New(rand.NewPCG(4, 4)), users)
	bad := badSeqs(msgs)
	sorted := slices.Sorted(maps.Keys(bad))
	firstSeq, killedSeq := sorted[0], sorted[1]

	t.Run("next reader within the window", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		last := publishBeforeStreams(t, js, msgs)
		killed := killedWriter(t, ingest.Config{Conn: connect(t, url, nil)})
		if n := len(streamMsgs(t, js, "PRESENCE_DEADLETTER")); n != 2 {
			t.Fatalf("the killed writer left %d dead letters, want 2", n)
		}
		if _, seq, _ := markOf(t, js, 0); seq != firstSeq {
			t.Fatalf("the killed writer left its mark at %d, want %d, its first dead letter", seq, firstSeq)
		}

		r := startIngester(t, ingest.Config{Conn: connect(t, url, nil)})
		r.waitApplied(t, last)
		created := streamCreated(t, js, "PRESENCE")
		checkDeadLetters(t, js, map[time.Time]map[uint64]string{created: bad})
		if got, want := counterValue(t, killed, "presence_deadletters_total")+
			counterValue(t, r.reg, "presence_deadletters_total"), float64(len(bad)); got != want {
			t.Errorf("the two writers stored %v dead letters, want %v", got, want)
		}
		if c, seq, ok := markOf(t, js, 0); !ok || !c.Equal(created) || seq != maxSeq(bad) {
			t.Errorf("mark %v %d %v, want the last bad message %d of the stream created %v", c, seq, ok, maxSeq(bad), created)
		}
	})

	t.Run("next reader after the window", func(t *testing.T) {
		_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
		js := jsOf(t, url)
		operatorDeadLetters(t, js)
		last := publishBeforeStreams(t, js, msgs)
		killedWriter(t, ingest.Config{Conn: connect(t, url, nil)})
		waitWindow(t, js)

		r := startIngester(t, ingest.Config{Conn: connect(t, url, nil)})
		r.waitApplied(t, last)
		copies, n := 0, 0
		for _, m := range streamMsgs(t, js, "PRESENCE_DEADLETTER") {
			if m.Subject != "probe" {
				n++
			}
			if m.Header.Get(ingest.HeaderSequence) == strconv.FormatUint(killedSeq, 10) {
				copies++
			}
		}
		if copies != 2 {
			t.Errorf("%d dead letters of the message whose writer died, want the 2 of the documented limit", copies)
		}
		if n != len(bad)+1 {
			t.Errorf("%d dead letters, want one per bad message and the second copy", n)
		}
	})
}

// publishBeforeStreams creates the event stream as the ingester would and
// publishes msgs into it, so that an ingester started afterwards finds them
// all there; it returns the last sequence.
func publishBeforeStreams(t testing.TB, js jetstream.JetStream, msgs []wire) uint64 {
	t.Helper()
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "PRESENCE",
		Subjects: []string{"presence.*.*"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return publishAll(t, js, msgs)
}

func maxSeq(seqs map[uint64]string) uint64 {
	var m uint64
	for seq := range seqs {
		m = max(m, seq)
	}
	return m
}

// TestDeadLettersBeforeMarks replays a stream whose dead letters a
// presenced before marks wrote (here: the marks bucket deleted after they
// were written), long after the duplicate window: the newest dead letter
// stands for the missing mark, and none is written again.
func TestDeadLettersBeforeMarks(t *testing.T) {
	_, url := startServer(t, t.TempDir(), "127.0.0.1:-1")
	js := jsOf(t, url)
	operatorDeadLetters(t, js)
	msgs, _ := mixed(rand.New(rand.NewPCG(5, 5)), 20)
	last := publishBeforeStreams(t, js, msgs)
	r := startIngester(t, ingest.Config{Conn: connect(t, url, nil)})
	r.waitApplied(t, last)
	r.stop(t)
	if err := js.DeleteKeyValue(context.Background(), "PRESENCE"+ingest.MarksSuffix); err != nil {
		t.Fatal(err)
	}
	waitWindow(t, js)

	replay := startIngester(t, ingest.Config{Conn: connect(t, url, nil)})
	replay.waitApplied(t, last)
	checkDeadLetters(t, js, map[time.Time]map[uint64]string{streamCreated(t, js, "PRESENCE"): badSeqs(msgs)})
	if got := counterValue(t, replay.reg, "presence_deadletters_total"); got != 0 {
		t.Errorf("the replay wrote %v dead letters, want 0", got)
	}
	// The next dead letter starts the mark.
	bad := wire{"presence.acme.dance", `{"userId":"late"}`}
	seq := publishAll(t, js, []wire{bad})
	replay.waitApplied(t, seq)
	if _, got, ok := markOf(t, js, 0); !ok || got != seq {
		t.Errorf("mark at %d (%v), want %d", got, ok, seq)
	}
}
