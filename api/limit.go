package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	gqlerrors "github.com/graph-gophers/graphql-go/errors"
	"golang.org/x/time/rate"
)

// maxLimiters bounds the rate limiters kept (one per token or open-mode
// tenant).
const maxLimiters = 4096

// limiters holds one token bucket per client key (a token's hash, or an
// open-mode tenant) in a map of at most max entries, so that a flood of
// made-up tenant ids cannot grow it without bound.
type limiters struct {
	limit rate.Limit
	burst int
	max   int
	// idle is how long a bucket takes to fill up: a bucket unused that long
	// is full, and dropping it loses nothing (a new one starts full).
	idle time.Duration

	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiters(limit rate.Limit, burst, max int) *limiters {
	idle := time.Duration(float64(burst) / float64(limit) * float64(time.Second))
	return &limiters{limit: limit, burst: burst, max: max, idle: idle + time.Second, m: make(map[string]*bucket)}
}

// allow takes one request from key's bucket at now. When the bucket is empty
// it returns false and how long until a request would be allowed.
func (l *limiters) allow(key string, now time.Time) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = b
	}
	b.last = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // the request is refused: give its token back
		return false, d
	}
	return true, 0
}

// evict makes room: first the buckets that are full again (lossless), else
// any one bucket, which only happens under a flood of distinct keys.
func (l *limiters) evict(now time.Time) {
	for k, b := range l.m {
		if now.Sub(b.last) >= l.idle {
			delete(l.m, k)
		}
	}
	if len(l.m) < l.max {
		return
	}
	for k := range l.m {
		delete(l.m, k)
		return
	}
}

// rateLimitError is the refusal of a request over its client's rate limit,
// built by takeRequest alike for HTTP and the socket.
type rateLimitError struct {
	limit      rate.Limit
	retryAfter int // whole seconds until a request is allowed: rounded up, at least 1
}

// takeRequest takes one request of id from its rate limit at now. It returns
// nil when the request may go, else the refusal to answer.
func (s *Server) takeRequest(id identity, now time.Time) *rateLimitError {
	ok, wait := s.limits.allow(id.limiter, now)
	if ok {
		return nil
	}
	return &rateLimitError{limit: s.cfg.RateLimit, retryAfter: retryAfterSeconds(wait)}
}

// retryAfterSeconds rounds wait up to whole seconds, at least 1: a client
// that waits that long finds a token. (Integer arithmetic: wait may be as
// long as a time.Duration goes.)
func retryAfterSeconds(wait time.Duration) int {
	secs := wait / time.Second
	if wait%time.Second != 0 {
		secs++
	}
	return int(max(1, secs))
}

func (e *rateLimitError) Error() string {
	return "api: rate limit exceeded (" + strconv.FormatFloat(float64(e.limit), 'g', -1, 64) +
		" requests/s); retry after " + strconv.Itoa(e.retryAfter) + "s"
}

// writeHTTP answers a refused HTTP request: 429 with Retry-After and the
// GraphQL error RATE_LIMITED.
func (e *rateLimitError) writeHTTP(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	writeError(w, http.StatusTooManyRequests, "RATE_LIMITED", e.Error())
}

// queryError is the GraphQL error of a refused subscribe message: the
// socket has no header, so its extensions carry retryAfterSeconds beside
// the code.
func (e *rateLimitError) queryError() *gqlerrors.QueryError {
	return &gqlerrors.QueryError{Message: e.Error(),
		Extensions: map[string]any{"code": "RATE_LIMITED", "retryAfterSeconds": e.retryAfter}}
}
