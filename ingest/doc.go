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
// The stream is the record: the ingester applies nothing but the stream's
// messages, each once, in stream order, so the Applier's state at AppliedSeq
// is the same in every instance and after every restart. A message the
// stream did not store has no effect.
//
// Through a NATS outage the ingester waits, reconnects and resumes after the
// last applied sequence, so that no event is lost or applied twice.
//
// Concurrency: Run applies the stream's messages one at a time in a single
// goroutine. AppliedSeq, Ready and Pending, and the metrics, may be read
// from any goroutine while Run is going.
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
