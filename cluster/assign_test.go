package cluster

import (
	"fmt"
	"slices"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("host-%d:8080", i)
	}
	return out
}

func TestAssign(t *testing.T) {
	for _, tc := range []struct{ partitions, copies, members int }{
		{1, 2, 1}, {1, 2, 3}, {16, 2, 3}, {16, 3, 3}, {64, 2, 10}, {16, 5, 2},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			m := names(tc.members)
			a := Assign(tc.partitions, tc.copies, m)
			if len(a) != tc.partitions {
				t.Fatalf("%d partitions assigned, want %d", len(a), tc.partitions)
			}
			load := map[string]int{}
			for p, holders := range a {
				if want := min(tc.copies, tc.members); len(holders) != want {
					t.Fatalf("partition %d: %d holders, want %d", p, len(holders), want)
				}
				seen := map[string]bool{}
				for _, h := range holders {
					if seen[h] || !slices.Contains(m, h) {
						t.Fatalf("partition %d: holders %v", p, holders)
					}
					seen[h] = true
					load[h]++
				}
			}
			// The same members in another order give the same assignment.
			shuffled := slices.Clone(m)
			slices.Reverse(shuffled)
			if again := Assign(tc.partitions, tc.copies, shuffled); !slices.EqualFunc(a, again, slices.Equal) {
				t.Fatal("the assignment depends on the order of the members")
			}
		})
	}
}

// TestAssignMovesLittle checks what rendezvous hashing promises: a member
// leaving moves only the copies it held, and a member joining takes copies
// only for itself.
func TestAssignMovesLittle(t *testing.T) {
	const partitions, copies = 256, 2
	m := names(6)
	before := Assign(partitions, copies, m)
	after := Assign(partitions, copies, m[1:]) // m[0] leaves
	for p := range partitions {
		for _, h := range before[p] {
			if h != m[0] && !slices.Contains(after[p], h) {
				t.Fatalf("partition %d: %s lost it though it did not leave (%v -> %v)", p, h, before[p], after[p])
			}
		}
	}
	joined := Assign(partitions, copies, append(slices.Clone(m), "newcomer:8080"))
	moved, took := 0, 0
	for p := range partitions {
		for _, h := range joined[p] {
			if !slices.Contains(before[p], h) {
				if h != "newcomer:8080" {
					t.Fatalf("partition %d: %s gained it when another joined", p, h)
				}
				took++
			}
		}
		for _, h := range before[p] {
			if !slices.Contains(joined[p], h) {
				moved++
			}
		}
	}
	// The newcomer's fair share is one seventh of the copies (14%).
	if share := float64(took) / float64(partitions*copies); took != moved || share < 0.09 || share > 0.2 {
		t.Fatalf("the newcomer took %d copies (%.0f%%), %d moved", took, 100*share, moved)
	}
}
