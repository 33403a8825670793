package presence

// Role is a user's role. The zero value, NoRole, is the role of a user whose
// profile never said one; such a user matches no roles filter.
type Role uint8

// The roles of contract section 1.
const (
	NoRole Role = iota
	Operator
	Manager
	Admin
	Expert
	Bot
)

// NumRoles counts the roles, NoRole included, for arrays indexed by Role.
const NumRoles = 6

var roleNames = [NumRoles]string{"", "operator", "manager", "admin", "expert", "bot"}

// String returns the wire name of r ("operator"), or "" for NoRole.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return ""
}

// EnumName returns the GraphQL enum name of r ("OPERATOR"), or "" for NoRole.
func (r Role) EnumName() string {
	if r == NoRole || int(r) >= NumRoles {
		return ""
	}
	return roleEnumNames[r]
}

var roleEnumNames = [NumRoles]string{"", "OPERATOR", "MANAGER", "ADMIN", "EXPERT", "BOT"}

// ParseRole matches a role name case-insensitively ("operator", "OPERATOR").
// It never returns NoRole with ok set.
func ParseRole(s string) (r Role, ok bool) {
	for i := Operator; i < NumRoles; i++ {
		if equalFold(s, roleNames[i]) {
			return i, true
		}
	}
	return NoRole, false
}

// Status is an availability status, used both for a user's overall
// availabilityStatus and for the chat channel's availability. The zero value is
// ToggleOff, the status of a user never seen before.
type Status uint8

// The statuses of contract section 1.
const (
	ToggleOff Status = iota
	Available
	Busy
)

// NumStatuses counts the statuses, for arrays indexed by Status.
const NumStatuses = 3

var statusNames = [NumStatuses]string{"TOGGLE_OFF", "AVAILABLE", "BUSY"}

// String returns the wire and GraphQL name of s ("AVAILABLE").
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return ""
}

// InProduction reports whether a connected user with chat availability s is in
// production on chat (contract section 2).
func (s Status) InProduction() bool { return s == Available || s == Busy }

// ParseStatus matches a status name case-insensitively.
func ParseStatus(s string) (st Status, ok bool) {
	for i := Status(0); i < NumStatuses; i++ {
		if equalFold(s, statusNames[i]) {
			return i, true
		}
	}
	return 0, false
}

// Type is an event type, the last token of the subject.
type Type uint8

// The event types of contract section 1.1. The zero value is no valid type.
const (
	Login Type = iota + 1
	Logout
	StatusChange
	Slots
	Profile
	Heartbeat
)

// NumTypes bounds the Type values, for arrays indexed by Type (index 0 unused).
const NumTypes = 7

var typeNames = [NumTypes]string{"_", "login", "logout", "status", "slots", "profile", "heartbeat"}

// String returns the subject token of t ("login"), or "_" for an invalid type,
// the label the contract uses for a message whose type is unknown.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "_"
}

// ParseType matches a subject token exactly (subjects are case-sensitive).
func ParseType(s string) (t Type, ok bool) {
	for i := Login; i < NumTypes; i++ {
		if s == typeNames[i] {
			return i, true
		}
	}
	return 0, false
}

// equalFold is an ASCII-only strings.EqualFold: enum names are ASCII, and
// anything else must not match.
func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := lower[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}
