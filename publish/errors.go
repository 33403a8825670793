package publish

import "errors"

// Errors returned by this package, matched with errors.Is. Each is wrapped
// with the detail: the argument, the event and the cause at fault.
var (
	// ErrConfig reports an argument of New that breaks its rule.
	ErrConfig = errors.New("publish: invalid config")
	// ErrInvalid reports an event or tenant the engine would reject. It wraps
	// the *presence.FieldError that names the field and the rule (match it
	// with errors.As). Nothing was published.
	ErrInvalid = errors.New("publish: invalid event")
	// ErrNotAcked reports an event JetStream did not acknowledge: no stream
	// captures its subject, the broker is unreachable, the context ended. It
	// wraps the cause. The event may still have been stored (an ack can be
	// lost on its way back); publishing it again is safe when it carries a ts,
	// since a duplicate changes nothing (contract section 1.2).
	ErrNotAcked = errors.New("publish: event not acknowledged")
)
