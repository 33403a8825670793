package snapshot

import "errors"

// ErrNotNewer is returned by Bucket.Save when the bucket already holds a
// snapshot at least as new as the one given: it is left in place, so that
// the bucket never goes back.
var ErrNotNewer = errors.New("snapshot: the bucket holds a snapshot at least as new")
