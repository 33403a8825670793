package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
)

// legacyObject is the one object of the bucket as versions before the
// sequence went into the name wrote it. It loads when nothing newer is
// there, and the first Save removes it.
const legacyObject = "engine"

// Metadata of each object, for operators (nats object info): the name
// already says the same, and is what Load and Save go by.
const (
	metaStream        = "presenced-stream"
	metaStreamCreated = "presenced-stream-created"
	metaSequence      = "presenced-sequence"
)

// loadAttempts bounds the retries of a Load whose newest object a newer Save
// removed between the listing and the read.
const loadAttempts = 3

// Bucket keeps the newest snapshot in a JetStream object store, so that a new
// instance with an empty data dir starts from it instead of the whole stream.
//
// Instances share the bucket, and it must never go back to an older
// snapshot: Load would then hand a new instance a longer replay than needed.
// So each snapshot is an object of its own, named by its key (the stream's
// creation time, then the sequence, as in Dir), and Load takes the newest.
// Save adds an object only when it is newer than every one listed, then
// removes those older than itself, never a newer one. Two instances saving
// at once may leave an older object behind for a while, which the next Save
// removes; the newest is always the newest ever saved.
//
// Several partitions (contract section 7) share one bucket, each under a
// name prefix of its own (see Prefix).
//
// A Bucket is safe for concurrent use.
type Bucket struct {
	js       jetstream.JetStream
	name     string
	prefix   string
	replicas int
}

// NewBucket returns the bucket called name on js; it is created on the first
// Save.
func NewBucket(js jetstream.JetStream, name string) *Bucket {
	return &Bucket{js: js, name: name}
}

// Prefix returns the snapshots of the bucket whose names start with prefix:
// one partition's. With a prefix the object of older versions (legacyObject)
// is none of them.
func (b *Bucket) Prefix(prefix string) *Bucket {
	c := *b
	c.prefix = prefix
	return &c
}

// Replicas returns the bucket created, when missing, with n replicas.
func (b *Bucket) Replicas(n int) *Bucket {
	c := *b
	c.replicas = n
	return &c
}

// Save puts the snapshot described by info, read from r, in the bucket,
// unless it already holds one at least as new: then it returns ErrNotNewer.
// It then removes the older snapshots. The upload is paced (pacedReader).
func (b *Bucket) Save(ctx context.Context, r io.Reader, info engine.SnapshotInfo) error {
	store, err := b.open(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	mine := keyOf(info)
	objects, err := b.list(ctx, store)
	if err != nil {
		return fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	if n := len(objects); n > 0 && !objects[n-1].key.less(mine) {
		return fmt.Errorf("%w: %s, not %s", ErrNotNewer, objects[n-1].name, mine.base())
	}
	meta := jetstream.ObjectMeta{
		Name:        b.prefix + mine.base(),
		Description: "presenced engine snapshot",
		Metadata: map[string]string{
			metaStream:   info.Stream,
			metaSequence: strconv.FormatUint(info.Sequence, 10),
		},
	}
	if !info.StreamCreated.IsZero() {
		meta.Metadata[metaStreamCreated] = info.StreamCreated.UTC().Format(time.RFC3339Nano)
	}
	if _, err := store.Put(ctx, meta, &pacedReader{r: r}); err != nil {
		return fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	// List again: another instance may have added an older one meanwhile.
	if objects, err = b.list(ctx, store); err != nil {
		return fmt.Errorf("snapshot: bucket %s: removing older snapshots: %w", b.name, err)
	}
	var errs []error
	for _, o := range objects {
		if o.key.less(mine) {
			if err := store.Delete(ctx, o.name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				errs = append(errs, fmt.Errorf("snapshot: bucket %s: removing %s: %w", b.name, o.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// open opens the object store, creating it when missing. It does not
// update an existing one: on a NATS cluster, instances that each
// create-or-update the store at once wait on each other until their
// requests time out.
func (b *Bucket) open(ctx context.Context) (jetstream.ObjectStore, error) {
	store, err := b.js.ObjectStore(ctx, b.name)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return store, err
	}
	store, err = b.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      b.name,
		Description: "presenced engine snapshots: the newest one",
		Storage:     jetstream.FileStorage,
		Replicas:    b.replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return b.js.ObjectStore(ctx, b.name) // another instance made it meanwhile
	}
	return store, err
}

// Load reads the bucket's newest snapshot into e, which must be empty;
// accept (nil: any) sees its info first, as in engine.ReadSnapshotIf. With
// no bucket or no snapshot in it, it returns a zero SnapshotInfo and no
// error; a snapshot e or accept refuses is an error matching
// engine.ErrSnapshot.
func (b *Bucket) Load(ctx context.Context, e *engine.Engine, accept func(engine.SnapshotInfo) error) (engine.SnapshotInfo, error) {
	store, err := b.js.ObjectStore(ctx, b.name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return engine.SnapshotInfo{}, nil
	}
	if err != nil {
		return engine.SnapshotInfo{}, fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	for attempt := 1; ; attempt++ {
		objects, err := b.list(ctx, store)
		if err != nil {
			return engine.SnapshotInfo{}, fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
		}
		if len(objects) == 0 {
			return engine.SnapshotInfo{}, nil
		}
		newest := objects[len(objects)-1].name
		data, err := store.GetBytes(ctx, newest)
		if err != nil {
			// A newer Save may have removed it since the listing (its chunks
			// go first, so a read under way fails too): list again.
			if attempt < loadAttempts && ctx.Err() == nil {
				continue
			}
			return engine.SnapshotInfo{}, fmt.Errorf("snapshot: bucket %s: %s: %w", b.name, newest, err)
		}
		return e.ReadSnapshotIf(bytes.NewReader(data), accept)
	}
}

// object is a snapshot in the bucket.
type object struct {
	name string
	key  key
}

// list returns the bucket's snapshots under b's prefix, oldest first. The
// legacy object, with no prefix, comes before all others.
func (b *Bucket) list(ctx context.Context, store jetstream.ObjectStore) ([]object, error) {
	infos, err := listObjects(ctx, store)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var objects []object
	for _, info := range infos {
		base, ok := strings.CutPrefix(info.Name, b.prefix)
		switch {
		case !ok:
		case info.Name == legacyObject && b.prefix == "":
			objects = append(objects, object{name: info.Name})
		default:
			if k, ok := parseKey(base); ok {
				objects = append(objects, object{name: info.Name, key: k})
			}
		}
	}
	slices.SortFunc(objects, func(a, b object) int {
		switch {
		case a.key.less(b.key):
			return -1
		case b.key.less(a.key):
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return objects, nil
}

// pacedReader reads r for an upload, resting before each read for as long
// as the upload took with the read before (hashing, chunking, publishing,
// and the NATS server storing it): the upload takes about half of a core,
// and lets the queries and the ingest of the process (and of an embedded
// NATS server) run between its chunks. In the soak (10k events/s, 200k
// users, 25 MB snapshots every 10 s, 2 shared cores) it brought the
// slowest query of a snapshot second from 43-49 ms to 15 ms, and the
// snapshots took no longer.
type pacedReader struct {
	r    io.Reader
	last time.Time // when the last read returned; zero before the first
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if !p.last.IsZero() {
		time.Sleep(time.Since(p.last))
	}
	n, err := p.r.Read(b)
	p.last = time.Now()
	return n, err
}

// listAttempt bounds the first listing of the store (a few milliseconds
// when it works); each next one gets twice as long.
const listAttempt = 2 * time.Second

// listObjects lists the store, again while a listing does not end within
// its bound, until ctx ends. nats.go's List reads the store's metadata
// with a consumer and ends at the message that the consumer counts as the
// last; when another instance saves or removes a snapshot meanwhile, that
// count can include a message replaced before its delivery, and the
// listing then waits for ever (TestBucketTwoWriters hung within 30 runs
// without this; 40 runs pass with it). A new listing counts again.
func listObjects(ctx context.Context, store jetstream.ObjectStore) ([]*jetstream.ObjectInfo, error) {
	for bound := listAttempt; ; bound *= 2 {
		actx, cancel := context.WithTimeout(ctx, bound)
		infos, err := store.List(actx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return infos, err
		}
	}
}
