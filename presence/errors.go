package presence

import "errors"

// ErrInvalid is matched (with errors.Is) by every error that reports an event
// breaking the contract: a bad subject, bad JSON, a field out of its rules.
var ErrInvalid = errors.New("presence: invalid event")

// FieldError reports the field of an event (or "subject", or "json" for the
// document as a whole) and the rule it breaks. Its message is what a publisher
// reads in the Presence-Error header of a dead letter.
type FieldError struct {
	Field string // "userId", "chat.maxSlots", "groupIds[3]", "subject", "json"
	Rule  string // "required", "must be an integer from 0 to 1000", ...
}

func (e *FieldError) Error() string { return "presence: " + e.Field + ": " + e.Rule }

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldError(field, rule string) error { return &FieldError{Field: field, Rule: rule} }
