package testenv

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

// UsersQuery asks connectedUsers(filters: $f, first: $first, after:
// $after, orderBy: $order) with every field.
const UsersQuery = `query U($f: ConnectedUsersIndicatorFilters, $first: Int, $after: String, $order: ConnectedUserOrder) {
  connectedUsers(filters: $f, first: $first, after: $after, orderBy: $order) {
    totalCount
    edges {
      cursor
      node {
        userId role availabilityStatus chatAvailability maxSlots currentSlots
        groupIds projectIds routingGroupIds
        connectedAt availabilityStatusUpdatedAt chatAvailabilityUpdatedAt lastSeenAt
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}`

// DimensionNames are the IndicatorDimension values, in engine.Dimension
// order.
var DimensionNames = []string{"GROUP", "PROJECT", "ROUTING_GROUP", "ROLE", "AVAILABILITY_STATUS", "CHAT_AVAILABILITY"}
