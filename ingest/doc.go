// Package ingest is the NATS side of presenced: it runs the embedded NATS
// server, connects to NATS, and feeds the engine from the JetStream stream of
// presence events (contract section 1).
//
// An Ingester creates the event stream (PRESENCE, capturing
// <prefix>.*.*) and the dead-letter stream (PRESENCE_DEADLETTER, capturing
// deadletter.<prefix>.>) when they are missing, then reads the event stream
// in sequence order with an ordered consumer, from Config.StartSeq on, and
// hands each valid event to its Applier. A bad message changes nothing: it is
// counted as rejected and copied once, body unchanged, to
// deadletter.<prefix>.<tenantId or _>.<type or _> with the headers
// Presence-Error, Presence-Subject and Presence-Sequence. "Once" holds across
// restarts and replays: each dead letter carries a JetStream message id, and
// at start-up the ingester reads the source sequence of the last dead letter
// and writes none at or below it. Both streams get the same MaxAge, so a dead
// letter outlives the message it copies.
//
// Reading through JetStream costs the time the server takes to store each
// event, so the ingester also follows a plain subscription to the event
// subjects, its live tail: once caught up with the stream, it applies valid
// events that carry their own ts as soon as NATS delivers them. The stream
// stays the record: every stored message is still read in order, counted
// once (with the outcome it had when the tail applied it) and tracked by
// sequence; events without ts and bad messages wait for it. The
// presence_events_ahead_total counter shows the tail at work; a connection
// without permission to subscribe to the event subjects just goes without.
//
// Through a NATS outage the ingester waits, reconnects and resumes after the
// last applied sequence, so that no event is lost or applied twice.
//
// Concurrency: Run applies the stream's messages one at a time in a single
// goroutine, and the live tail from the subscription's goroutine: the Applier
// must be safe for concurrent use. AppliedSeq, Ready and Pending, and
// the metrics, may be read from any goroutine while Run is going.
//
// Wiring, with the embedded server:
//
//	srv, url, err := ingest.StartServer(ingest.ServerConfig{Listen: "127.0.0.1:4222", StoreDir: "data/nats"})
//	if err != nil { ... }
//	defer srv.Shutdown()
//	nc, err := ingest.Connect(url, logger, prometheus.DefaultRegisterer)
//	if err != nil { ... }
//	defer nc.Close()
//	ing, err := ingest.New(ingest.Config{Conn: nc, Applier: eng, Logger: logger,
//		Registerer: prometheus.DefaultRegisterer, MaxAge: ingest.DefaultMaxAge})
//	if err != nil { ... }
//	err = ing.Run(ctx) // until ctx ends; ing.Ready() answers /readyz meanwhile
package ingest
