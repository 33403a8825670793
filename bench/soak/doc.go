// Command soak runs presenced under a steady mixed load for a while and
// reports whether it kept up: events published, stored and applied, query
// errors and latency, and memory and goroutines before and after.
//
//	go run ./bench/soak -duration 60s -events 50000 -queries 2000
//
// It starts presenced in this process (service.Start, embedded NATS server,
// loopback ports only, a temporary data dir, snapshots every 30s as by
// default). First the population grows: one login with a profile per user,
// published with JetStream acknowledgements and applied before the clock
// starts. Then, for -duration, it churns: -events per second, open loop
// (paced by the clock, never waiting for the engine), of every type on
// random users, with a trickle of brand-new users (-new-users of the
// events), published as plain NATS publishes like a desk backend would; and
// -queries GraphQL requests per second, also open loop, over HTTP, of every
// filter class (tenant-wide, one id, user ids, several ids, ids in two
// dimensions), most from a fixed set of dashboards and some ad hoc.
//
// Query latency is measured from the moment the request was due, so a
// stalled server cannot hide behind fewer requests. A request that finds all
// -workers busy and the queue full is dropped and counted as an error.
//
// Memory is the Go heap in use after a forced GC: once the population is
// loaded, and at the end once ingest has caught up. It includes the embedded
// NATS server, which lives in this process.
package main
