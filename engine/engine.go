package engine

import (
	"time"

	"github.com/presenced/presenced/presence"
)

// Engine is the sharded presence store. Create it with New.
type Engine struct{ cfg Config }

// New returns an empty engine configured by cfg, with defaults for zero fields.
func New(cfg Config) (*Engine, error) { return &Engine{cfg: cfg}, nil }

// Apply merges one event of tenant into the user's state and the counters.
// The event must be valid (presence.Decode or Validate) with its time resolved.
func (e *Engine) Apply(tenant string, ev *presence.Event) Result { return Applied }

// Query returns the indicator of tenant's connected users that match f.
func (e *Engine) Query(tenant string, f *Filter) Indicator { return Indicator{} }

// Expire ends the sessions older than the TTL at now and returns how many.
func (e *Engine) Expire(now time.Time) int { return 0 }

// Stats returns a copy of the engine's size and health.
func (e *Engine) Stats() Stats { return Stats{} }
