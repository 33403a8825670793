// Package ingest is the NATS side of presenced: it runs the embedded NATS
// server, connects to NATS, and feeds the engine from the JetStream stream of
// presence events (contract section 1).
//
// An Ingester creates the event stream (PRESENCE, capturing
// <prefix>.*.*) and the dead-letter stream (PRESENCE_DEADLETTER, capturing
// deadletter.<prefix>.>, with a duplicate window of 1h) and the bucket of its
// marks (PRESENCE_DEADLETTER_MARKS) when they are missing, then reads the
// event stream
// in sequence order with an ordered consumer, from Config.StartSeq on, and
// hands each valid event to its Applier. A bad message changes nothing: it is
// counted as rejected and copied once, body unchanged, to
// deadletter.<prefix>.<tenantId or _>.<type or _> with the headers
// Presence-Error, Presence-Subject, Presence-Sequence and
// Presence-Stream-Created (which stream, which message).
//
// "Once" holds across restarts, replays and instances, with JetStream's own
// means: a key-value bucket, PRESENCE_DEADLETTER_MARKS, keeps a mark (key
// p0) saying up to which message of which stream (its creation time) the
// dead letters are written. A message at or before the mark is
// dead-lettered already. Otherwise the ingester publishes its dead letter
// with a message id of the source message (<stream>:<stream created, ns>:
// <seq>), then moves the mark to it, by revision (a Create when there is
// none, else an Update with the revision read), so that of two writers only
// one moves it and the other looks again. A writer trusts the mark it read
// or wrote for half of the dead-letter stream's duplicate window, then reads
// it again. Where no mark is yet, the newest dead letter stands for it, as
// presenced before marks wrote them in source order.
//
// So each bad message is dead-lettered once, whatever the number of
// readers and however far apart they read, with one limit: a writer that
// dies (or stalls) between its publish and its mark leaves a dead letter
// that the mark does not cover, and the next reader of that message
// publishes it again. The message id drops that copy within the
// dead-letter stream's duplicate window (1h when the ingester creates the
// stream: long enough for a reader catching up after a restart or a
// takeover); a next reader that comes later than the window writes a
// second copy. Beside that, as before marks: the dead letter of a message
// that an instance read just before retention removed it, while another
// instance had gone past it after the removal, is not written.
//
// The stream is the record: the ingester applies nothing but the stream's
// messages, each once, in stream order, so the Applier's state at AppliedSeq
// is the same in every instance and after every restart. A message the
// stream did not store has no effect. The state belongs to one stream, known
// by its creation time: when the stream turns out to be another (deleted and
// created again under the name, seen at start-up against
// Config.StreamCreated, or while reading), the ingester Resets the Applier
// and reads the new stream from its first message, counting it in
// presence_stream_resets_total. Messages the Applier needed that the stream
// no longer holds (retention, a purge, deleted messages) are logged as an
// Error naming them and counted in presence_stream_gaps_total; the ingester
// goes on with what the stream holds.
//
// Through a NATS outage the ingester waits, reconnects and resumes after the
// last applied sequence, so that no event is lost or applied twice.
//
// Concurrency: Run applies the stream's messages one at a time in a single
// goroutine. AppliedSeq, Ready, Pending and Checkpoint, and the metrics, may
// be used from any goroutine while Run is going.
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
