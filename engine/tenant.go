package engine

import (
	"slices"
	"strings"

	"github.com/presenced/presenced/presence"
)

// The id dimensions: each user belongs to a set of ids in each.
const (
	dimGroups = iota
	dimProjects
	dimRoutingGroups
	numDims
)

// dimension interns the ids of one dimension of one tenant and keeps, per id,
// the counters and the online members that carry it.
type dimension struct {
	index   map[string]uint32
	names   []string
	cubes   []*cube    // nil until a user with the id comes online
	members [][]uint32 // indices of the online users with the id; for building views
}

// intern returns the id of name, creating it when create is set.
func (d *dimension) intern(name string, create bool) (uint32, bool) {
	if id, ok := d.index[name]; ok {
		return id, true
	}
	if !create {
		return 0, false
	}
	if d.index == nil {
		d.index = make(map[string]uint32)
	}
	id := uint32(len(d.names))
	name = strings.Clone(name) // the event's strings alias its message buffer
	d.index[name] = id
	d.names = append(d.names, name)
	d.cubes = append(d.cubes, nil)
	d.members = append(d.members, nil)
	return id, true
}

// intern returns the id of name in dimension d, interning it if it is new:
// only events intern. A new id goes at once to the watched views waiting for
// its name.
func (t *tenant) intern(d int, name string) uint32 {
	if id, ok := t.dims[d].intern(name, false); ok {
		return id
	}
	id, _ := t.dims[d].intern(name, true)
	t.views.resolve(d, t.dims[d].names[id], id)
	return id
}

func (d *dimension) cube(id uint32) *cube {
	c := d.cubes[id]
	if c == nil {
		c = new(cube)
		d.cubes[id] = c
	}
	return c
}

// tenant is all the state of one tenant. It is guarded by its shard's lock.
//
// A tenant with no user exists only for its open watches: it is left out of
// Stats and snapshots, and leaves its shard with its last watch, as a tenant
// that only requests name costs nothing that outlives them (contract section
// 3.1). The first event of it makes it an ordinary tenant.
//
// Its users are stored without a pointer per user, named by their index:
// storage.go draws the layout and gives its rules.
type tenant struct {
	name   string
	users  map[string]uint32
	chunks [][]user // chunkSize users each but the last
	lists  lists    // the users' id lists
	ids    arena    // the users' ids
	total  cube
	dims   [numDims]dimension
	views  viewSet
	// orders holds the online users in each Order, for connectedUsers.
	orders [numOrders]ordered
	// idOf returns the id of the user at an index, for the orders.
	idOf func(uint32) string
	// spans holds, under session expiry, the spans of recent events of the
	// users whose State has Gaps (see presence.State.Apply): few users, for
	// a few minutes each.
	spans map[uint32][]presence.Span
	// watches counts the open watches of the tenant's views.
	watches int
	// cuts are the snapshot cuts of the tenant that are being written:
	// Apply and Expire copy a user for them before they change it.
	cuts []*tenantCut
	// scans are the long reads under way (see scan): countUser passes
	// every change on to them.
	scans []*scan
}

func newTenant(name string) *tenant {
	t := &tenant{name: strings.Clone(name), users: make(map[string]uint32)}
	t.idOf = func(i uint32) string { return t.user(i).id }
	return t
}

// countUser adds (sign 1) or removes (sign -1) an online user's contribution to
// every counter and view of the tenant. With members set it also adds the user
// (at index i) to, or removes it from, the member list of each of its ids.
func (t *tenant) countUser(i uint32, u ref, p point, sign int64, members bool) {
	t.total.add(p, sign)
	k := u.idCount()
	pos := u.ids[k:]
	j := 0
	for d := range numDims {
		dim := &t.dims[d]
		for range u.n[d] {
			id := u.ids[j]
			dim.cube(id).add(p, sign)
			if members {
				if sign > 0 {
					pos[j] = uint32(len(dim.members[id]))
					dim.members[id] = append(dim.members[id], i)
				} else {
					t.removeMember(d, id, pos[j])
				}
			}
			j++
		}
	}
	t.views.countUser(u, p, sign)
	for _, sc := range t.scans {
		sc.touch(i, u, p, sign)
	}
}

// setIDs replaces the user's ids of the dimensions in dims with those of ev.
// The user must be offline in the counters while this runs.
func (t *tenant) setIDs(u *ref, ev *presence.Event, set presence.Fields) {
	var lists [numDims][]string
	var replace [numDims]bool
	for d, f := range [numDims]presence.Fields{presence.HasGroups, presence.HasProjects, presence.HasRoutingGroups} {
		replace[d] = set&f != 0
	}
	lists[dimGroups], lists[dimProjects], lists[dimRoutingGroups] = ev.GroupIDs, ev.ProjectIDs, ev.RoutingGroupIDs

	total := 0
	var n [numDims]uint16
	for d := range numDims {
		if replace[d] {
			n[d] = uint16(len(lists[d]))
		} else {
			n[d] = u.n[d]
		}
		total += int(n[d])
	}
	list := t.lists.alloc(2 * total)
	ids := t.lists.get(list, 2*total)
	u.ids = t.lists.get(u.list, 2*u.idCount()) // alloc may have moved it
	i := 0
	for d := range numDims {
		if replace[d] {
			for _, name := range lists[d] {
				ids[i] = t.intern(d, name)
				i++
			}
		} else {
			i += copy(ids[i:], u.dimIDs(d))
		}
	}
	t.lists.release(u.list, 2*u.idCount())
	u.list, u.ids, u.n = list, ids, n
}

// reset empties t but for its watched views: each forgets its ids for their
// names, which it waits for again, and its value becomes zero, which wakes
// its watchers. Every other view goes.
func (t *tenant) reset(limit int) {
	old, views := t.dims, t.views.list
	t.users = make(map[string]uint32)
	t.chunks, t.lists, t.ids = nil, lists{}, arena{}
	t.total, t.dims, t.spans = cube{}, [numDims]dimension{}, nil
	t.orders = [numOrders]ordered{}
	t.views, t.cuts = viewSet{}, nil
	t.abortScans()
	for _, v := range views {
		if v.watchers == 0 {
			continue
		}
		for d, ids := range v.filter.ids {
			for _, id := range ids {
				v.pending[d] = append(v.pending[d], old[d].names[id])
			}
			slices.Sort(v.pending[d])
			if ids != nil {
				v.filter.ids[d] = ids[:0]
			}
		}
		v.setAnchor()
		v.key = string(appendKey(nil, &v.filter, &v.pending))
		v.value, v.touched = Indicator{}, true
		t.views.add(v, limit)
		t.views.touched = append(t.views.touched, v)
	}
	t.views.notify()
}
