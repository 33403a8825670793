package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
)

// applyWriter applies the next batch of events to e each time the
// snapshot writer writes to it, outside the engine's locks: between two of
// the snapshot's chunks, events change users already encoded, users not yet
// encoded and users new since the cut, at points the test decides.
type applyWriter struct {
	buf    bytes.Buffer
	e      *engine.Engine
	events []oracle.Delivered
	batch  int
	during int // events applied while the snapshot was written
	res    []engine.Result
}

func (w *applyWriter) Write(p []byte) (int, error) {
	for range w.batch {
		if len(w.events) == 0 {
			break
		}
		d := &w.events[0]
		w.res = append(w.res, w.e.Apply(d.Tenant, &d.Ev))
		w.events = w.events[1:]
		w.during++
	}
	return w.buf.Write(p)
}

// TestCutUnderLoad takes a snapshot cut after a part of the stream and
// writes it while the rest is applied, and checks that the snapshot is the
// state of that part, byte for byte, and that restarting from it and
// applying the rest gives what applying everything gives: every indicator,
// breakdown and event result, against the oracle.
func TestCutUnderLoad(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 31))
	tenants := []string{"big", "small", "tiny"}
	events := oracle.Events(r, tenants[:1], 6_000, 6, 1_000) // the big tenant spans many chunks
	events = append(events, oracle.Events(r, tenants[1:], 300, 6, 200)...)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	cut := len(events) / 2
	info := engine.SnapshotInfo{Sequence: uint64(cut), Written: time.Unix(1, 0), Stream: "PRESENCE"}

	// The reference: the first part alone, snapshotted with nothing running.
	ref := mustEngine(t, engine.Config{})
	for i := range events[:cut] {
		ref.Apply(events[i].Tenant, &events[i].Ev)
	}
	var want bytes.Buffer
	if err := ref.WriteSnapshot(&want, info); err != nil {
		t.Fatal(err)
	}

	live := mustEngine(t, engine.Config{})
	for i := range events[:cut] {
		live.Apply(events[i].Tenant, &events[i].Ev)
	}
	live.Query("big", &engine.Filter{GroupIDs: []string{"g1", "g2"}}) // a view that every event may move
	w := &applyWriter{e: live, events: events[cut:], batch: 1_500}
	c := live.Cut()
	if err := c.Write(w, info); err != nil {
		t.Fatal(err)
	}
	if w.during < 5_000 {
		t.Fatalf("only %d events applied while the snapshot was written: the test proves little", w.during)
	}
	if !bytes.Equal(w.buf.Bytes(), want.Bytes()) {
		t.Fatalf("the snapshot written under load (%d bytes) is not the state at its cut (%d bytes)", w.buf.Len(), want.Len())
	}
	for i := range w.events {
		live.Apply(w.events[i].Tenant, &w.events[i].Ev)
	}

	// The restart: the snapshot, then the stream from the message after it.
	restored := mustEngine(t, engine.Config{})
	got, err := restored.ReadSnapshot(bytes.NewReader(w.buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var results []engine.Result
	for i := range events[got.Sequence:] {
		d := &events[int(got.Sequence)+i]
		results = append(results, restored.Apply(d.Tenant, &d.Ev))
	}
	wantResults := oracle.Results(events)[cut:]
	for i := range results {
		if results[i] != wantResults[i] {
			t.Fatalf("event %d after the snapshot: result %v after the restart, %v in stream order", cut+i+1, results[i], wantResults[i])
		}
	}
	truth := oracle.State(events)
	for _, e := range []struct {
		name string
		e    *engine.Engine
	}{{"live", live}, {"restored", restored}} {
		for i := range 300 {
			tn := tenants[i%len(tenants)]
			f := oracle.RandomFilter(r, oracle.Class(i%3), 6_000)
			checkQuery(t, e.e, truth, tn, f, e.name)
			if i%10 == 0 {
				for by := engine.ByGroup; by <= engine.ByChat; by++ {
					checkBreakdown(t, e.e, truth, tn, by, f, e.name)
				}
			}
		}
		for _, tn := range tenants {
			checkQuery(t, e.e, truth, tn, &engine.Filter{}, e.name+" all")
			for by := engine.ByGroup; by <= engine.ByChat; by++ {
				checkBreakdown(t, e.e, truth, tn, by, &engine.Filter{}, e.name+" all")
			}
		}
	}
	if a, b := live.Stats(), restored.Stats(); fmt.Sprint(a.PerTenant) != fmt.Sprint(b.PerTenant) || a.Users != b.Users || a.IDs != b.IDs {
		t.Fatalf("stats differ:\n live %+v\n restored %+v", a, b)
	}
}

// TestCutConcurrent writes cuts while another goroutine applies events,
// for the race detector, and checks each against a replay of the sequence
// it was cut at.
func TestCutConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(32, 32))
	events := oracle.Events(r, []string{"a", "b"}, 3_000, 5, 500)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	e := mustEngine(t, engine.Config{})
	// commit plays the ingester's: a cut is taken between two events, at
	// the sequence applied.
	var commit sync.Mutex
	applied := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range events {
			commit.Lock()
			e.Apply(events[i].Tenant, &events[i].Ev)
			applied = i + 1
			commit.Unlock()
		}
	})
	for k := 0; k < 5; k++ {
		commit.Lock()
		c, seq := e.Cut(), applied
		commit.Unlock()
		var buf bytes.Buffer
		if err := c.Write(&buf, engine.SnapshotInfo{Sequence: uint64(seq)}); err != nil {
			t.Fatal(err)
		}
		restored := mustEngine(t, engine.Config{})
		if _, err := restored.ReadSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		truth := oracle.State(events[:seq])
		for i := range 30 {
			checkQuery(t, restored, truth, "a", oracle.RandomFilter(r, oracle.Class(i%3), 3_000), fmt.Sprintf("cut at %d", seq))
		}
	}
	wg.Wait()
}

// TestCutReset fails a cut written across a Reset, whose state it no longer
// is, and a released cut stops costing: a later one is unaffected.
func TestCutReset(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 33))
	e := mustEngine(t, engine.Config{})
	for _, d := range oracle.Events(r, []string{"a"}, 3_000, 2, 0) {
		e.Apply(d.Tenant, &d.Ev)
	}
	c := e.Cut()
	e.Reset()
	if err := c.Write(&bytes.Buffer{}, engine.SnapshotInfo{}); err == nil || errors.Is(err, engine.ErrSnapshot) {
		t.Fatalf("a cut written after a Reset: %v, want a write error", err)
	}
	for _, d := range oracle.Events(r, []string{"a"}, 10, 2, 0) {
		e.Apply(d.Tenant, &d.Ev)
	}
	c = e.Cut()
	if n := engine.HeldCuts(e); n != 1 {
		t.Fatalf("%d cuts held, want 1", n)
	}
	c.Release()
	c.Release()
	if n := engine.HeldCuts(e); n != 0 {
		t.Fatalf("%d cuts held after Release", n)
	}
}

// TestCutExpire writes a cut as it was taken though Expire ended sessions
// of its users before they were encoded.
func TestCutExpire(t *testing.T) {
	r := rand.New(rand.NewPCG(34, 34))
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	now := start.Add(time.Hour)
	e := mustEngine(t, engine.Config{SessionTTL: time.Minute, MaxLate: time.Second, Now: func() time.Time { return now }})
	for _, d := range oracle.EventsFrom(r, []string{"a"}, 3_000, 3, 0, now.UnixNano()-int64(30*time.Second), int64(time.Second)) {
		e.Apply(d.Tenant, &d.Ev)
	}
	var want bytes.Buffer
	if err := e.WriteSnapshot(&want, engine.SnapshotInfo{}); err != nil {
		t.Fatal(err)
	}
	c := e.Cut()
	if n := e.Expire(now.Add(time.Hour)); n < 1_000 {
		t.Fatalf("%d sessions expired: the test proves little", n)
	}
	var got bytes.Buffer
	if err := c.Write(&got, engine.SnapshotInfo{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("the cut holds the sessions Expire ended after it")
	}
}
