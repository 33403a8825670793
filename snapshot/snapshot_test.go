package snapshot_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/snapshot"
)

// engineWith returns an engine where users are logged in, and its snapshot
// covering seq.
func engineWith(t *testing.T, users []string, seq uint64) (*engine.Engine, []byte) {
	t.Helper()
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		e.Apply("acme", &presence.Event{Type: presence.Login, UserID: u, TS: 1, Fields: presence.HasTS})
	}
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf, engine.SnapshotInfo{Sequence: seq, Written: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return e, buf.Bytes()
}

func load(t *testing.T, d *snapshot.Dir) (engine.SnapshotInfo, int64) {
	t.Helper()
	e, _ := engine.New(engine.Config{})
	info, err := d.Load(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info, e.Query("acme", &engine.Filter{}).Connected
}

func TestSaveLoadPrune(t *testing.T) {
	d := &snapshot.Dir{Path: filepath.Join(t.TempDir(), "snaps"), Keep: 2}
	if info, n := load(t, d); info.Sequence != 0 || n != 0 {
		t.Fatalf("empty dir loaded seq %d, %d users", info.Sequence, n)
	}
	_, one := engineWith(t, []string{"a"}, 5)
	_, two := engineWith(t, []string{"a", "b"}, 9)
	_, three := engineWith(t, []string{"a", "b", "c"}, 12)
	for i, s := range []struct {
		data []byte
		seq  uint64
	}{{one, 5}, {two, 9}, {three, 12}} {
		if err := save(d, s.data, engine.SnapshotInfo{Sequence: s.seq}); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	crashed := filepath.Join(d.Path, ".tmp-123")
	if err := os.WriteFile(crashed, []byte("half a snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if info, n := load(t, d); info.Sequence != 12 || n != 3 {
		t.Fatalf("loaded seq %d with %d users, want 12 and 3", info.Sequence, n)
	}
	files, _ := os.ReadDir(d.Path)
	if len(files) != 2 {
		t.Fatalf("%d files kept, want 2 (the temporary file of a crashed save removed)", len(files))
	}
}

func TestLoadSkipsCorrupt(t *testing.T) {
	d := &snapshot.Dir{Path: t.TempDir()}
	_, older := engineWith(t, []string{"a"}, 3)
	_, newer := engineWith(t, []string{"a", "b"}, 7)
	if err := save(d, older, engine.SnapshotInfo{Sequence: 3}); err != nil {
		t.Fatal(err)
	}
	if err := save(d, newer, engine.SnapshotInfo{Sequence: 7}); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(d.Path)
	newest := filepath.Join(d.Path, files[len(files)-1].Name())
	data, _ := os.ReadFile(newest)
	data[len(data)/2] ^= 1
	if err := os.WriteFile(newest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if info, n := load(t, d); info.Sequence != 3 || n != 1 {
		t.Fatalf("loaded seq %d with %d users, want the older one: 3 and 1", info.Sequence, n)
	}
	// Both corrupt: nothing loads, and that is not an error (full replay).
	oldest := filepath.Join(d.Path, files[0].Name())
	if err := os.WriteFile(oldest, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if info, n := load(t, d); info.Sequence != 0 || n != 0 {
		t.Fatalf("loaded seq %d with %d users from corrupt files", info.Sequence, n)
	}
}

// TestDirRecreatedStream checks that the snapshots of a recreated stream
// come before the old stream's, though their sequences are lower: Load
// takes them and Save keeps them. Files named by sequence alone, as written
// before, still load and come last.
func TestDirRecreatedStream(t *testing.T) {
	d := &snapshot.Dir{Path: t.TempDir(), Keep: 2}
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	second := first.Add(time.Hour)
	legacy := filepath.Join(d.Path, "engine-00000000000000000900.snap")
	_, old := engineWith(t, []string{"a"}, 900)
	if err := os.WriteFile(legacy, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if info, n := load(t, d); info.Sequence != 900 || n != 1 {
		t.Fatalf("legacy file: loaded seq %d with %d users", info.Sequence, n)
	}
	for _, s := range []struct {
		users   []string
		seq     uint64
		created time.Time
	}{{[]string{"a", "b"}, 500, first}, {[]string{"a", "b", "c"}, 3, second}} {
		_, data := engineWith(t, s.users, s.seq)
		if err := save(d, data, engine.SnapshotInfo{Sequence: s.seq, StreamCreated: s.created}); err != nil {
			t.Fatal(err)
		}
	}
	if info, n := load(t, d); info.Sequence != 3 || n != 3 {
		t.Fatalf("loaded seq %d with %d users, want the recreated stream's: 3 and 3", info.Sequence, n)
	}
	if _, err := os.Stat(legacy); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the oldest snapshot, the legacy file, was kept: %v", err)
	}

	// A snapshot the caller refuses is skipped for the next.
	e, _ := engine.New(engine.Config{})
	info, err := d.Load(e, func(info engine.SnapshotInfo) error {
		if info.Sequence == 3 {
			return errors.New("not this one")
		}
		return nil
	})
	if err != nil || info.Sequence != 500 {
		t.Fatalf("with the newest refused: seq %d, %v; want 500", info.Sequence, err)
	}
}

// save saves data as the snapshot described by info.
func save(d *snapshot.Dir, data []byte, info engine.SnapshotInfo) error {
	_, err := d.Save(info, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	return err
}

// TestSaveWriteFails checks that a snapshot whose writing fails halfway
// leaves nothing behind: no file, and the older snapshot still loads.
func TestSaveWriteFails(t *testing.T) {
	d := &snapshot.Dir{Path: t.TempDir()}
	_, older := engineWith(t, []string{"a", "b"}, 3)
	if err := save(d, older, engine.SnapshotInfo{Sequence: 3}); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("encoding failed")
	_, err := d.Save(engine.SnapshotInfo{Sequence: 9}, func(w io.Writer) error {
		if _, err := w.Write(older[:len(older)/2]); err != nil {
			return err
		}
		return broken
	})
	if !errors.Is(err, broken) {
		t.Fatalf("Save: %v, want the writer's error", err)
	}
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d files after a failed save, want the older snapshot's alone: %v", len(entries), entries)
	}
	if info, n := load(t, d); info.Sequence != 3 || n != 2 {
		t.Fatalf("load after a failed save: sequence %d, %d users, want 3 and 2", info.Sequence, n)
	}
}
