package testenv

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

// IndicatorOf is what the API must answer for an engine indicator.
func IndicatorOf(ind engine.Indicator) Indicator {
	var j Indicator
	j.ConnectedUsersCount = ind.Connected
	j.CountByChatAvailabilityStatus.Available = ind.Chat[presence.Available]
	j.CountByChatAvailabilityStatus.Busy = ind.Chat[presence.Busy]
	j.CountByChatAvailabilityStatus.ToggleOff = ind.Chat[presence.ToggleOff]
	j.UsersInProductionChatOccupancy.MaximumSimultaneousConversationAverage = ind.MaxSlotsAverage()
	j.UsersInProductionChatOccupancy.SimultaneousConversationAverage = ind.CurrentSlotsAverage()
	j.UsersInProductionChatOccupancy.OccupancyRate = ind.OccupancyRate()
	return j
}

// IndicatorQuery asks connectedUsersIndicator(filters: $f) with every
// field.
const IndicatorQuery = `query Q($f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`

// BreakdownQuery asks connectedUsersIndicatorBreakdown(by: $by, filters: $f)
// with every field of the indicator.
const BreakdownQuery = `query B($by: IndicatorDimension!, $f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicatorBreakdown(by: $by, filters: $f) {
    key
    indicator {
      connectedUsersCount
      countByChatAvailabilityStatus { available busy toggleOff }
      usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
    }
  }
}`

// DimensionNames are the IndicatorDimension values, in engine.Dimension
// order.
var DimensionNames = []string{"GROUP", "PROJECT", "ROUTING_GROUP", "ROLE", "AVAILABILITY_STATUS", "CHAT_AVAILABILITY"}
