package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	graphql "github.com/graph-gophers/graphql-go"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// MaxFirst bounds connectedUsers' first (contract section 8).
const MaxFirst = 1000

// userOrders maps the ConnectedUserOrder names to the engine's orders, and
// back by index.
var userOrders = []string{engine.ByUserID: "USER_ID", engine.ByConnectedAt: "CONNECTED_AT", engine.ByChatUpdatedAt: "CHAT_AVAILABILITY_UPDATED_AT"}

// ConnectedUsers resolves Query.connectedUsers (contract section 8).
func (q *queryResolver) ConnectedUsers(ctx context.Context, args struct {
	Filters *filtersInput
	First   int32 // graphql-go hands a defaulted argument as non-null
	After   *string
	OrderBy string
}) (*userConnection, error) {
	tenant, e, err := q.target(ctx)
	if err != nil {
		return nil, err
	}
	page := engine.Page{Order: engine.Order(len(userOrders))}
	for o, name := range userOrders {
		if name == args.OrderBy {
			page.Order = engine.Order(o)
		}
	}
	if int(page.Order) == len(userOrders) {
		return nil, &argError{arg: "orderBy", rule: "must be one of USER_ID, CONNECTED_AT, CHAT_AVAILABILITY_UPDATED_AT"}
	}
	if args.First < 1 || args.First > MaxFirst {
		return nil, &argError{arg: "first", rule: "must be 1 to " + strconv.Itoa(MaxFirst) + ", got " + strconv.Itoa(int(args.First))}
	}
	page.First = int(args.First)
	if args.After != nil {
		k, ok := decodeCursor(*args.After)
		switch {
		case !ok:
			return nil, &argError{arg: "after", rule: "not a cursor of connectedUsers"}
		case k.Order != page.Order:
			return nil, &argError{arg: "after", rule: "a cursor of orderBy " + userOrders[k.Order] + ", not " + userOrders[page.Order]}
		}
		page.After = &k
	}
	f, err := args.Filters.filter()
	if err != nil {
		return nil, err
	}
	p, err := e.Users(tenant, f, page)
	if err != nil { // unreachable: the page is checked above
		return nil, errors.New("api: " + err.Error())
	}
	return newConnection(p), nil
}

// userConnection is ConnectedUserConnection, read field by field as
// indicatorResolver is.
type userConnection struct {
	TotalCount int32
	Edges      []*userEdge
	PageInfo   *pageInfo
	info       pageInfo
}

type userEdge struct {
	Cursor string
	Node   *connectedUser
}

type pageInfo struct {
	HasNextPage bool
	EndCursor   *string
}

// connectedUser is ConnectedUser. Enum values are their GraphQL names.
type connectedUser struct {
	UserId                      graphql.ID
	Role                        *string
	AvailabilityStatus          string
	ChatAvailability            string
	MaxSlots                    int32
	CurrentSlots                int32
	GroupIds                    []graphql.ID
	ProjectIds                  []graphql.ID
	RoutingGroupIds             []graphql.ID
	ConnectedAt                 string
	AvailabilityStatusUpdatedAt *string
	ChatAvailabilityUpdatedAt   *string
	LastSeenAt                  string
}

func newConnection(p engine.UserPage) *userConnection {
	c := &userConnection{TotalCount: count(p.Total), Edges: make([]*userEdge, len(p.Users))}
	nodes := make([]connectedUser, len(p.Users))
	edges := make([]userEdge, len(p.Users))
	for i := range p.Users {
		u := &p.Users[i]
		nodes[i] = connectedUser{
			UserId:                      graphql.ID(u.UserID),
			AvailabilityStatus:          u.Availability.String(),
			ChatAvailability:            u.Chat.String(),
			MaxSlots:                    int32(u.MaxSlots),
			CurrentSlots:                int32(u.CurSlots),
			GroupIds:                    graphqlIDs(u.GroupIDs),
			ProjectIds:                  graphqlIDs(u.ProjectIDs),
			RoutingGroupIds:             graphqlIDs(u.RoutingGroupIDs),
			ConnectedAt:                 formatTime(u.ConnectedAt),
			AvailabilityStatusUpdatedAt: optionalTime(u.AvailabilityUpdatedAt),
			ChatAvailabilityUpdatedAt:   optionalTime(u.ChatUpdatedAt),
			LastSeenAt:                  formatTime(u.LastSeen),
		}
		if u.Role != presence.NoRole {
			role := u.Role.EnumName()
			nodes[i].Role = &role
		}
		edges[i] = userEdge{Cursor: encodeCursor(u.Key), Node: &nodes[i]}
		c.Edges[i] = &edges[i]
	}
	c.info.HasNextPage = p.More
	if n := len(edges); n > 0 {
		c.info.EndCursor = &edges[n-1].Cursor
	}
	c.PageInfo = &c.info
	return c
}

func graphqlIDs(ids []string) []graphql.ID {
	out := make([]graphql.ID, len(ids))
	for i, id := range ids {
		out[i] = graphql.ID(id)
	}
	return out
}

// formatTime writes t in RFC 3339, UTC.
func formatTime(t engine.Time) string {
	return time.Unix(0, t.At).UTC().Format(time.RFC3339Nano)
}

func optionalTime(t engine.Time) *string {
	if !t.Set {
		return nil
	}
	s := formatTime(t)
	return &s
}

// A cursor is base64url (no padding) of: its version (1), the order, 1 when
// the order's time is unset else 0, the time (varint, Unix ns), the user id.
// It is opaque to clients: only this package reads it.
const cursorVersion = 1

func encodeCursor(k engine.Key) string {
	b := make([]byte, 0, 3+binary.MaxVarintLen64+len(k.UserID))
	unset := byte(0)
	if k.Unset {
		unset = 1
	}
	b = append(b, cursorVersion, byte(k.Order), unset)
	b = binary.AppendVarint(b, k.At)
	b = append(b, k.UserID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor of encodeCursor; ok is false for anything
// else.
func decodeCursor(s string) (k engine.Key, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 4 || b[0] != cursorVersion || int(b[1]) >= len(userOrders) || b[2] > 1 {
		return k, false
	}
	k.Order, k.Unset = engine.Order(b[1]), b[2] == 1
	at, n := binary.Varint(b[3:])
	if n <= 0 {
		return k, false
	}
	k.At, k.UserID = at, string(b[3+n:])
	// What encodeCursor writes: no time in the user id order or when
	// unset, and a user id of the contract's length.
	if (k.Unset || k.Order == engine.ByUserID) && k.At != 0 || k.Unset && k.Order != engine.ByChatUpdatedAt ||
		len(k.UserID) == 0 || len(k.UserID) > presence.MaxUserIDLen {
		return k, false
	}
	return k, true
}
