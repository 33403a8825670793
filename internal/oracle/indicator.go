package oracle

import (
	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Indicator is a ConnectedUsersIndicator as the API answers it with every
// field asked, comparable with ==.
type Indicator struct {
	ConnectedUsersCount            int64
	CountByChatAvailabilityStatus  struct{ Available, Busy, ToggleOff int64 }
	UsersInProductionChatOccupancy struct {
		MaximumSimultaneousConversationAverage float64
		SimultaneousConversationAverage        float64
		OccupancyRate                          float64
	}
}

// Answer is what the API must answer for f over users: the sums by brute
// force (Query), then contract 3.2's formulas (AnswerOf).
func Answer(users map[string]*User, f *engine.Filter) Indicator { return AnswerOf(Query(users, f)) }

// AnswerOf applies contract 3.2's formulas to sums: over the n users in
// production on chat, sum(maxSlots)/n, sum(currentSlots)/n and
// 100 * sum(currentSlots)/sum(maxSlots), each 0 where its denominator is 0.
// It is written here, not taken from the engine, so that the tests check the
// engine's formulas rather than repeat them.
func AnswerOf(sums engine.Indicator) Indicator {
	var a Indicator
	a.ConnectedUsersCount = sums.Connected
	a.CountByChatAvailabilityStatus.Available = sums.Chat[presence.Available]
	a.CountByChatAvailabilityStatus.Busy = sums.Chat[presence.Busy]
	a.CountByChatAvailabilityStatus.ToggleOff = sums.Chat[presence.ToggleOff]
	occ := &a.UsersInProductionChatOccupancy
	if n := sums.InProduction; n > 0 {
		occ.MaximumSimultaneousConversationAverage = float64(sums.MaxSlots) / float64(n)
		occ.SimultaneousConversationAverage = float64(sums.CurrentSlots) / float64(n)
	}
	if sums.MaxSlots > 0 {
		occ.OccupancyRate = 100 * float64(sums.CurrentSlots) / float64(sums.MaxSlots)
	}
	return a
}
