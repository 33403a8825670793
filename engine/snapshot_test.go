package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
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
	if info.Sequence != 42 || !info.Written.Equal(written) || info.Version != 2 || info.Stream != "" || !info.StreamCreated.IsZero() {
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
	// The users' times come back with them, and the orders of
	// connectedUsers are rebuilt.
	for _, tn := range tenants {
		checkUsers(t, loaded, truth, tn, &engine.Filter{}, 17, "after snapshot")
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

// TestSnapshotIdentity checks that a snapshot keeps the stream's name and
// creation time and the engine's session TTL, that an engine with another
// TTL refuses it, and that the caller's check runs before anything loads.
func TestSnapshotIdentity(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	events := oracle.Events(r, []string{"a", "b"}, 30, 4, 0)
	e := mustEngine(t, engine.Config{SessionTTL: time.Hour})
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	created := time.Date(2026, 3, 1, 8, 30, 0, 123456789, time.UTC)
	var buf bytes.Buffer
	// The TTL given in info is ignored: the engine's own is recorded.
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 77, Stream: "PRESENCE", StreamCreated: created,
		SessionTTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()

	loaded := mustEngine(t, engine.Config{SessionTTL: time.Hour})
	info, err := loaded.ReadSnapshot(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := engine.SnapshotInfo{Sequence: 77, Written: info.Written, Stream: "PRESENCE", StreamCreated: created,
		SessionTTL: time.Hour, Version: 2}
	if info != want {
		t.Fatalf("info %+v, want %+v", info, want)
	}
	if got, want := loaded.Stats().Users, e.Stats().Users; got != want {
		t.Fatalf("loaded %d users, want %d", got, want)
	}

	for _, ttl := range []time.Duration{0, time.Minute} {
		other := mustEngine(t, engine.Config{SessionTTL: ttl})
		_, err := other.ReadSnapshot(bytes.NewReader(data))
		if !errors.Is(err, engine.ErrSnapshot) || !strings.Contains(err.Error(), "1h0m0s") || !strings.Contains(err.Error(), ttl.String()) {
			t.Errorf("TTL %v: %v, want ErrSnapshot naming both TTLs", ttl, err)
		}
		if other.Stats().Users != 0 {
			t.Errorf("TTL %v: a refused snapshot loaded users", ttl)
		}
	}

	refuse := errors.New("another stream")
	var seen engine.SnapshotInfo
	checked := mustEngine(t, engine.Config{SessionTTL: time.Hour})
	_, err = checked.ReadSnapshotIf(bytes.NewReader(data), func(info engine.SnapshotInfo) error {
		seen = info
		return refuse
	})
	if !errors.Is(err, refuse) || !errors.Is(err, engine.ErrSnapshot) || seen != want || checked.Stats().Users != 0 {
		t.Errorf("refused by the caller: %v, saw %+v, %d users loaded", err, seen, checked.Stats().Users)
	}
}

// TestSnapshotVersion1 checks that a snapshot of the first format, without
// the stream's identity, the TTL and the spans, still loads, into an engine
// of any TTL: there is nothing to check it against. testdata/snapshot-v1 was
// written by the version 1 code from these events (the seed makes them).
func TestSnapshotVersion1(t *testing.T) {
	events := oracle.Events(rand.New(rand.NewPCG(8, 8)), []string{"a"}, 40, 4, 0)
	truth := oracle.State(events)
	v1, err := os.ReadFile("testdata/snapshot-v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []time.Duration{0, time.Minute} {
		loaded := mustEngine(t, engine.Config{SessionTTL: ttl})
		info, err := loaded.ReadSnapshot(bytes.NewReader(v1))
		if err != nil {
			t.Fatalf("TTL %v: %v", ttl, err)
		}
		if info.Version != 1 || info.Sequence != 5 || info.Stream != "" || !info.StreamCreated.IsZero() || info.SessionTTL != 0 {
			t.Errorf("TTL %v: info %+v", ttl, info)
		}
		if got := loaded.Stats().Users; got != 40 {
			t.Errorf("TTL %v: loaded %d users, want 40", ttl, got)
		}
		if ttl == 0 {
			r := rand.New(rand.NewPCG(8, 9))
			for i := range 60 {
				checkQuery(t, loaded, truth, "a", oracle.RandomFilter(r, oracle.Class(i%3), 40), "version 1")
			}
		}
	}
	// A version the engine does not know is refused.
	v3 := bytes.Clone(v1)
	v3[len("presenced-snapshot\n")] = 3
	if _, err := mustEngine(t, engine.Config{}).ReadSnapshot(bytes.NewReader(engine.FixChecksum(v3))); !errors.Is(err, engine.ErrSnapshot) ||
		!strings.Contains(err.Error(), "version 3") {
		t.Errorf("version 3: %v", err)
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
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 9, Stream: "PRESENCE",
		StreamCreated: time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	v1, err := os.ReadFile("testdata/snapshot-v1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v1)
	f.Fuzz(func(t *testing.T, data []byte) {
		fresh, _ := engine.New(engine.Config{})
		if _, err := fresh.ReadSnapshot(bytes.NewReader(engine.FixChecksum(data))); err == nil {
			fresh.Stats()
		}
	})
}

// TestResetThenSnapshot checks that a reset engine is empty, may load a
// snapshot (which needs an empty engine) and applies events again.
func TestResetThenSnapshot(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	events := oracle.Events(r, []string{"a", "b"}, 20, 4, 0)
	e := mustEngine(t, engine.Config{})
	for i := range events {
		e.Apply(events[i].Tenant, &events[i].Ev)
	}
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: 3}); err != nil {
		t.Fatal(err)
	}
	e.Reset()
	if st := e.Stats(); st.Users != 0 || st.Tenants != 0 {
		t.Fatalf("after Reset: %+v", st)
	}
	if _, err := e.ReadSnapshot(&buf); err != nil {
		t.Fatalf("snapshot into a reset engine: %v", err)
	}
	if got := e.Stats().Users; got != 40 {
		t.Fatalf("%d users, want 40", got)
	}
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
