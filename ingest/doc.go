// Package ingest is the NATS side of presenced: it runs the embedded NATS
// server, connects to NATS, and feeds the engine from the JetStream stream of
// presence events (contract section 1).
//
// An Ingester creates the event stream (PRESENCE, capturing <prefix>.*.*),
// the dead-letter stream (PRESENCE_DEADLETTER, capturing deadletter.<prefix>.>,
// with a duplicate window of 1h) and the bucket of the dead-letter marks
// (PRESENCE_DEADLETTER_MARKS) when they are missing, with Config.Replicas
// replicas; Prepare does the same for a caller that must know the stream
// before it starts any Ingester. The Ingester then reads the event stream in
// sequence order with an ordered consumer, from Config.StartSeq on, and hands
// each valid event to its Applier. A bad message changes nothing: it is
// counted as rejected and copied once, body unchanged, to
// deadletter.<prefix>.<tenantId or _>.<type or _> with the headers
// Presence-Error, Presence-Subject (the subject as published),
// Presence-Sequence and Presence-Stream-Created (which stream, which message).
//
// # Partitions
//
// With Config.Partitions N > 1 (contract section 7) the tenants are split
// into N partitions by presence.Partition, the hash of NATS's subject
// mapping function partition(N, 1). The event stream is created with the
// subject transform <prefix>.*.* -> <prefix>.{{partition(N,1)}}.{{wildcard(1)}}.{{wildcard(2)}},
// so that the server stores each event under its partition,
// <prefix>.<partition>.<tenantId>.<type>, and with the count in its metadata
// (MetadataPartitions, "1" for one partition). An existing stream's count is
// its metadata's, or 1 without (a stream from before partitions); a count
// other than Config.Partitions, or N > 1 without that transform, is refused
// with ErrPartitions, for the program to refuse to start: the count of a
// stream is fixed when it is created.
//
// Each partition is read by an Ingester of its own (Config.Partition), into
// an Applier of its own (its Resets come when that partition's reader finds
// the stream recreated), with an ordered consumer filtered on
// <prefix>.<partition>.*.*; with one partition an Ingester reads the whole
// stream, as before partitions. Its AppliedSeq is the stream sequence of the
// last of its partition's messages applied, and it is Ready once it has
// applied the partition's last message of when Run started. With N > 1 its
// metrics carry a partition label, so that the Ingesters of one process may
// share a registry.
//
// # Dead letters: once
//
// Each partition keeps a mark in the bucket, key p<partition>: the source
// stream's creation time and the highest sequence of that stream whose dead
// letter is written. A message at or before the mark is dead-lettered
// already. Otherwise the Ingester publishes its dead letter with a JetStream
// message id, <stream>:<stream created, ns>:<seq>, waits for the
// acknowledgement, then moves the mark to the message by revision (Create
// when there is none, else Update with the revision read): of two writers
// racing, the id stores the dead letter once and the revision lets only one
// move the mark, the other reading it again. A writer trusts the mark it last
// read or wrote for half of the dead-letter stream's duplicate window, then
// reads it again. Where a stream of one partition has no mark yet, its newest
// dead letter stands for it: presenced before marks wrote dead letters in
// source order, each publish expecting the newest to be the one it knew.
//
// What "once" covers: every bad message of the stream, read by any number of
// Ingesters of its partition, in any number of instances, through restarts,
// replays and reconnections, with any timing between them, has exactly one
// dead letter, with this one limit. A writer that dies between a dead
// letter's publish and its mark's update (or stalls there for more than half
// the window, less a publish) leaves a dead letter that the mark does not
// cover; the next reader of that message publishes it again, and the message
// id drops that copy within the dead-letter stream's duplicate window. Such
// a next reader that comes later than the window, after the first copy,
// stores a second one. The ingester creates the dead-letter stream with a
// window of an hour, to cover a reader catching up after a restart or a
// takeover; an existing stream keeps its own window (one that presenced
// created before marks has JetStream's default, 2 minutes).
//
// Outside what "once" covers, as before marks: the dead letter of a message
// that an instance read just before retention removed it, while another
// instance had gone past it after the removal, is not written; a dead letter
// over the server's size limit is dropped, and logged; a marks bucket
// deleted by hand is forgotten, and for a stream of several partitions the
// dead letters of messages it still holds are then written again.
//
// # The stream is the record
//
// The ingester applies nothing but the stream's messages, each once, in
// stream order, so the Applier's state at AppliedSeq is the same in every
// instance and after every restart. A message the stream did not store has
// no effect. The state belongs to one stream, known by its creation time:
// when the stream turns out to be another (deleted and created again under
// the name, seen at start-up against Config.StreamCreated, or while
// reading), the ingester Resets the Applier and reads the new stream from
// its first message, counting it in presence_stream_resets_total. Messages
// the Applier needed that the stream no longer holds are logged as an Error
// naming them and counted in presence_stream_gaps_total; the ingester goes
// on with what the stream holds. With one partition that is any message
// missing: retention, a purge, messages deleted in the middle. With several,
// the sequences jump between a partition's messages by design, so only a
// start before the stream's first message can be told, and the range
// reported may hold other partitions' messages; messages deleted in the
// middle of a partition cannot be told from other partitions' and go
// unreported.
//
// Through a NATS outage the ingester waits, reconnects and resumes after the
// last applied sequence, so that no event is lost or applied twice.
//
// Concurrency: Run applies the stream's messages one at a time in a single
// goroutine. AppliedSeq, Ready, Pending and Checkpoint, and the metrics, may
// be used from any goroutine while Run is going. Ingesters of different
// partitions are independent and run side by side.
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
//
// With partitions, one Ingester per partition held, after Prepare:
//
//	js, _ := jetstream.New(nc)
//	if _, err := ingest.Prepare(ctx, js, ingest.Config{Partitions: 8, Replicas: 3}); err != nil {
//		... // errors.Is(err, ingest.ErrPartitions): refuse to start
//	}
//	for _, p := range held {
//		ing, err := ingest.New(ingest.Config{Conn: nc, Applier: engines[p], Partitions: 8, Partition: p,
//			Replicas: 3, Registerer: reg})
//		...
//		go ing.Run(ctx)
//	}
package ingest
