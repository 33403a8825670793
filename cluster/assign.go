package cluster

import (
	"hash/fnv"
	"slices"
	"strconv"
)

// Assign returns, for each of the partitions, the members that hold it: the
// copies members (all of them when fewer) of highest rendezvous score for
// the partition, best first. It is a function of its arguments alone, so
// every instance that sees the same members computes the same assignment,
// and a member joining or leaving moves only the partitions whose holders
// it is or becomes (rendezvous, or highest-random-weight, hashing).
func Assign(partitions, copies int, members []string) [][]string {
	out := make([][]string, partitions)
	if len(members) == 0 {
		return out
	}
	k := min(copies, len(members))
	type scored struct {
		name  string
		score uint64
	}
	ranked := make([]scored, len(members))
	for p := range partitions {
		for i, m := range members {
			ranked[i] = scored{m, score(p, m)}
		}
		slices.SortFunc(ranked, func(a, b scored) int {
			switch {
			case a.score > b.score:
				return -1
			case a.score < b.score:
				return 1
			}
			return compareStrings(a.name, b.name)
		})
		holders := make([]string, k)
		for i := range k {
			holders[i] = ranked[i].name
		}
		out[p] = holders
	}
	return out
}

// score is the weight of member for partition p: FNV-1a 64 of both, mixed
// so that close names and partitions spread.
func score(p int, member string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strconv.Itoa(p)))
	h.Write([]byte{0})
	h.Write([]byte(member))
	x := h.Sum64()
	// A finalizer (splitmix64's): FNV's low bits alone mix poorly.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
