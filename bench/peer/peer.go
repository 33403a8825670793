package peer

import (
	"context"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Peer is one way to answer connectedUsersIndicator.
type Peer interface {
	// Name is what the tables call it.
	Name() string
	// Load applies evs, all of tenant and valid with their ts set, in
	// order, by the rules of contract section 1.2, and returns once they
	// are visible to Query.
	Load(ctx context.Context, tenant string, evs []presence.Event) error
	// Query answers the indicator of tenant's connected users that match f.
	Query(ctx context.Context, tenant string, f *engine.Filter) (engine.Indicator, error)
	// Reset forgets every user.
	Reset(ctx context.Context) error
	// Close releases the peer (not the server it talks to).
	Close() error
}

// masks are a filter's role and status lists as bit sets (bit i for the
// value i): a nil list allows everything but, for roles, a user with no
// role allows nothing once roles are given (contract section 3.1).
type masks struct{ roles, availability, chat uint8 }

func masksOf(f *engine.Filter) masks {
	m := masks{roles: 1<<presence.NumRoles - 1, availability: 1<<presence.NumStatuses - 1, chat: 1<<presence.NumStatuses - 1}
	if f.Roles != nil {
		m.roles = 0
		for _, r := range f.Roles {
			if r != presence.NoRole && r < presence.NumRoles {
				m.roles |= 1 << r
			}
		}
	}
	status := func(s []presence.Status, all uint8) uint8 {
		if s == nil {
			return all
		}
		var x uint8
		for _, v := range s {
			x |= 1 << v
		}
		return x
	}
	m.availability = status(f.AvailabilityStatus, m.availability)
	m.chat = status(f.ChatAvailability, m.chat)
	return m
}

// add counts one connected user that matches into ind.
func add(ind *engine.Indicator, chat presence.Status, maxSlots, curSlots int64) {
	ind.Connected++
	ind.Chat[chat]++
	if chat.InProduction() {
		ind.InProduction++
		ind.MaxSlots += maxSlots
		ind.CurrentSlots += curSlots
	}
}
