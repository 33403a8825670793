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
// tenant and type:
//
//	ev := presence.Event{
//		Type:   presence.Status,
//		UserID: "42",
//		TS:     time.Now().UnixNano(),
//		Fields: presence.HasAvailability,
//		Availability: presence.Available,
//	}
//	subject, _ := presence.Subject("presence", "acme", ev.Type)
//	payload, _ := ev.MarshalJSON()
//	nc.Publish(subject, payload)
package presence
