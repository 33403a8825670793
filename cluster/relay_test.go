package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

func login(e *engine.Engine, tenant, user string, ts int64) {
	e.Apply(tenant, &presence.Event{Type: presence.Login, UserID: user, TS: ts, Fields: presence.HasTS})
}

// TestRemoteWatch follows a filter of a tenant through a holder's watch on
// a real server: the holder's values reach the front; when the holder stops
// serving, the front goes on from another holder of the same state; with no
// holder left, the watch ends with ErrUnavailable.
func TestRemoteWatch(t *testing.T) {
	url, _ := testenv.StartJetStream(t)
	holderA, holderB := mustEngine(t), mustEngine(t)
	ctxA, stopA := context.WithCancel(context.Background())
	defer stopA()
	a, err := serve(ctxA, connect(t, url), "PRESENCE", "a", 0, echo{"a"}, holderA)
	if err != nil {
		t.Fatal(err)
	}
	front := &forwarder{nc: connect(t, url), stream: "PRESENCE", count: func(string) {}}
	w, err := front.watch(context.Background(), 0, "acme", &engine.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	until := func(what string, want int64) {
		t.Helper()
		testenv.WaitFor(t, what, func() bool { ind, _ := w.Next(); return ind.Connected == want })
	}
	for i := range 3 {
		login(holderA, "acme", fmt.Sprint("u", i), int64(i+1))
		until(fmt.Sprintf("%d logins", i+1), int64(i+1))
	}
	// A watch returns with the holder's value: its first Next is no zero.
	w2, err := front.watch(context.Background(), 0, "acme", &engine.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if ind, _ := w2.Next(); ind.Connected != 3 {
		t.Fatalf("a new watch starts at %d connected, want the holder's 3", ind.Connected)
	}
	w2.Close()

	// B holds the same state, plus one login A never saw: once the front
	// follows B, it shows it.
	for i := range 4 {
		login(holderB, "acme", fmt.Sprint("u", i), int64(i+1))
	}
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	bConn := connect(t, url)
	b, err := serve(ctxB, bConn, "PRESENCE", "b", 0, echo{"b"}, holderB)
	if err != nil {
		t.Fatal(err)
	}
	// A stops serving as on SIGTERM: it says so, and the front follows B
	// at once.
	stopA()
	a.stop()
	start := time.Now()
	until("the front to follow B", 4)
	t.Logf("the front followed the next holder after %v", time.Since(start).Round(time.Millisecond))

	// B dies with no word: the front takes it for gone after relayLost,
	// and C, holding the same state plus a login, takes the watch over.
	holderC := mustEngine(t)
	for i := range 5 {
		login(holderC, "acme", fmt.Sprint("u", i), int64(i+1))
	}
	ctxC, stopC := context.WithCancel(context.Background())
	defer stopC()
	c, err := serve(ctxC, connect(t, url), "PRESENCE", "c", 0, echo{"c"}, holderC)
	if err != nil {
		t.Fatal(err)
	}
	bConn.Close() // B's connection gone: no notice, no heartbeat
	start = time.Now()
	until("the front to follow C", 5)
	t.Logf("the front followed the next holder after %v of silence (lost after %v)", time.Since(start).Round(time.Millisecond), relayLost)
	b = c
	stopB = stopC

	b.stop()
	stopB()
	testenv.WaitFor(t, "the watch to end", func() bool { return w.Err() != nil })
	if !errors.Is(w.Err(), ErrUnavailable) {
		t.Fatalf("ended with %v, want ErrUnavailable", w.Err())
	}
	if _, changed := w.Next(); changed != nil {
		t.Fatal("an ended watch still gives a channel to wait on")
	}
}

func mustEngine(tb testing.TB) *engine.Engine {
	tb.Helper()
	e, err := engine.New(engine.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
