package presence

import "time"

// Field names one part of a user's state that carries its own timestamp
// (contract section 1.2).
type Field uint8

// The per-field last-writer-wins fields of a user.
const (
	FieldConnection Field = iota
	FieldRole
	FieldGroups
	FieldProjects
	FieldRoutingGroups
	FieldAvailability
	FieldChat
	FieldMaxSlots
	FieldCurrentSlots
	NumFields
)

// Fields is a set of Field values, plus HasTS, as a bit mask.
type Fields uint16

// The bits of Fields. An event's Fields says which optional payload fields it
// carries; the connection bit is implied by the type (login, logout).
const (
	HasConnection    Fields = 1 << FieldConnection
	HasRole          Fields = 1 << FieldRole
	HasGroups        Fields = 1 << FieldGroups
	HasProjects      Fields = 1 << FieldProjects
	HasRoutingGroups Fields = 1 << FieldRoutingGroups
	HasAvailability  Fields = 1 << FieldAvailability
	HasChat          Fields = 1 << FieldChat
	HasMaxSlots      Fields = 1 << FieldMaxSlots
	HasCurrentSlots  Fields = 1 << FieldCurrentSlots
	// HasTS says the payload carried a ts; without it the receiver fills TS in
	// (see Event.ResolveTime).
	HasTS Fields = 1 << NumFields

	payloadFields = HasRole | HasGroups | HasProjects | HasRoutingGroups |
		HasAvailability | HasChat | HasMaxSlots | HasCurrentSlots
)

// Limits of the wire format (contract section 1).
const (
	MaxUserIDLen = 128  // bytes of userId
	MaxIDLen     = 128  // bytes of one group, project or routing group id
	MaxIDs       = 256  // entries of one id list, as sent
	MaxSlotsLen  = 1000 // largest maxSlots and currentSlots
)

// Event is one presence event. Tenant and Type come from the NATS subject; the
// rest from the JSON payload. Only the fields whose bit is set in Fields are
// meaningful; an id list that is present replaces the user's whole set.
type Event struct {
	Type   Type
	UserID string
	// TS is the event time in Unix nanoseconds. It is meaningful once Fields
	// has HasTS or ResolveTime has filled it in.
	TS int64
	// Stored is when the stream stored the event, in Unix nanoseconds, once
	// ResolveTime has filled it in; zero means unknown (taken as TS).
	// Session expiry uses it to tell how late an event is.
	Stored int64
	Fields Fields

	Role            Role
	GroupIDs        []string
	ProjectIDs      []string
	RoutingGroupIDs []string
	Availability    Status
	Chat            Status
	MaxSlots        uint16
	CurrentSlots    uint16
}

// Has reports whether every bit of f is set in the event's Fields.
func (ev *Event) Has(f Fields) bool { return ev.Fields&f == f }

// touched is the set of state fields the event carries: its payload fields,
// plus the connection for login and logout.
func (ev *Event) touched() Fields {
	f := ev.Fields & payloadFields
	if ev.Type == Login || ev.Type == Logout {
		f |= HasConnection
	}
	return f
}

// ResolveTime settles the event time (contract section 1, ts): without a ts in
// the payload it is the stored time (the JetStream message's, stable across
// redelivery); a ts more than maxSkew after the stored time is rejected, so that
// a publisher with a clock in the future cannot freeze a user's fields.
func (ev *Event) ResolveTime(stored time.Time, maxSkew time.Duration) error {
	ev.Stored = stored.UnixNano()
	if !ev.Has(HasTS) {
		ev.TS = ev.Stored
		ev.Fields |= HasTS
		return nil
	}
	if ev.TS > stored.Add(maxSkew).UnixNano() {
		return fieldError("ts", "more than "+maxSkew.String()+" after the time the message was stored")
	}
	return nil
}
