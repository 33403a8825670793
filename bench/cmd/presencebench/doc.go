// Command presencebench measures presenced against what it is compared to:
// the NATS limits for ingest, flat query time, freshness, and Redis,
// PostgreSQL and a naive Go scan answering the same queries; and presenced
// alone under a long mixed load (soak).
//
// From bench/, a module of its own:
//
//	go run ./cmd/presencebench -scenario all -out results
//	go run ./cmd/presencebench -scenario peers -short
//	go run ./cmd/presencebench -scenario soak -duration 60s -events 50000 -queries 2000
//	go run ./cmd/presencebench -scenario recovery -users 1000000
//	go run ./cmd/presencebench -scenario cluster
//
// -scenario names one or more (comma-separated) of ingest, query,
// freshness, peers, soak, recovery, cluster, forwarding (the cluster
// scenario's first part alone) and charts; all is ingest, query,
// freshness, peers and charts (soak, recovery, cluster and forwarding run
// only when named). cluster and forwarding build cmd/presenced with the go
// command: run them from the repository.
// Every flag applies to the scenarios its usage names; -short, -out and
// -cpuprofile to all.
//
// Soak flags (see bench.SoakOptions): -duration (60s), -events per second
// (50,000), -queries per second (2,000), -users logged in first (200,000),
// -tenants (4), -new-users share of the churn (0.005), -workers (64),
// -settle before the last heap measurement (15s), -snapshot-interval
// (presenced's, 10s; 0 only at shutdown), -timeout (0: -duration +
// -settle + 5m).
//
// Recovery flags (see bench.RecoveryOptions): -users tracked (1,000,000),
// -runs restarts per mode (0: -repeat's, 3), -tenant (acme), -dir (a data
// dir to use and keep; empty: a temporary one), -cpuprofile FILE (of the
// restarts from the snapshot alone, so recovery runs alone with it; see
// the top entries with go tool pprof -top FILE), -timeout (10m).
package main
