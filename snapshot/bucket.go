package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/engine"
)

// objectName is the one object of the bucket: the newest snapshot. The
// bucket keeps no history; Dir keeps the older files.
const objectName = "engine"

// Bucket keeps the newest snapshot in a JetStream object store, so that a new
// instance with an empty data dir starts from it instead of the whole stream.
type Bucket struct {
	js   jetstream.JetStream
	name string
}

// NewBucket returns the bucket called name on js; it is created on the first
// Save.
func NewBucket(js jetstream.JetStream, name string) *Bucket {
	return &Bucket{js: js, name: name}
}

// Save replaces the bucket's snapshot with data.
func (b *Bucket) Save(ctx context.Context, data []byte) error {
	store, err := b.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      b.name,
		Description: "presenced engine snapshots: the newest one",
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	if _, err := store.PutBytes(ctx, objectName, data); err != nil {
		return fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	return nil
}

// Load reads the bucket's snapshot into e, which must be empty. With no
// bucket or no snapshot in it, it returns a zero SnapshotInfo and no error;
// a snapshot e refuses is an error matching engine.ErrSnapshot.
func (b *Bucket) Load(ctx context.Context, e *engine.Engine) (engine.SnapshotInfo, error) {
	store, err := b.js.ObjectStore(ctx, b.name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return engine.SnapshotInfo{}, nil
	}
	if err != nil {
		return engine.SnapshotInfo{}, fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	data, err := store.GetBytes(ctx, objectName)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return engine.SnapshotInfo{}, nil
	}
	if err != nil {
		return engine.SnapshotInfo{}, fmt.Errorf("snapshot: bucket %s: %w", b.name, err)
	}
	return e.ReadSnapshot(bytes.NewReader(data))
}
