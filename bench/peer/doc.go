// Package peer holds what presenced is measured against: the same
// connectedUsersIndicator over the same users, answered by Redis (hashes,
// sets and a Lua script), by PostgreSQL (one table with array columns and GIN
// indexes, one aggregate query) and by a naive scan in Go, each written the
// way a competent engineer would, with the servers started and stopped by
// the bench itself on loopback.
//
// A Peer is used by one goroutine at a time.
package peer
