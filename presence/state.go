package presence

// State is one user's scalar state with a timestamp per field, merged by the
// per-field last-writer-wins rule of contract section 1.2. The id sets live
// with the owner of the State (the engine interns them); Apply reports which of
// them the event replaces. The zero value is a user never seen before:
// disconnected, no role, everything TOGGLE_OFF, no slots.
type State struct {
	// Clock holds, per field, the ts of the event that last set it; it is
	// meaningful for the fields in Known.
	Clock [NumFields]int64
	// LastSeen is the newest ts of any event of the user, when Seen.
	LastSeen int64
	Known    Fields
	Seen     bool

	// Connected is the connection as the last login or logout set it;
	// Expired says session expiry has ended it since (contract section 1.3).
	Connected    bool
	Expired      bool
	Role         Role
	Availability Status
	Chat         Status
	MaxSlots     uint16
	CurrentSlots uint16
}

// Online reports whether the user counts as connected (contract section 2).
func (s *State) Online() bool { return s.Connected && !s.Expired }

// InProduction reports whether the user is in production on chat.
func (s *State) InProduction() bool { return s.Online() && s.Chat.InProduction() }

// Apply merges ev into s and returns the state fields the event carried and
// those it set (a field is set when the event is not older than the field).
// The event is stale when carried is not empty and set is.
//
// ttl is the session TTL in nanoseconds (0: sessions never expire) and now the
// current time in Unix nanoseconds. With a TTL, a session whose newest event is
// older than the TTL ends as by a logout at that event's ts + TTL: Apply records
// that logout when an event arrives after it, and undoes an expiry that an
// event inside the window proves premature (events may arrive out of order).
func (s *State) Apply(ev *Event, ttl, now int64) (carried, set Fields) {
	ts := ev.TS
	if ttl > 0 && s.Connected && s.Seen {
		if end := s.LastSeen + ttl; ts > end {
			s.Connected, s.Expired = false, false
			s.Clock[FieldConnection] = end
		} else if s.Expired && ts > s.LastSeen {
			s.Expired = false
		}
	}

	carried = ev.touched()
	for f := Field(0); f < NumFields; f++ {
		bit := Fields(1) << f
		if carried&bit == 0 || (s.Known&bit != 0 && ts < s.Clock[f]) {
			continue
		}
		s.Clock[f] = ts
		set |= bit
		switch f {
		case FieldConnection:
			s.Connected, s.Expired = ev.Type == Login, false
		case FieldRole:
			s.Role = ev.Role
		case FieldAvailability:
			s.Availability = ev.Availability
		case FieldChat:
			s.Chat = ev.Chat
		case FieldMaxSlots:
			s.MaxSlots = ev.MaxSlots
		case FieldCurrentSlots:
			s.CurrentSlots = ev.CurrentSlots
		}
	}
	s.Known |= set

	if !s.Seen || ts > s.LastSeen {
		s.LastSeen, s.Seen = ts, true
	}
	if ttl > 0 {
		s.Expire(ttl, now)
	}
	return carried, set
}

// Expire ends the session of an online user whose newest event is older than
// now - ttl, and reports whether it did. With ttl <= 0 it does nothing.
func (s *State) Expire(ttl, now int64) bool {
	if ttl <= 0 || !s.Online() || s.LastSeen+ttl >= now {
		return false
	}
	s.Expired = true
	return true
}
