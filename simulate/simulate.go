package simulate

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
)

// DefaultTenant is the tenant of a Config with none.
const DefaultTenant = "default"

// MaxAgents bounds Config.Agents.
const MaxAgents = 100_000

// Config configures Run.
type Config struct {
	// Agents is how many agents to simulate, agent-0001 up: 1 to MaxAgents.
	Agents int
	// Tenant is the tenant of the agents. Empty means DefaultTenant.
	Tenant string
	// Publisher publishes the events. Required.
	Publisher *publish.Publisher
	// Rand drives every choice; Run alone uses it. Nil means a randomly
	// seeded generator. A seeded one with a fake Now repeats a run.
	Rand *rand.Rand
	// Tick is the time between two batches of events. Zero means 1s.
	Tick time.Duration
	// Logger receives the start and the publish failures. Nil discards.
	Logger *slog.Logger
	// Now gives the ts of the events, read once per tick. Nil means time.Now.
	Now func() time.Time
}

// Run publishes the simulation until ctx ends, then returns nil. It returns
// an error only for an invalid cfg. A batch that is not acknowledged (NATS
// down, no stream yet) is logged and left out of the model, and the next tick
// tries again from the state last published.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	log := cfg.Logger
	agents := newAgents(cfg.Agents, cfg.Rand)
	next := make([]agent, len(agents)) // the model after the tick, until acknowledged
	var evs []presence.Event
	log.Info("simulate: publishing", "agents", cfg.Agents, "tenant", cfg.Tenant, "tick", cfg.Tick)

	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	failing := false
	// round counts the acknowledged batches: the warm-up waits for the
	// stream, should presenced create it after Run starts.
	for round := 0; ; {
		copy(next, agents)
		evs = step(next, round, cfg.Now().UnixNano(), cfg.Rand, evs[:0])
		err := cfg.Publisher.PublishBatch(ctx, cfg.Tenant, evs)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			log.Warn("simulate: publish failed, trying again every tick", "err", err)
			failing = true
		case err == nil:
			if failing {
				log.Info("simulate: publishing again")
				failing = false
			}
			agents, next = next, agents
			round++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (c *Config) setDefaults() error {
	switch {
	case c.Agents < 1 || c.Agents > MaxAgents:
		return fmt.Errorf("%w: Agents: must be from 1 to %d, not %d", ErrConfig, MaxAgents, c.Agents)
	case c.Publisher == nil:
		return fmt.Errorf("%w: Publisher: required", ErrConfig)
	case c.Tick < 0:
		return fmt.Errorf("%w: Tick: must not be negative", ErrConfig)
	}
	if c.Tenant == "" {
		c.Tenant = DefaultTenant
	}
	if !presence.ValidTenant(c.Tenant) {
		return fmt.Errorf("%w: Tenant: must be 1 to %d characters of A-Z a-z 0-9 _ -", ErrConfig, presence.MaxTenantLen)
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.Tick == 0 {
		c.Tick = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
