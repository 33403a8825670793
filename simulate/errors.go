package simulate

import "errors"

// ErrConfig reports a Config field that breaks its rule; it is wrapped with
// the field and the rule.
var ErrConfig = errors.New("simulate: invalid config")
