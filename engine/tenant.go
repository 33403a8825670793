package engine

import (
	"iter"
	"slices"
	"strings"
	"unsafe"

	"github.com/presenced/presenced/presence"
)

// The id dimensions: each user belongs to a set of ids in each.
const (
	dimGroups = iota
	dimProjects
	dimRoutingGroups
	numDims
)

// user is one tracked user. Its id list, at offset list in the tenant's
// lists, holds one dimension after the other the interned ids of the user's
// groups, projects and routing groups (n[d] of each), then, at the same
// offsets shifted by count, the user's position in each id's member list
// while the user is online.
type user struct {
	id    string
	state presence.State
	list  uint32
	n     [numDims]uint16
}

// count is how many ids the user has, in all dimensions.
func (u *user) count() int { return int(u.n[0]) + int(u.n[1]) + int(u.n[2]) }

// span returns where the user's ids of dimension d sit in its list.
func (u *user) span(d int) (lo, hi int) {
	for i := range d {
		lo += int(u.n[i])
	}
	return lo, lo + int(u.n[d])
}

// ref is a user with its id list at hand. It is valid until the tenant adds
// a user or a list.
type ref struct {
	*user
	ids []uint32
}

// dimIDs returns the user's ids in dimension d.
func (u ref) dimIDs(d int) []uint32 {
	lo, hi := u.span(d)
	return u.ids[lo:hi]
}

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
// Its users sit in a slab of chunks and are named by their index in it, in
// the users map and in member lists: with a million users, a pointer per
// user per list, and an object per user, made each GC cycle mark for
// hundreds of milliseconds (BenchmarkGCMark). Users are never deleted, so
// indices are never reused.
type tenant struct {
	name   string
	users  map[string]uint32
	chunks [][]user // chunkSize users each but the last
	lists  lists    // the users' id lists
	ids    arena    // the users' ids
	total  cube
	dims   [numDims]dimension
	views  viewSet
	// spans holds, under session expiry, the spans of recent events of the
	// users whose State has Gaps (see presence.State.Apply): few users, for
	// a few minutes each.
	spans map[uint32][]presence.Span
	// watches counts the open watches of the tenant's views.
	watches int
}

// chunkSize users fill one chunk: growing the slab never copies more than a
// chunk.
const chunkBits = 12
const chunkSize = 1 << chunkBits

// reserve returns c with room for n more elements, doubling its capacity up
// to size, so that a tenant of few users does not pay for a full chunk.
func reserve[T any](c []T, n, size int) []T {
	if len(c)+n <= cap(c) {
		return c
	}
	grown := make([]T, len(c), min(max(2*cap(c), len(c)+n, 8), size))
	copy(grown, c)
	return grown
}

func newTenant(name string) *tenant {
	return &tenant{name: strings.Clone(name), users: make(map[string]uint32)}
}

func (t *tenant) user(i uint32) *user { return &t.chunks[i>>chunkBits][i&(chunkSize-1)] }

// add appends u to the slab and returns its index; the caller maps its id.
// It may move the last chunk: no *user may be held across it.
func (t *tenant) add(u user) uint32 {
	k, off := extend(&t.chunks, 1, chunkSize)
	t.chunks[k][off] = u
	return uint32(k<<chunkBits + off)
}

// extend lengthens the last of chunks by n elements, or starts a new chunk
// when they do not fit in size, and returns the chunk and the offset of the
// new elements. Only the first chunk grows from small. It may move the last
// chunk.
func extend[T any](chunks *[][]T, n, size int) (k, off int) {
	k = len(*chunks) - 1
	if k < 0 || len((*chunks)[k])+n > size {
		var c []T
		if k >= 0 {
			c = make([]T, 0, size)
		}
		*chunks = append(*chunks, c)
		k++
	}
	c := &(*chunks)[k]
	off = len(*c)
	*c = reserve(*c, n, size)[:off+n]
	return k, off
}

func (t *tenant) ref(i uint32) ref {
	u := t.user(i)
	return ref{u, t.lists.get(u.list, 2*u.count())}
}

// arena holds strings in shared chunks of bytes, so that a million user ids
// are a few hundred objects for the GC, not a million. A chunk lives as long
// as a string in it does: the users own them and are never deleted.
type arena struct{ chunk []byte }

const arenaChunk = 64 << 10

// clone returns a copy of s held in a. Its bytes are never written again.
func clone[S string | []byte](a *arena, s S) string {
	if len(s) == 0 {
		return ""
	}
	if len(a.chunk)+len(s) > cap(a.chunk) {
		// Doubling up to arenaChunk, so a tenant of few users does not
		// pay for a full chunk.
		a.chunk = make([]byte, 0, max(min(2*cap(a.chunk), arenaChunk), 64, len(s)))
	}
	a.chunk = append(a.chunk, s...)
	return unsafe.String(&a.chunk[len(a.chunk)-len(s)], len(s))
}

// lists keeps a tenant's id lists in chunks of listChunk uint32s, each list
// named by its offset: a list is then neither an object nor a pointer for
// the GC to mark. A list dropped when a user's ids change is reused by the
// next list of its length.
type lists struct {
	chunks [][]uint32
	free   [][]uint32 // offsets of dropped lists, by length
}

// A list fits in a chunk: at most 2 × numDims × presence.MaxIDs long.
const listBits = 16
const listChunk = 1 << listBits

func (l *lists) get(off uint32, n int) []uint32 {
	if n == 0 {
		return nil
	}
	o := int(off & (listChunk - 1))
	return l.chunks[off>>listBits][o : o+n : o+n]
}

// alloc returns the offset of a new list of n entries. It may move the last
// chunk: no list may be held across it.
func (l *lists) alloc(n int) uint32 {
	if n == 0 {
		return 0
	}
	if n < len(l.free) && len(l.free[n]) > 0 {
		f := l.free[n]
		l.free[n] = f[:len(f)-1]
		return f[len(f)-1]
	}
	k, off := extend(&l.chunks, n, listChunk)
	return uint32(k<<listBits + off)
}

// release makes the list of n entries at off free for reuse.
func (l *lists) release(off uint32, n int) {
	if n == 0 {
		return
	}
	for len(l.free) <= n {
		l.free = append(l.free, nil)
	}
	l.free[n] = append(l.free[n], off)
}

// all yields every user of the tenant with its index.
func (t *tenant) all() iter.Seq2[uint32, *user] {
	return func(yield func(uint32, *user) bool) {
		for ci, c := range t.chunks {
			for j := range c {
				if !yield(uint32(ci<<chunkBits+j), &c[j]) {
					return
				}
			}
		}
	}
}

// count adds (sign 1) or removes (sign -1) an online user's contribution to
// every counter and view of the tenant. With members set it also adds the user
// (at index i) to, or removes it from, the member list of each of its ids.
func (t *tenant) count(i uint32, u ref, p point, sign int64, members bool) {
	t.total.add(p, sign)
	k := u.count()
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
	t.views.count(u, p, sign)
}

// removeMember swap-removes the member at pos from the list of id in
// dimension d, and records the new position of the member moved into its place.
func (t *tenant) removeMember(d int, id, pos uint32) {
	list := t.dims[d].members[id]
	last := len(list) - 1
	if moved := list[last]; int(pos) != last {
		list[pos] = moved
		t.ref(moved).setPos(d, id, pos)
	}
	t.dims[d].members[id] = list[:last]
}

// setPos records that u sits at pos in the member list of id in dimension d.
// Ids are unique within a dimension (the decoder collapses duplicates).
func (u ref) setPos(d int, id, pos uint32) {
	lo, hi := u.span(d)
	for i, x := range u.ids[lo:hi] {
		if x == id {
			u.ids[u.count()+lo+i] = pos
			return
		}
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
	u.ids = t.lists.get(u.list, 2*u.count()) // alloc may have moved it
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
	t.lists.release(u.list, 2*u.count())
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
	t.views = viewSet{}
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
