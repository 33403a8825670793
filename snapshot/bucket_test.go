package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/snapshot"
)

// snap is a snapshot of an empty engine described by info, whose content
// says info.Sequence and info.StreamCreated.
func snap(t testing.TB, info engine.SnapshotInfo) []byte {
	t.Helper()
	e, _ := engine.New(engine.Config{})
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, info); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newest loads the bucket's snapshot into a fresh engine.
func newest(t testing.TB, b *snapshot.Bucket) engine.SnapshotInfo {
	t.Helper()
	e, _ := engine.New(engine.Config{})
	info, err := b.Load(context.Background(), e, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return info
}

// otherConn is a second connection to the server at url, as another
// instance would have.
func otherConn(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestBucketOrder checks what replaces what: a higher sequence of the same
// stream, or any sequence of a stream created later; never a lower sequence
// or an older stream.
func TestBucketOrder(t *testing.T) {
	_, js := testenv.StartJetStream(t)
	ctx := context.Background()
	b := snapshot.NewBucket(js, "PRESENCE_SNAPSHOTS")
	if info := newest(t, b); info.Sequence != 0 {
		t.Fatalf("no bucket: loaded %+v", info)
	}
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recreated := old.Add(time.Hour)
	steps := []struct {
		seq     uint64
		created time.Time
		stored  bool
	}{
		{100, old, true},
		{90, old, false}, // a lagging instance
		{100, old, false},
		{900, old, true},
		{3, recreated, true}, // the stream was recreated: its sequences start again
		{950, old, false},    // an instance that has not noticed yet
		{4, recreated, true},
	}
	for _, s := range steps {
		info := engine.SnapshotInfo{Sequence: s.seq, Stream: "PRESENCE", StreamCreated: s.created}
		err := b.Save(ctx, bytes.NewReader(snap(t, info)), info)
		if s.stored && err != nil || !s.stored && !errors.Is(err, snapshot.ErrNotNewer) {
			t.Fatalf("Save of %d of the stream created %v: %v, want stored %v", s.seq, s.created, err, s.stored)
		}
		got := newest(t, b)
		if !s.stored {
			continue
		}
		if got.Sequence != s.seq || !got.StreamCreated.Equal(s.created) {
			t.Fatalf("after saving %d: bucket holds %d of %v", s.seq, got.Sequence, got.StreamCreated)
		}
	}
	store, err := js.ObjectStore(ctx, "PRESENCE_SNAPSHOTS")
	if err != nil {
		t.Fatal(err)
	}
	objects, err := store.List(ctx)
	if err != nil || len(objects) != 1 {
		t.Fatalf("%d objects (%v), want the newest only", len(objects), err)
	}
	if m := objects[0].Metadata; m["presenced-sequence"] != "4" || m["presenced-stream"] != "PRESENCE" ||
		m["presenced-stream-created"] != recreated.Format(time.RFC3339Nano) {
		t.Errorf("metadata %v", m)
	}
}

// TestBucketLegacyObject checks that the one object older versions wrote
// loads while nothing newer is there, and that the first Save replaces it.
func TestBucketLegacyObject(t *testing.T) {
	_, js := testenv.StartJetStream(t)
	ctx := context.Background()
	store, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "PRESENCE_SNAPSHOTS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(ctx, "engine", snap(t, engine.SnapshotInfo{Sequence: 40})); err != nil {
		t.Fatal(err)
	}
	b := snapshot.NewBucket(js, "PRESENCE_SNAPSHOTS")
	if got := newest(t, b); got.Sequence != 40 {
		t.Fatalf("loaded %d, want the legacy object's 40", got.Sequence)
	}
	info := engine.SnapshotInfo{Sequence: 41, StreamCreated: time.Now()}
	if err := b.Save(ctx, bytes.NewReader(snap(t, info)), info); err != nil {
		t.Fatal(err)
	}
	if got := newest(t, b); got.Sequence != 41 {
		t.Fatalf("loaded %d, want 41", got.Sequence)
	}
	if _, err := store.GetInfo(ctx, "engine"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("the legacy object is still there: %v", err)
	}
}

// TestBucketTwoWriters has two instances, each on its own connection, save
// snapshots into one bucket at once, interleaving their sequences, one of
// them behind the other, while a reader loads the bucket over and over: what
// it loads never goes back, and the bucket ends with the highest sequence.
func TestBucketTwoWriters(t *testing.T) {
	url, js := testenv.StartJetStream(t)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const rounds = 40
	// Writer 0 saves 10, 20, 30...; writer 1, behind it, 5, 15, 25...
	writers := []*snapshot.Bucket{
		snapshot.NewBucket(otherConn(t, url), "PRESENCE_SNAPSHOTS"),
		snapshot.NewBucket(otherConn(t, url), "PRESENCE_SNAPSHOTS"),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for w, b := range writers {
		wg.Go(func() {
			for k := 1; k <= rounds; k++ {
				info := engine.SnapshotInfo{Sequence: uint64(10*k - 5*w), Stream: "PRESENCE", StreamCreated: created}
				if err := b.Save(context.Background(), bytes.NewReader(snap(t, info)), info); err != nil && !errors.Is(err, snapshot.ErrNotNewer) {
					errs <- err
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	reader := snapshot.NewBucket(js, "PRESENCE_SNAPSHOTS")
	var last uint64
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		got := newest(t, reader).Sequence
		if got < last {
			t.Fatalf("the bucket went back from %d to %d", last, got)
		}
		last = got
	}
	close(errs)
	for err := range errs {
		t.Errorf("Save: %v", err)
	}
	if got := newest(t, reader).Sequence; got != 10*rounds {
		t.Errorf("the bucket ends with %d, want %d", got, 10*rounds)
	}
}

// TestBucketPrefixes checks that partitions sharing a bucket under their
// prefixes keep apart: each has its own newest snapshot, and a save of one
// removes none of another's, nor do they see the unprefixed ones.
func TestBucketPrefixes(t *testing.T) {
	_, js := testenv.StartJetStream(t)
	ctx := context.Background()
	created := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	whole := snapshot.NewBucket(js, "PRESENCE_SNAPSHOTS")
	p1, p10 := whole.Prefix("p1-"), whole.Prefix("p10-")
	for _, c := range []struct {
		b   *snapshot.Bucket
		seq uint64
	}{{whole, 50}, {p1, 10}, {p10, 7}, {p1, 12}, {p10, 9}} {
		info := engine.SnapshotInfo{Sequence: c.seq, Stream: "PRESENCE", StreamCreated: created}
		if err := c.b.Save(ctx, bytes.NewReader(snap(t, info)), info); err != nil {
			t.Fatalf("save %d: %v", c.seq, err)
		}
	}
	for _, c := range []struct {
		b    *snapshot.Bucket
		want uint64
	}{{whole, 50}, {p1, 12}, {p10, 9}} {
		if got := newest(t, c.b).Sequence; got != c.want {
			t.Errorf("newest %d, want %d", got, c.want)
		}
	}
}
