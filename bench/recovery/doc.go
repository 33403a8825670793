// Command recovery measures how long presenced takes to be ready after a
// restart with many tracked users: with the snapshot written at shutdown, and
// with no snapshot (a full replay of the stream).
//
//	go run ./bench/recovery -users 1000000
//
// It starts presenced in this process (service.Start, embedded NATS server,
// loopback ports, a temporary data dir), publishes one login per user with a
// profile (3 groups, 1 project, 2 routing groups, statuses, slots) and a
// status change for a quarter of them, waits until all is applied and stops
// it gracefully, which writes the snapshot. Then it restarts it -runs times
// in each mode and times service.Start until Ready (snapshot loaded, NATS and
// its JetStream store recovered, the stream read to its end):
//
//	snapshot  the snapshot in <data-dir>/snapshots, as after any restart
//	bucket    <data-dir>/snapshots removed: the copy in the JetStream object
//	          store is loaded, as by a new instance with an empty data dir
//	replay    both removed: the whole stream is read
//
// It prints each time, the medians, the heap in use once ready (after a GC;
// the embedded NATS server lives in the same heap), the sizes on disk, and
// for the breakdown the time of engine.ReadSnapshot alone and of the embedded
// NATS server's start (JetStream store recovery) alone.
//
// With -cpuprofile, the restarts from the snapshot are CPU-profiled; see the
// top entries with `go tool pprof -top FILE`.
package main
