package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/presenced/presenced/engine"
)

// DefaultKeep is how many snapshots Dir keeps when Keep is zero: the newest
// and one older, in case the newest turns out unreadable.
const DefaultKeep = 2

const (
	prefix = "engine-"
	suffix = ".snap"
)

// Dir is a directory of engine snapshots.
type Dir struct {
	// Path is the directory; it is created when missing.
	Path string
	// Keep is how many snapshots to keep. Zero means DefaultKeep.
	Keep int
	// Logger hears about the snapshots skipped on Load. Nil discards.
	Logger *slog.Logger

	mu sync.Mutex // one Save at a time
}

// name is the file of the snapshot covering seq: zero-padded so that names
// sort by sequence.
func name(seq uint64) string { return fmt.Sprintf("%s%020d%s", prefix, seq, suffix) }

// Save writes data, a snapshot covering the stream up to seq, atomically: a
// reader sees the whole file or none of it, also after a crash. Then it
// removes all but the newest Keep snapshots.
func (d *Dir) Save(data []byte, seq uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(d.Path, ".tmp-*")
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(d.Path, name(seq)))
	}
	if err == nil {
		err = syncDir(d.Path)
	}
	if err != nil {
		return fmt.Errorf("snapshot: writing %s: %w", name(seq), err)
	}
	return d.prune()
}

func syncDir(path string) error {
	dir, err := os.Open(path)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// list returns the snapshot files, newest first.
func (d *Dir) list() ([]string, error) {
	entries, err := os.ReadDir(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, prefix) && strings.HasSuffix(n, suffix) {
			if _, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, prefix), suffix), 10, 64); err == nil {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	return names, nil
}

func (d *Dir) prune() error {
	keep := d.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	names, err := d.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names[min(keep, len(names)):] {
		if err := os.Remove(filepath.Join(d.Path, n)); err != nil {
			errs = append(errs, fmt.Errorf("snapshot: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Load reads the newest snapshot that e accepts into e, which must be empty,
// and returns what it covers. A snapshot that cannot be read or fails its
// checks is logged and skipped for the next older one. With none usable it
// returns a zero SnapshotInfo and no error: the caller replays the stream.
func (d *Dir) Load(e *engine.Engine) (engine.SnapshotInfo, error) {
	d.removeTemps()
	names, err := d.list()
	if err != nil {
		return engine.SnapshotInfo{}, err
	}
	for _, n := range names {
		path := filepath.Join(d.Path, n)
		data, err := os.ReadFile(path)
		if err == nil {
			var info engine.SnapshotInfo
			if info, err = e.ReadSnapshot(bytes.NewReader(data)); err == nil {
				return info, nil
			}
		}
		d.logger().Warn("skipping unusable snapshot", "file", path, "err", err)
	}
	return engine.SnapshotInfo{}, nil
}

// removeTemps removes what a Save cut short by a crash left behind: one
// process owns the directory, so at start-up no Save is in progress.
func (d *Dir) removeTemps() {
	temps, _ := filepath.Glob(filepath.Join(d.Path, ".tmp-*"))
	for _, tmp := range temps {
		if err := os.Remove(tmp); err != nil {
			d.logger().Warn("cannot remove a leftover temporary snapshot", "file", tmp, "err", err)
		}
	}
}

func (d *Dir) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}
