// Package snapshot keeps engine snapshots in a directory: written atomically
// (temporary file, fsync, rename, fsync of the directory), named by the
// stream sequence they cover, the newest few kept, and loaded newest first,
// skipping any that is corrupt or unreadable.
//
// A Dir is safe for concurrent use by one process; two processes must not
// share a directory.
//
//	dir := snapshot.Dir{Path: "./data/snapshots", Logger: logger}
//	info, err := dir.Load(e) // a fresh engine; info.Sequence is 0 if none loaded
//	...
//	err = dir.Save(data, info.Sequence)
package snapshot
