package engine

import (
	"iter"
	"unsafe"

	"github.com/presenced/presenced/presence"
)

// A tenant keeps its users in structures that hold no pointer per user, so
// that a million users are a few thousand objects for the garbage collector
// (BenchmarkGCMark: 18 ms per full GC, against 246 ms with a pointer per
// user per list). Everything is named by an index or an offset:
//
//	users map[string]uint32 ──► i, the user's index, never reused
//	chunks [][]user          i>>chunkBits picks the chunk, i&(chunkSize-1) the user
//	  user{id, state, list, n[3]}
//	    id    ──► bytes in the tenant's arena (64 KiB chunks)
//	    list  ──► offset of the user's id list in lists (chunks of 64 Ki uint32)
//	    n[d]  = how many ids the user has in dimension d (groups, projects,
//	            routing groups)
//	  the id list, 2 × (n[0]+n[1]+n[2]) entries:
//	    [ g1 g2 | p1 | r1 r2 ][ pos g1  pos g2 | pos p1 | pos r1  pos r2 ]
//	      interned ids,         while the user is online, its position in
//	      by dimension          each id's member list
//	dims[d].members[id] []uint32: the indices of the online users with id
//
// The rules that keep it right: a user's list is reallocated (and the old
// one freed for reuse) whenever its ids change, with the user out of the
// counters; adding a user or a list may move the last chunk, so no *user or
// list slice is held across it (ref is valid until then); a member moved
// within a member list gets its new position written back (setPos).

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

// idCount is how many ids the user has, in all dimensions.
func (u *user) idCount() int { return int(u.n[0]) + int(u.n[1]) + int(u.n[2]) }

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
	return ref{u, t.lists.get(u.list, 2*u.idCount())}
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
			u.ids[u.idCount()+lo+i] = pos
			return
		}
	}
}
