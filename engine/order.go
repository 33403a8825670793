package engine

import (
	"encoding/binary"
	"iter"
	"strings"
)

// ordered is a B+ tree of the online users of a tenant in one order, so that
// a page of connectedUsers starts at its cursor in O(log n) and reads only
// the users it shows (contract section 8). Apply keeps it: a user goes in
// when it comes online, out when it leaves, and moves when its key changes.
//
// Like the users (storage.go), its nodes hold no pointer: they sit in chunks
// named by index, the entries name users by index, and a node dropped by a
// merge is reused by the next split, so that a tenant in steady state
// allocates nothing and a million users are a few hundred objects for the
// GC. The separators of an internal node are lower bounds of its children:
// every entry of child i-1 sorts before keys[i], every entry of child i not
// before it; keys[0] is compared with nothing.
type ordered struct {
	chunks [][]node
	free   []uint32 // nodes dropped by merges, for reuse
	root   uint32
	height int // 0: empty; 1: the root is a leaf
	n      int
}

// fanout is the most entries (or children) of a node: 64 entries of 24
// bytes, 1.5 KiB, scanned by binary search.
const fanout = 64

// nodeChunk nodes fill one chunk of the slab (~115 KiB).
const nodeChunk = 64

// maxHeight bounds the tree's height: with nodes at least a quarter full
// after a merge, 16 levels hold more users than a uint32 can name.
const maxHeight = 16

type node struct {
	keys [fanout]entry
	kids [fanout]uint32 // children of an internal node
	n    int32
}

// entry is one user's place in an order: its key, then its id. The id is
// compared by its first 8 bytes, held here, and only on a tie by its bytes.
type entry struct {
	at    int64  // the order's time (Unix ns), 0 for USER_ID
	pre   uint64 // the first 8 bytes of the user id, big endian, zero padded
	user  uint32 // the user's index in the tenant
	unset bool   // the order's field was never set: before every time
}

// probe is an entry with the id it names at hand, to compare with the
// entries of a tree: a cursor's user need not be one of the tenant's.
type probe struct {
	entry
	id string
}

func newProbe(at int64, unset bool, id string, user uint32) probe {
	var b [8]byte
	copy(b[:], id)
	return probe{entry{at: at, pre: binary.BigEndian.Uint64(b[:]), user: user, unset: unset}, id}
}

// compare orders p and e: never set first, then by time, then by user id
// bytewise; id names the tenant's users.
func (p *probe) compare(e *entry, id func(uint32) string) int {
	if c := p.entry.compare(e); c != 0 {
		return c
	}
	return strings.Compare(p.id, id(e.user))
}

// before orders two probes as compare does, with no id to look up.
func (p *probe) before(q *probe) int {
	if c := p.entry.compare(&q.entry); c != 0 {
		return c
	}
	return strings.Compare(p.id, q.id)
}

// compare orders a and e as far as their fields tell: 0 when their ids'
// bytes must decide.
func (a *entry) compare(e *entry) int {
	p := a
	switch {
	case p.unset != e.unset:
		if p.unset {
			return -1
		}
		return 1
	case p.at != e.at:
		if p.at < e.at {
			return -1
		}
		return 1
	case p.pre != e.pre:
		if p.pre < e.pre {
			return -1
		}
		return 1
	}
	return 0
}

func (o *ordered) node(x uint32) *node { return &o.chunks[x/nodeChunk][x%nodeChunk] }

// alloc returns a new empty node. It may move the last chunk: no *node may
// be held across it.
func (o *ordered) alloc() uint32 {
	if k := len(o.free); k > 0 {
		x := o.free[k-1]
		o.free = o.free[:k-1]
		o.node(x).n = 0
		return x
	}
	k, off := extend(&o.chunks, 1, nodeChunk)
	return uint32(k*nodeChunk + off)
}

func (o *ordered) release(x uint32) { o.free = append(o.free, x) }

// child returns the child of internal node nd where p belongs.
func (nd *node) child(p *probe, id func(uint32) string) int {
	lo, hi := 1, int(nd.n) // the last i >= 1 with keys[i] <= p, else 0
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.compare(&nd.keys[m], id) >= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// search returns the first position of leaf nd whose entry does not sort
// before p (after, when strict).
func (nd *node) search(p *probe, strict bool, id func(uint32) string) int {
	lo, hi := 0, int(nd.n)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		c := p.compare(&nd.keys[m], id)
		if c > 0 || strict && c == 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// step is one level of a path from the root: a node and the position taken
// in it.
type step struct {
	node uint32
	pos  int
}

// descend fills path with the way from the root to the leaf where p
// belongs, leaf last, and returns its length.
func (o *ordered) descend(p *probe, path *[maxHeight]step, id func(uint32) string) int {
	x := o.root
	for h := range o.height - 1 {
		nd := o.node(x)
		i := nd.child(p, id)
		path[h] = step{x, i}
		x = nd.kids[i]
	}
	path[o.height-1] = step{node: x}
	return o.height
}

// insert adds p, which must not be in the tree.
func (o *ordered) insert(p probe, id func(uint32) string) {
	o.n++
	if o.height == 0 {
		o.root, o.height = o.alloc(), 1
		nd := o.node(o.root)
		nd.keys[0], nd.n = p.entry, 1
		return
	}
	var path [maxHeight]step
	h := o.descend(&p, &path, id) - 1
	leaf := o.node(path[h].node)
	at := leaf.search(&p, false, id)
	// Put (key, kid) at position at of the node at level h, splitting full
	// nodes on the way up.
	key, kid := p.entry, uint32(0)
	for {
		x := path[h].node
		if nd := o.node(x); nd.n < fanout {
			nd.put(at, key, kid, h < o.height-1)
			return
		}
		right := o.alloc()
		nd, rn := o.node(x), o.node(right)
		// In half, but for a key past the last: the time orders take
		// every event's user at the end, and a full left node stays
		// full instead of half empty for good.
		half := int32(fanout / 2)
		if at == fanout {
			half = fanout
		}
		copy(rn.keys[:], nd.keys[half:])
		copy(rn.kids[:], nd.kids[half:])
		rn.n, nd.n = fanout-half, half
		internal := h < o.height-1
		if at < int(half) || at == int(half) && half < fanout {
			nd.put(at, key, kid, internal)
		} else {
			rn.put(at-int(half), key, kid, internal)
		}
		key, kid = rn.keys[0], right
		if h == 0 {
			root := o.alloc()
			r := o.node(root)
			r.keys[0], r.kids[0] = o.node(x).keys[0], x
			r.keys[1], r.kids[1], r.n = key, kid, 2
			o.root = root
			o.height++
			return
		}
		h--
		at = path[h].pos + 1
	}
}

// put inserts key (and, in an internal node, kid) at position i of a node
// that has room.
func (nd *node) put(i int, key entry, kid uint32, internal bool) {
	copy(nd.keys[i+1:nd.n+1], nd.keys[i:nd.n])
	nd.keys[i] = key
	if internal {
		copy(nd.kids[i+1:nd.n+1], nd.kids[i:nd.n])
		nd.kids[i] = kid
	}
	nd.n++
}

// cut removes position i of a node.
func (nd *node) cut(i int) {
	copy(nd.keys[i:], nd.keys[i+1:nd.n])
	copy(nd.kids[i:], nd.kids[i+1:nd.n])
	nd.n--
}

// remove takes out p, which must be in the tree; it reports whether it was.
// A node left under a quarter full is merged with a sibling when the two fit
// in one.
func (o *ordered) remove(p probe, id func(uint32) string) bool {
	if o.height == 0 {
		return false
	}
	var path [maxHeight]step
	h := o.descend(&p, &path, id) - 1
	leaf := o.node(path[h].node)
	i := leaf.search(&p, false, id)
	if i == int(leaf.n) || p.compare(&leaf.keys[i], id) != 0 {
		return false
	}
	leaf.cut(i)
	o.n--
	for ; h > 0; h-- {
		x, up := path[h].node, path[h-1]
		nd, parent := o.node(x), o.node(up.node)
		if nd.n >= fanout/4 {
			break
		}
		switch {
		case nd.n == 0:
			parent.cut(up.pos)
			o.release(x)
		case up.pos+1 < int(parent.n) && nd.n+o.node(parent.kids[up.pos+1]).n <= fanout:
			o.merge(parent, up.pos, h < o.height-1)
		case up.pos > 0 && nd.n+o.node(parent.kids[up.pos-1]).n <= fanout:
			o.merge(parent, up.pos-1, h < o.height-1)
		default:
			return true
		}
	}
	for o.height > 1 && o.node(o.root).n == 1 {
		old := o.root
		o.root = o.node(old).kids[0]
		o.height--
		o.release(old)
	}
	if o.height == 1 && o.node(o.root).n == 0 {
		o.release(o.root)
		o.root, o.height = 0, 0
	}
	return true
}

// merge moves child i+1 of parent into child i and drops it. The right
// child's first key becomes a separator inside the left one: in an internal
// node it is replaced by the parent's, which bounds every entry below it.
func (o *ordered) merge(parent *node, i int, internal bool) {
	lx, rx := parent.kids[i], parent.kids[i+1]
	l, r := o.node(lx), o.node(rx)
	if internal {
		r.keys[0] = parent.keys[i+1]
	}
	copy(l.keys[l.n:], r.keys[:r.n])
	copy(l.kids[l.n:], r.kids[:r.n])
	l.n += r.n
	parent.cut(i + 1)
	o.release(rx)
}

// from yields the users from the first entry not before p (after p, when
// strict), in order.
func (o *ordered) from(p probe, strict bool, id func(uint32) string) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		if o.height == 0 {
			return
		}
		var path [maxHeight]step
		h := o.descend(&p, &path, id) - 1
		leaf := o.node(path[h].node)
		path[h].pos = leaf.search(&p, strict, id)
		for {
			nd := o.node(path[h].node)
			for i := path[h].pos; i < int(nd.n); i++ {
				if !yield(nd.keys[i].user) {
					return
				}
			}
			// Up to the first level with a next child, then down its
			// leftmost path.
			k := h - 1
			for k >= 0 && path[k].pos+1 >= int(o.node(path[k].node).n) {
				k--
			}
			if k < 0 {
				return
			}
			path[k].pos++
			for ; k < h; k++ {
				path[k+1] = step{node: o.node(path[k].node).kids[path[k].pos]}
			}
		}
	}
}

// all yields every user in order.
func (o *ordered) all() iter.Seq[uint32] {
	return o.from(probe{entry: entry{unset: true, at: -1 << 63}}, false, func(uint32) string { return "" })
}
