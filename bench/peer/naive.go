package peer

import (
	"context"
	"slices"
	"sync"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// Naive keeps every user in memory, in a slice per tenant with a map from id
// to index, and answers a query by scanning all the tenant's users (a
// userIds filter looks its users up in the map instead). It reuses
// presence.State for the per-field last-writer-wins rule.
type Naive struct {
	mu      sync.RWMutex
	tenants map[string]*naiveTenant
}

type naiveTenant struct {
	index map[string]int
	users []naiveUser
}

type naiveUser struct {
	id                        string
	state                     presence.State
	groups, projects, routing []string
}

var _ Peer = (*Naive)(nil)

// NewNaive returns an empty Naive.
func NewNaive() *Naive { return &Naive{tenants: map[string]*naiveTenant{}} }

func (n *Naive) Name() string { return "Go naive scan" }

func (n *Naive) Load(_ context.Context, tenant string, evs []presence.Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.tenants[tenant]
	if t == nil {
		t = &naiveTenant{index: map[string]int{}}
		n.tenants[tenant] = t
	}
	for i := range evs {
		ev := &evs[i]
		k, ok := t.index[ev.UserID]
		if !ok {
			k = len(t.users)
			t.index[ev.UserID] = k
			t.users = append(t.users, naiveUser{id: ev.UserID})
		}
		u := &t.users[k]
		_, set := u.state.Apply(ev, presence.Expiry{}, nil)
		if set&presence.HasGroups != 0 {
			u.groups = slices.Clone(ev.GroupIDs)
		}
		if set&presence.HasProjects != 0 {
			u.projects = slices.Clone(ev.ProjectIDs)
		}
		if set&presence.HasRoutingGroups != 0 {
			u.routing = slices.Clone(ev.RoutingGroupIDs)
		}
	}
	return nil
}

func (n *Naive) Query(_ context.Context, tenant string, f *engine.Filter) (engine.Indicator, error) {
	var ind engine.Indicator
	n.mu.RLock()
	defer n.mu.RUnlock()
	t := n.tenants[tenant]
	if t == nil {
		return ind, nil
	}
	m := masksOf(f)
	match := func(u *naiveUser) {
		s := &u.state
		if !s.Online() || m.roles&(1<<s.Role) == 0 || m.availability&(1<<s.Availability) == 0 || m.chat&(1<<s.Chat) == 0 ||
			!overlaps(f.GroupIDs, u.groups) || !overlaps(f.ProjectIDs, u.projects) || !overlaps(f.RoutingGroupIDs, u.routing) {
			return
		}
		add(&ind, s.Chat, int64(s.MaxSlots), int64(s.CurrentSlots))
	}
	if f.UserIDs != nil {
		ids := slices.Clone(f.UserIDs)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			if k, ok := t.index[id]; ok {
				match(&t.users[k])
			}
		}
		return ind, nil
	}
	for i := range t.users {
		match(&t.users[i])
	}
	return ind, nil
}

// overlaps reports the contract's list rule: nil is no constraint.
func overlaps(want, have []string) bool {
	if want == nil {
		return true
	}
	for _, w := range want {
		if slices.Contains(have, w) {
			return true
		}
	}
	return false
}

func (n *Naive) Reset(context.Context) error {
	n.mu.Lock()
	n.tenants = map[string]*naiveTenant{}
	n.mu.Unlock()
	return nil
}

func (n *Naive) Close() error { return nil }
