// Command presencebench measures presenced against what it is compared to:
// the NATS limits for ingest, flat query time, freshness, and Redis,
// PostgreSQL and a naive Go scan answering the same queries.
//
//	go run ./bench/cmd/presencebench -scenario all -out bench/results
//	go run ./bench/cmd/presencebench -scenario peers -short
package main
