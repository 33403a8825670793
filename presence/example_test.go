package presence_test

import (
	"fmt"
	"time"

	"github.com/presenced/presenced/presence"
)

// A publisher builds an event, and MarshalJSON checks and encodes it for the
// subject that carries its tenant and type.
func ExampleEvent_MarshalJSON() {
	ts := time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC)
	ev := presence.Event{
		Type:         presence.StatusChange,
		UserID:       "42",
		TS:           ts.UnixNano(),
		Fields:       presence.HasTS | presence.HasAvailability | presence.HasChat,
		Availability: presence.Available,
		Chat:         presence.Busy,
	}
	subject, err := presence.Subject("presence", "acme", ev.Type)
	if err != nil {
		panic(err)
	}
	payload, err := ev.MarshalJSON()
	if err != nil {
		panic(err)
	}
	fmt.Println(subject)
	fmt.Println(string(payload))

	ev.MaxSlots, ev.Fields = 5000, ev.Fields|presence.HasMaxSlots
	_, err = ev.MarshalJSON()
	fmt.Println(err)
	// Output:
	// presence.acme.status
	// {"userId":"42","ts":"2026-11-25T10:00:00.123Z","availabilityStatus":"AVAILABLE","chat":{"availability":"BUSY"}}
	// presence: chat.maxSlots: must be an integer from 0 to 1000
}

// The engine takes the tenant and type from the subject, and the rest from
// the payload.
func ExampleDecode() {
	subject := "presence.acme.login"
	payload := []byte(`{"userId":"42","role":"Operator","groupIds":["g1","g2","g1"],"future":{"x":1}}`)

	tenant, typ, err := presence.ParseSubject("presence", subject)
	if err != nil {
		panic(err)
	}
	ev := presence.Event{Type: typ}
	if err := presence.Decode(payload, &ev); err != nil {
		panic(err)
	}
	fmt.Println(tenant, ev.Type, ev.UserID, ev.Role, ev.GroupIDs, ev.Has(presence.HasTS))
	// Output: acme login 42 operator [g1 g2] false
}

// A message that breaks the contract is copied to its dead-letter subject,
// with the reason.
func ExampleDeadLetterSubject() {
	subject := "presence.acme.dance"
	_, _, err := presence.ParseSubject("presence", subject)
	fmt.Println(err)
	fmt.Println(presence.DeadLetterSubject("presence", subject))

	var ev presence.Event
	err = presence.Decode([]byte(`{"userId":"42","chat":{"maxSlots":1e2}}`), &ev)
	fmt.Println(err)
	// Output:
	// presence: type: must be one of login, logout, status, slots, profile, heartbeat
	// deadletter.presence.acme._
	// presence: chat.maxSlots: must be an integer from 0 to 1000
}
