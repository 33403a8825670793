// Package presence is the domain of presenced: user roles and statuses, the
// presence event and its JSON wire format, the NATS subject layout, and the
// per-field last-writer-wins state of one user.
//
// Publishers written in Go import this package to build, validate and encode
// events; the engine imports it to decode and merge them. It depends on the
// standard library only.
//
// Values of this package are plain data: an Event or a State may be used by one
// goroutine at a time, and the functions are safe for concurrent use.
//
// A publisher builds an event and encodes it for the subject that carries its
// tenant and type (MarshalJSON validates the event first):
//
//	ev := presence.Event{
//		Type:         presence.StatusChange,
//		UserID:       "42",
//		TS:           time.Now().UnixNano(),
//		Fields:       presence.HasTS | presence.HasAvailability,
//		Availability: presence.Available,
//	}
//	subject, err := presence.Subject("presence", "acme", ev.Type)
//	...
//	payload, err := ev.MarshalJSON()
//	...
//	nc.Publish(subject, payload)
//
// The engine reads it back; a message that fails either step is dead-lettered
// to DeadLetterSubject(prefix, msg.Subject):
//
//	tenant, typ, err := presence.ParseSubject("presence", msg.Subject)
//	...
//	ev.Type = typ
//	err = presence.Decode(msg.Data, &ev)
package presence
