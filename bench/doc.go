// Package bench measures presenced side by side with what people would
// otherwise build, on the same data and the same filters, in one run:
//
//   - Ingest: the engine's catch-up from the JetStream stream against a raw
//     ordered consumer doing nothing, and its live rate (the stream followed
//     while a plain publisher sends) against a raw ordered consumer reading
//     the same events.
//   - Query: connectedUsersIndicator at 1k, 100k and 1M users, in the engine
//     and through GraphQL over HTTP (the api served by a child process, see
//     ServeEnv), closed loop and open loop at a fixed rate.
//   - Freshness: publish-to-visible latency through the whole program.
//   - Peers: presenced itself in a process of its own (see ServiceEnv),
//     Redis, PostgreSQL and a naive Go scan (package peer), loaded with the
//     same events and asked the same filters, beside an HTTP floor (see
//     FloorEnv).
//   - Soak: presenced in a process of its own (see ServiceEnv) under a
//     steady mixed load for a while (events published open loop as plain
//     publishes, GraphQL queries open loop over HTTP, a freshness probe
//     every 100 ms): whether it keeps up, query latency and freshness
//     overall and per second with the seconds a snapshot overlaps marked,
//     memory and goroutines before and after. Its settings are SoakOptions
//     (the command's -duration, -events, -queries, -users, -tenants,
//     -new-users, -workers, -settle, -snapshot-interval); -timeout bounds
//     it.
//   - Recovery: presenced in this process restarted with many tracked users,
//     timed from service.Start to Ready: from its snapshot, from the copy in
//     the object store, by a replay of the whole stream; with the snapshot's
//     decoding and the NATS server's start alone beside. Its settings are
//     RecoveryOptions (-users, -runs, -tenant, -dir; -cpuprofile profiles
//     the restarts from the snapshot alone); -timeout bounds it.
//   - Cluster: several instances of the presenced program (cmd/presenced,
//     built by the scenario with the go command, so run it from the
//     repository) on NATS in this process: a query asked of the tenant's
//     holder and forwarded by the others, interleaved; one partition's
//     takeover after its holder's kill -9 and SIGTERM at 10k, 100k and 1M
//     users; each instance's memory with 16 partitions over 1 to 3
//     instances, one or two copies. A bare NATS request-reply is timed
//     beside the forwarded query, as its floor. Forwarding is that first
//     part alone.
//
// Every scenario draws its users and events from one Population (Traffic
// for a stream of them), publishes through one publisher (acked, or plain
// and paced), waits for presenced through one waitApplied, and summarizes
// latencies with Summarize and repetitions with Median, so that their
// figures mean the same thing.
//
// The child processes are this program re-executed: MaybeServe, called
// first by the command and by the tests' TestMain, turns it into one.
//
// Each scenario prints Markdown tables and writes <scenario>.json; Charts
// draws PNGs from those files. Every server listens on loopback only, and
// every loop is bounded in count and time. The command is
// bench/cmd/presencebench; the tests run each scenario in its Short form.
//
// The bench is a module of its own (its go.mod replaces the product's module
// with the repository's root, ../), so that the product's go.mod carries
// none of the bench's dependencies (pgx, go-redis, gonum/plot): run it from
// bench/ (cd bench && go test ./...). It uses only the product's exported
// packages; the little it needs of the tests' internal/testenv (reading a
// series from /metrics, a filter as GraphQL input) it does its own way, in
// metrics.go and http.go.
//
// A scenario uses the whole machine while it runs: run one at a time.
package bench

import "context"

// Scenario runs one scenario.
type Scenario func(ctx context.Context, o Options) (*Result, error)

// Scenarios by name.
var Scenarios = map[string]Scenario{
	"ingest":     Ingest,
	"query":      Query,
	"freshness":  Freshness,
	"peers":      Peers,
	"soak":       Soak,
	"recovery":   Recovery,
	"cluster":    Cluster,
	"forwarding": Forwarding,
}
