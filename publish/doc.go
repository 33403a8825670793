// Package publish is the Go publisher of presence events: it validates an
// event, encodes it and publishes it with JetStream on
// <prefix>.<tenantId>.<type>, then waits for the stream's acknowledgement, so
// that an event is either stored or reported as an error, never silently
// lost (contract section 1, Transport).
//
// A Publisher is safe for concurrent use. It does not create the stream:
// presenced does at start-up (PRESENCE, capturing <prefix>.*.*); until one
// captures the subject, every publish fails with ErrNotAcked.
//
//	js, err := jetstream.New(nc)
//	...
//	pub, err := publish.New(js, "") // prefix "presence"
//	...
//	ev := presence.Event{
//		Type:         presence.StatusChange,
//		UserID:       "42",
//		TS:           time.Now().UnixNano(),
//		Fields:       presence.HasTS | presence.HasAvailability,
//		Availability: presence.Available,
//	}
//	if err := pub.Publish(ctx, "acme", &ev); err != nil {
//		// errors.Is(err, publish.ErrInvalid): fix the event;
//		// errors.Is(err, publish.ErrNotAcked): publish it again later.
//	}
//
// PublishBatch publishes many events of one tenant without waiting for each
// ack in turn, for simulators and bulk loads.
package publish
