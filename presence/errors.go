package presence

import "errors"

// ErrInvalid is matched (with errors.Is) by every error that reports an event
// breaking the contract: a bad subject, bad JSON, a field out of its rules.
var ErrInvalid = errors.New("presence: invalid event")

// FieldError reports the field of an event (or a part of its subject:
// "subject", "prefix", "tenantId", "type"; or "json" for the document as a
// whole) and the rule it breaks. Its message is what a publisher reads in the
// Presence-Error header of a dead letter.
type FieldError struct {
	Field string // "userId", "chat.maxSlots", "groupIds[3]", "tenantId", "type", "subject", "json"
	Rule  string // "required", "must be an integer from 0 to 1000", ...
}

func (e *FieldError) Error() string { return "presence: " + e.Field + ": " + e.Rule }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldError(field, rule string) error { return &FieldError{Field: field, Rule: rule} }

// The rules a FieldError names. Decode and Validate share them, so that a
// publisher reads before publishing the reason the engine would give.
const (
	ruleRequired = "required"
	ruleUserID   = "must be a string of 1 to 128 bytes"
	ruleUTF8     = "must be valid UTF-8"
	ruleTS       = "must be an RFC 3339 time"
	ruleTSRange  = "must be from 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z"
	ruleRole     = "must be one of operator, manager, admin, expert, bot"
	ruleList     = "must be an array of at most 256 strings"
	ruleID       = "must be a string of 1 to 128 bytes"
	ruleStatus   = "must be one of AVAILABLE, BUSY, TOGGLE_OFF"
	ruleChat     = "must be an object"
	ruleSlots    = "must be an integer from 0 to 1000"
	ruleObject   = "must be one JSON object"
	rulePrefix   = "must be a NATS subject of literal tokens"
	ruleTenant   = "must be 1 to 64 characters of A-Z a-z 0-9 _ -"
	ruleType     = "must be one of login, logout, status, slots, profile, heartbeat"
)
