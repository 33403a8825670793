package ingest

import (
	"sync"
	"time"
)

// limiter lets one log line through per interval and counts the lines it
// held back, so that a flood of bad messages cannot flood the log while the
// operator still learns how many there were.
type limiter struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged at now and, when it may, how
// many lines were suppressed since the last one.
func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	l.last, suppressed, l.suppressed = now, l.suppressed, 0
	return true, suppressed
}
