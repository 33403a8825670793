package presence

// State is one user's scalar state with a timestamp per field, merged by the
// per-field last-writer-wins rule of contract section 1.2. The id sets live
// with the owner of the State (the engine interns them); Apply reports which of
// them the event replaces. The zero value is a user never seen before:
// disconnected, no role, everything TOGGLE_OFF, no slots.
type State struct {
	// Clock holds, per field, the ts of the event that last set it; it is
	// meaningful for the fields in Known. With session expiry, a session
	// whose end is final is recorded as a logout at its end (contract 1.3).
	Clock [NumFields]int64
	// LastSeen is the newest ts of any event of the user, when Seen.
	LastSeen int64
	// SpanFrom is, with session expiry on, where the user's last span of
	// events starts (see Span); the span ends at LastSeen.
	SpanFrom int64
	Known    Fields
	Seen     bool
	// Gaps says the user's recent events make more than one span: the
	// owner of the State keeps them all for Apply (see Apply).
	Gaps bool

	// Connected is the connection as the newest login or logout set it;
	// Expired says session expiry ends it for now (contract section 1.3):
	// the newest event is older than the TTL, or the events after the login
	// leave a silence longer than the TTL that a late event could still
	// fill. Only Apply and Expire change them.
	Connected    bool
	Expired      bool
	Role         Role
	Availability Status
	Chat         Status
	MaxSlots     uint16
	CurrentSlots uint16
}

// Expiry is session expiry (contract section 1.3) as State.Apply needs it.
// The zero value is off.
type Expiry struct {
	// TTL ends a session whose newest event is older than this, in
	// nanoseconds; 0 is off.
	TTL int64
	// Late is how long after its ts an event may be stored and still have
	// the effect it would have had in ts order, in nanoseconds (the
	// program uses its -max-clock-skew): that long, the user keeps the
	// spans of its events that a late event could still join. An event
	// stored later than that is applied as best it can be.
	Late int64
	// Now is the current time in Unix nanoseconds.
	Now int64
}

// Span is a stretch of one user's events, from the ts of the first to the
// ts of the last, in which no two consecutive events are more than the
// session TTL apart. Two spans of a user are more than the TTL apart: a
// session that starts in one ends at its To + TTL when another follows.
type Span struct{ From, To int64 }

// Online reports whether the user counts as connected (contract section 2).
func (s *State) Online() bool { return s.Connected && !s.Expired }

// InProduction reports whether the user is in production on chat.
func (s *State) InProduction() bool { return s.Online() && s.Chat.InProduction() }

// Apply merges ev into s and returns the state fields the event carried and
// those it set (a field is set when the event is not older than the field).
// The event is stale when carried is not empty and set is.
//
// With session expiry (x.TTL > 0), the connection is what applying the
// user's events in ts order gives: a session that starts at the newest
// login lasts until a silence longer than the TTL, or until the newest event
// is older than the TTL at x.Now, whatever the order the events arrive in,
// as long as each is stored within x.Late of its ts. To know that, the user
// keeps the spans of its events that a late event could still join or
// bridge: one span, the usual case, is kept in s itself (SpanFrom to
// LastSeen); more set Gaps, and then *spans holds all of them, kept by the
// caller between calls. Apply reads *spans when Gaps is set and leaves
// there the spans to keep (nil when Gaps ends up clear).
func (s *State) Apply(ev *Event, x Expiry, spans *[]Span) (carried, set Fields) {
	ts := ev.TS
	var one [1]Span
	var sp []Span
	if x.TTL > 0 {
		sp = s.spans(one[:0], spans)
		sp = addEvent(sp, ts, x.TTL)
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
			s.Connected = ev.Type == Login
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
	if x.TTL > 0 {
		stored := ev.Stored
		if stored == 0 {
			stored = ts
		}
		s.session(sp, x, stored-x.Late, spans)
	}
	return carried, set
}

// spans returns the user's spans: *spans when Gaps is set, else the one
// span in s, appended to buf (none for a user never seen).
func (s *State) spans(buf []Span, spans *[]Span) []Span {
	if s.Gaps {
		return *spans
	}
	if !s.Seen {
		return buf
	}
	return append(buf, Span{s.SpanFrom, s.LastSeen})
}

// addEvent puts an event at ts into the sorted spans sp: it joins the spans
// within ttl of it, bridging two when it falls between them.
func addEvent(sp []Span, ts, ttl int64) []Span {
	i := 0
	for i < len(sp) && sp[i].To+ttl < ts {
		i++
	}
	if i == len(sp) || ts < sp[i].From-ttl {
		sp = append(sp, Span{})
		copy(sp[i+1:], sp[i:])
		sp[i] = Span{ts, ts}
		return sp
	}
	sp[i].From, sp[i].To = min(sp[i].From, ts), max(sp[i].To, ts)
	if i+1 < len(sp) && sp[i+1].From-ttl <= sp[i].To {
		sp[i].To = sp[i+1].To
		sp = append(sp[:i+1], sp[i+2:]...)
	}
	return sp
}

// session settles the connection from the spans sp and keeps the spans that
// an event not older than horizon could still matter to: a session starts
// at the newest login, which lies in one of the spans, and lasts while that
// span is the last one; when another follows, the session ended at the
// span's To + TTL, which is final once no event after horizon can bridge
// the silence, and only a later login reconnects the user. The spans before
// the login's, or wholly older than horizon when the user is disconnected,
// can matter to no event after horizon.
func (s *State) session(sp []Span, x Expiry, horizon int64, spans *[]Span) {
	s.Expired = false
	if s.Connected {
		i := 0
		for i < len(sp)-1 && sp[i].To < s.Clock[FieldConnection] {
			i++
		}
		sp = sp[i:]
		switch {
		case len(sp) == 1:
			s.Expired = s.LastSeen+x.TTL < x.Now
		case sp[0].To+x.TTL < horizon:
			// Recorded as the logout the contract says it is.
			s.Connected = false
			s.Clock[FieldConnection] = sp[0].To + x.TTL
		default:
			s.Expired = true
		}
	}
	if !s.Connected {
		i := 0
		for i < len(sp)-1 && sp[i].To < horizon {
			i++
		}
		sp = sp[i:]
	}
	s.SpanFrom = sp[len(sp)-1].From
	s.Gaps = len(sp) > 1
	if s.Gaps {
		// sp may be on Apply's stack, or a part of *spans: copy (append
		// copies overlapping memory correctly).
		*spans = append((*spans)[:0], sp...)
	} else {
		*spans = nil
	}
}

// Expire ends, for now, the session of an online user whose newest event is
// older than now - ttl, and reports whether it did. With ttl <= 0 it does
// nothing. An event that proves the session still running (Apply) undoes it.
func (s *State) Expire(ttl, now int64) bool {
	if ttl <= 0 || !s.Online() || s.LastSeen+ttl >= now {
		return false
	}
	s.Expired = true
	return true
}
