package oracle

import (
	"cmp"
	"slices"
	"strings"

	"github.com/presenced/presenced/engine"
)

// Users answers connectedUsers by brute force: every connected user of
// users that matches f, as the engine copies it, sorted by contract section
// 8 read literally (ties by user id, a time never set before every time).
// The Key of each is its place in order.
func Users(users map[string]*User, f *engine.Filter, order engine.Order) []engine.ConnectedUser {
	var out []engine.ConnectedUser
	for id, u := range users {
		if !matches(id, u, f) {
			continue
		}
		cu := engine.ConnectedUser{
			UserID:          id,
			Role:            u.role,
			Availability:    u.availability,
			Chat:            u.chat,
			MaxSlots:        int(u.maxS),
			CurSlots:        int(u.curS),
			GroupIDs:        sorted(u.groups),
			ProjectIDs:      sorted(u.projects),
			RoutingGroupIDs: sorted(u.routing),
			ConnectedAt:     engine.Time{At: u.ts[0], Set: true},
			LastSeen:        engine.Time{At: u.lastSeen, Set: true},
		}
		if u.set[5] {
			cu.AvailabilityUpdatedAt = engine.Time{At: u.ts[5], Set: true}
		}
		if u.set[6] {
			cu.ChatUpdatedAt = engine.Time{At: u.ts[6], Set: true}
		}
		cu.Key = engine.Key{Order: order, UserID: id}
		switch order {
		case engine.ByConnectedAt:
			cu.Key.At = u.ts[0]
		case engine.ByChatUpdatedAt:
			cu.Key.At, cu.Key.Unset = u.ts[6], !u.set[6]
		}
		out = append(out, cu)
	}
	slices.SortFunc(out, func(a, b engine.ConnectedUser) int { return CompareKeys(a.Key, b.Key) })
	return out
}

// CompareKeys orders two keys of one order as contract section 8 does.
func CompareKeys(a, b engine.Key) int {
	if a.Unset != b.Unset {
		if a.Unset {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.At, b.At); c != 0 {
		return c
	}
	return strings.Compare(a.UserID, b.UserID)
}

// sorted returns a sorted copy of ids, never nil.
func sorted(ids []string) []string {
	out := append([]string{}, ids...)
	slices.Sort(out)
	return out
}
