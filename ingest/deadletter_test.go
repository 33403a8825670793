package ingest_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
