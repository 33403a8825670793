// Package engine is the in-memory presence store: every user's state,
// sharded by tenant, with incremental counters that answer any
// connectedUsersIndicator filter in constant time or close to it.
//
// An Engine is safe for concurrent use: Apply, Query, Breakdown, Users, Watch,
// Expire, Stats and Reset may be called from any number of goroutines. Apply
// changes a user's state and every counter that counts it in one critical
// section, so a Query never sees one without the other. A snapshot's Cut is
// taken between two events and written while Apply goes on: Write holds a
// shard's lock for a chunk of users at a time.
//
// Only events cost memory that lasts: an id or a tenant that only queries,
// breakdowns and watches name is not kept once they are answered or closed,
// in memory, in snapshots or in Stats (contract section 3.1).
//
// The engine knows nothing of NATS, GraphQL or Prometheus: the ingest side
// feeds it decoded events, the API reads it.
//
//	e, _ := engine.New(engine.Config{})
//	e.Apply("acme", &presence.Event{Type: presence.Login, UserID: "42", TS: ts, Fields: presence.HasTS})
//	ind := e.Query("acme", &engine.Filter{})
//	fmt.Println(ind.Connected) // 1
package engine
