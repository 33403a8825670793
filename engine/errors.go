package engine

import "errors"

// ErrConfig is matched by every error New returns for a bad Config.
var ErrConfig = errors.New("engine: invalid config")

// ErrPage is matched by every error Users returns for a Page that breaks
// its rules.
var ErrPage = errors.New("engine: invalid page")

// ErrSnapshot is matched by every error ReadSnapshot returns for a snapshot
// it cannot use: unreadable, corrupt, of another version.
var ErrSnapshot = errors.New("engine: bad snapshot")
