package engine

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestOrdered checks the B+ tree against a sorted slice through random
// inserts, removes and seeks, with many equal times (ties by id) and ids
// that share their first 8 bytes, at sizes that make several levels.
func TestOrdered(t *testing.T) {
	for _, n := range []int{10, 300, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(n), 7))
			ids := make([]string, n) // distinct, as a tenant's are
			perm := r.Perm(10 * n)
			for i := range ids {
				ids[i] = fmt.Sprintf("user-%06d", perm[i]) // shared 8-byte prefixes
				if r.IntN(10) == 0 {
					ids[i] = fmt.Sprint(i)
				}
			}
			id := func(u uint32) string { return ids[u] }
			type key struct {
				at    int64
				unset bool
				user  uint32
			}
			less := func(a, b key) int {
				if a.unset != b.unset {
					if a.unset {
						return -1
					}
					return 1
				}
				if c := cmp.Compare(a.at, b.at); c != 0 {
					return c
				}
				return strings.Compare(ids[a.user], ids[b.user])
			}
			pr := func(k key) probe { return newProbe(k.at, k.unset, ids[k.user], k.user) }
			in := map[uint32]key{}
			var o ordered
			for step := range 20 * n {
				u := uint32(r.IntN(n))
				if k, ok := in[u]; ok && r.IntN(3) > 0 {
					if !o.remove(pr(k), id) {
						t.Fatalf("step %d: remove %v: not found", step, k)
					}
					delete(in, u)
				} else if !ok {
					k := key{at: int64(r.IntN(n / 5)), unset: r.IntN(20) == 0, user: u}
					if k.unset {
						k.at = 0
					}
					o.insert(pr(k), id)
					in[u] = k
				}
				if step%97 != 0 && step != 20*n-1 {
					continue
				}
				want := make([]key, 0, len(in))
				for _, k := range in {
					want = append(want, k)
				}
				slices.SortFunc(want, less)
				var got []uint32
				for u := range o.all() {
					got = append(got, u)
				}
				if o.n != len(want) || len(got) != len(want) {
					t.Fatalf("step %d: %d entries (n %d), want %d", step, len(got), o.n, len(want))
				}
				for i := range want {
					if got[i] != want[i].user {
						t.Fatalf("step %d: entry %d is user %d, want %d", step, i, got[i], want[i].user)
					}
				}
				if len(want) == 0 {
					continue
				}
				// Seek after a random entry, and at a key between entries.
				i := r.IntN(len(want))
				next := func(p probe, strict bool) (uint32, bool) {
					for u := range o.from(p, strict, id) {
						return u, true
					}
					return 0, false
				}
				u, ok := next(pr(want[i]), true)
				if (i+1 < len(want)) != ok || ok && u != want[i+1].user {
					t.Fatalf("step %d: after entry %d: %d %v, want entry %d", step, i, u, ok, i+1)
				}
				if u, ok := next(pr(want[i]), false); !ok || u != want[i].user {
					t.Fatalf("step %d: from entry %d: %d %v", step, i, u, ok)
				}
				ghost := newProbe(want[i].at, want[i].unset, ids[want[i].user]+"\x00", 0)
				u, ok = next(ghost, false)
				if (i+1 < len(want)) != ok || ok && u != want[i+1].user {
					t.Fatalf("step %d: after a key past entry %d: %d %v", step, i, u, ok)
				}
			}
		})
	}
}

// TestOrderedAscending inserts keys in order, as the time orders get them
// (each at the end: full nodes split unevenly), then removes every other.
func TestOrderedAscending(t *testing.T) {
	const n = 20_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%05d", i)
	}
	id := func(u uint32) string { return ids[u] }
	var o ordered
	for i := range n {
		o.insert(newProbe(int64(i), false, ids[i], uint32(i)), id)
	}
	for i := 0; i < n; i += 2 {
		if !o.remove(newProbe(int64(i), false, ids[i], uint32(i)), id) {
			t.Fatalf("remove %d: not found", i)
		}
	}
	want := uint32(1)
	for u := range o.all() {
		if u != want {
			t.Fatalf("user %d, want %d", u, want)
		}
		want += 2
	}
	if o.n != n/2 || want != n+1 {
		t.Fatalf("%d entries, walked to %d", o.n, want)
	}
	if nodes := len(o.chunks)*nodeChunk - len(o.free); nodes > 2*n/2/fanout*4 {
		t.Fatalf("%d nodes for %d entries", nodes, n/2)
	}
}
