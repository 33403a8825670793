package engine

import (
	"time"

	"github.com/presenced/presenced/presence"
)

// Config configures an Engine. The zero value is valid.
type Config struct {
	// SessionTTL ends the session of a connected user whose newest event is
	// older than this (contract section 1.3). Zero: sessions never expire.
	SessionTTL time.Duration
	// MaxLate is how long after its ts an event may be stored and still
	// have, under session expiry, the effect it would have had in ts order
	// (presence.Expiry.Late): each user keeps the spans of its recent events
	// that long. The program sets it to its -max-clock-skew. Zero: an event
	// that arrives after a newer one ended its session cannot undo that.
	MaxLate time.Duration
	// MaxViews bounds the filter views kept per tenant; the least recently
	// used view goes first. Zero means 256.
	MaxViews int
	// Now is the clock used by Apply to judge session expiry. Nil means
	// time.Now.
	Now func() time.Time
}

// Result says what became of an applied event (contract section 1.2).
type Result uint8

// The results of Apply. Rejected events never reach the engine.
const (
	// Applied: the event set at least one field, or carried none.
	Applied Result = iota
	// Stale: every field the event carried was older than the user's.
	Stale
)

func (r Result) String() string {
	if r == Stale {
		return "stale"
	}
	return "applied"
}

// Filter selects users (contract section 3.1). A nil slice puts no constraint;
// an empty non-nil slice matches no user. Fields combine with AND, the values
// of one slice with OR. Only connected users are ever counted.
type Filter struct {
	AvailabilityStatus []presence.Status
	ChatAvailability   []presence.Status
	Roles              []presence.Role
	GroupIDs           []string
	ProjectIDs         []string
	RoutingGroupIDs    []string
	UserIDs            []string
}

// Indicator is what connectedUsersIndicator reports for the connected users
// that match a filter (contract section 3.2).
type Indicator struct {
	// Connected counts the users.
	Connected int64
	// Chat counts them by chat availability, indexed by presence.Status.
	Chat [presence.NumStatuses]int64
	// InProduction counts those in production on chat (chat AVAILABLE or BUSY);
	// MaxSlots and CurrentSlots are their sums of chat.maxSlots and
	// chat.currentSlots.
	InProduction int64
	MaxSlots     int64
	CurrentSlots int64
}

// MaxSlotsAverage is maximumSimultaneousConversationAverage: sum(maxSlots)/n
// over the n users in production, 0 when n is 0.
func (i Indicator) MaxSlotsAverage() float64 { return ratio(i.MaxSlots, i.InProduction) }

// CurrentSlotsAverage is simultaneousConversationAverage: sum(currentSlots)/n
// over the n users in production, 0 when n is 0.
func (i Indicator) CurrentSlotsAverage() float64 { return ratio(i.CurrentSlots, i.InProduction) }

// OccupancyRate is 100 * sum(currentSlots) / sum(maxSlots) over the users in
// production, 0 when sum(maxSlots) is 0.
//
// It is computed in the contract's order, (100 * sum) / sum, which is not
// always the same float as 100 * (sum / sum).
func (i Indicator) OccupancyRate() float64 { return ratio(100*i.CurrentSlots, i.MaxSlots) }

func ratio(num, den int64) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// Stats is a point-in-time copy of the engine's size and health, for metrics.
// A tenant that only watches name, with no event yet, is not counted.
type Stats struct {
	Users   int // users tracked, connected or not
	Tenants int
	// IDs counts the interned group, project and routing-group ids over all
	// tenants: only events intern, so it grows with the ids events name.
	IDs int
	// Views counts the filter views kept; ViewHits and ViewMisses count the
	// queries answered from an existing view and those that built one.
	Views      int
	ViewHits   uint64
	ViewMisses uint64
	// PerTenant holds one entry per tenant, sorted by tenant.
	PerTenant []TenantStats
}

// TenantStats is one tenant's share of Stats.
type TenantStats struct {
	Tenant string
	Users  int       // users tracked
	Total  Indicator // over all connected users of the tenant
}
