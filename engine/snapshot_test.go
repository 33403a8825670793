package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/internal/oracle"
)

func TestSnapshotRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	tenants := []string{"acme", "globex", "initech"}
	events := oracle.Events(r, tenants, 120, 10, 100)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	half := len(events) / 2

	e := mustEngine(t, engine.Config{})
	for i := range events[:half] {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	var buf bytes.Buffer
	written := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 42, Written: written}); err != nil {
		t.Fatal(err)
	}
	loaded := mustEngine(t, engine.Config{})
	info, err := loaded.ReadSnapshot(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if info.Sequence != 42 || !info.Written.Equal(written) {
		t.Fatalf("info %+v", info)
	}
	// The loaded engine must go on exactly like one that saw every event.
	for i := range events[half:] {
		ev := &events[half+i]
		loaded.Apply(ev.Tenant, &ev.Ev)
	}
	truth := oracle.State(events)
	for i := range 600 {
		checkQuery(t, loaded, truth, tenants[i%3], oracle.RandomFilter(r, oracle.Class(i%3), 120), "after snapshot")
	}
	if st := loaded.Stats(); st.Users != 360 || st.Tenants != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	e := mustEngine(t, engine.Config{})
	for _, d := range oracle.Events(r, []string{"a"}, 20, 5, 0) {
		e.Apply(d.Tenant, &d.Ev)
	}
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-10],
		"bit flip":  flipped,
		"not ours":  []byte("hello, this is not a snapshot at all"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			fresh := mustEngine(t, engine.Config{})
			if _, err := fresh.ReadSnapshot(bytes.NewReader(data)); !errors.Is(err, engine.ErrSnapshot) {
				t.Fatalf("err %v, want ErrSnapshot", err)
			}
			if st := fresh.Stats(); st.Users != 0 {
				t.Fatalf("a bad snapshot loaded %d users", st.Users)
			}
		})
	}
}

// FuzzReadSnapshot feeds arbitrary bytes, and valid snapshots with changed
// bytes whose checksum is fixed up, to ReadSnapshot: it must never panic.
func FuzzReadSnapshot(f *testing.F) {
	e, _ := engine.New(engine.Config{})
	for _, d := range oracle.Events(rand.New(rand.NewPCG(1, 1)), []string{"a", "b"}, 3, 4, 0) {
		e.Apply(d.Tenant, &d.Ev)
	}
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 9}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		fresh, _ := engine.New(engine.Config{})
		if _, err := fresh.ReadSnapshot(bytes.NewReader(engine.FixChecksum(data))); err == nil {
			fresh.Stats()
		}
	})
}

// TestSnapshotBytes checks that equal states write equal bytes, whatever the
// order of the tenants in memory, and that a tenant with no user, which an
// older version wrote for a watch, is not loaded.
func TestSnapshotBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	tenants := names("t", 200) // several per shard
	events := oracle.Events(r, tenants, 2, 3, 0)
	write := func(e *engine.Engine) []byte {
		var buf bytes.Buffer
		if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 3, Written: t0}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a, b := mustEngine(t, engine.Config{}), mustEngine(t, engine.Config{})
	for i := range events {
		a.Apply(events[i].Tenant, &events[i].Ev)
	}
	// The tenants in the other order, each tenant's events in theirs.
	for _, tn := range slices.Backward(tenants) {
		for i := range events {
			if events[i].Tenant == tn {
				b.Apply(tn, &events[i].Ev)
			}
		}
	}
	if !bytes.Equal(write(a), write(b)) {
		t.Fatal("two engines of the same state wrote different snapshots")
	}

	// The snapshot of one tenant "w" with no id and no user.
	old := []byte("presenced-snapshot\n")
	for _, v := range []uint64{1, 3, 0, 1, 1, 'w', 0, 0, 0, 0} { // version, sequence, written, 1 tenant, "w", 3 dims, 0 users
		old = binary.AppendUvarint(old, v)
	}
	old = engine.FixChecksum(append(old, 0, 0, 0, 0))
	loaded := mustEngine(t, engine.Config{})
	if _, err := loaded.ReadSnapshot(bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	if held := engine.HeldTenants(loaded); held != 0 {
		t.Fatalf("%d tenants loaded from a snapshot of a tenant with no user", held)
	}
}
