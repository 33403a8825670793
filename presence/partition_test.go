package presence_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// partitionTenants returns n distinct tenant tokens of every length and
// character class, and a few that are no valid tenant ids (the server hashes
// any token).
func partitionTenants(n int) []string {
	r := rand.New(rand.NewPCG(7, 7))
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	seen := map[string]bool{}
	out := []string{"a", "acme", "globex", strings.Repeat("t", presence.MaxTenantLen), "ac$me", "é", "x+y"}
	for _, t := range out {
		seen[t] = true
	}
	for len(out) < n {
		b := make([]byte, 1+r.IntN(presence.MaxTenantLen))
		for i := range b {
			b[i] = chars[r.IntN(len(chars))]
		}
		if t := string(b); !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// TestPartitionServer publishes an event for each of a few hundred tenants
// into streams that partition their subjects with the server's own
// {{partition(n,1)}} transform, reads the stored subjects back, and checks
// that their partition token is Partition's.
func TestPartitionServer(t *testing.T) {
	_, js := testenv.StartJetStream(t)
	ctx := context.Background()
	tenants := partitionTenants(300)
	for _, n := range []int{2, 3, 4, 7, 16, 100} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			name := "PART" + strconv.Itoa(n)
			prefix := "p" + strconv.Itoa(n)
			s, err := js.CreateStream(ctx, jetstream.StreamConfig{
				Name:     name,
				Subjects: []string{prefix + ".*.*"},
				SubjectTransform: &jetstream.SubjectTransformConfig{
					Source:      prefix + ".*.*",
					Destination: fmt.Sprintf("%s.{{partition(%d,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", prefix, n),
				},
				Storage: jetstream.MemoryStorage,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, tn := range tenants {
				if _, err := js.Publish(ctx, prefix+"."+tn+".login", []byte(tn)); err != nil {
					t.Fatalf("publish for %q: %v", tn, err)
				}
			}
			seen := map[int]bool{}
			for seq := uint64(1); seq <= uint64(len(tenants)); seq++ {
				m, err := s.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				tn := string(m.Data)
				tokens := strings.Split(m.Subject, ".")
				if len(tokens) != 4 || tokens[0] != prefix || tokens[2] != tn || tokens[3] != "login" {
					t.Fatalf("stored subject %q for tenant %q", m.Subject, tn)
				}
				p, err := strconv.Atoi(tokens[1])
				if err != nil {
					t.Fatalf("stored subject %q: %v", m.Subject, err)
				}
				if got := presence.Partition(tn, n); got != p {
					t.Errorf("Partition(%q, %d) = %d, the server put it in %d", tn, n, got, p)
				}
				seen[p] = true
			}
			// A few hundred tenants reach every one of a few partitions.
			if n <= 16 && len(seen) != n {
				t.Errorf("%d tenants fell in %d of %d partitions", len(tenants), len(seen), n)
			}
		})
	}
}

// TestPartition checks Partition against hash/fnv, and its cases of one
// partition.
func TestPartition(t *testing.T) {
	for _, tn := range partitionTenants(1000) {
		h := fnv.New32a()
		h.Write([]byte(tn))
		for _, n := range []int{2, 5, 64, 1 << 20} {
			if got, want := presence.Partition(tn, n), int(h.Sum32()%uint32(n)); got != want {
				t.Fatalf("Partition(%q, %d) = %d, want %d", tn, n, got, want)
			}
		}
		for _, n := range []int{-1, 0, 1} {
			if got := presence.Partition(tn, n); got != 0 {
				t.Fatalf("Partition(%q, %d) = %d, want 0", tn, n, got)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { presence.Partition("acme", 16) }); n != 0 {
		t.Errorf("Partition allocates %v times", n)
	}
}

func BenchmarkPartition(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		presence.Partition("tenant-0042", 16)
	}
}
