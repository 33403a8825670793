package engine

import "errors"

// ErrConfig is matched by every error New returns for a bad Config.
var ErrConfig = errors.New("engine: invalid config")
