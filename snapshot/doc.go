// Package snapshot keeps engine snapshots in a directory and in a JetStream
// object store.
//
// A Dir writes snapshots atomically (temporary file, fsync, rename, fsync of
// the directory), keeps the newest few, and loads newest first, skipping any
// that is corrupt, unreadable or refused. A Bucket keeps the newest snapshot
// for instances that start with an empty data dir, and never goes back to an
// older one, however many instances save into it.
//
// Both order snapshots by the creation time of their stream, then by
// sequence: a stream deleted and created again under the same name starts
// its sequences again, and its snapshots must still count as newer than the
// old stream's. Files and objects are named by both, so that the order
// needs no reading.
//
// A Dir is safe for concurrent use by one process; two processes must not
// share a directory. A Bucket is safe for concurrent use, also by many
// processes.
//
//	dir := snapshot.Dir{Path: "./data/snapshots", Logger: logger}
//	info, err := dir.Load(e, nil) // a fresh engine; info.Sequence is 0 if none loaded
//	...
//	path, err := dir.Save(info, func(w io.Writer) error { return cut.Write(w, info) })
package snapshot
