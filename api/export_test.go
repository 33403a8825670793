package api

import "time"

// NewObserved is New, with observe told the throttle interval of each
// subscription the resolver starts, before its first value: what a client
// cannot see without a clock.
func NewObserved(cfg Config, observe func(time.Duration)) (*Server, error) {
	s, err := New(cfg)
	if err == nil {
		s.onFollow = observe
	}
	return s, err
}
