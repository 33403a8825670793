package cluster

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/presenced/presenced/internal/testenv"
)

func memberNames(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Instance)
	}
	return out
}

// TestMembers checks the membership on a real server: members see each
// other, a member's readiness reaches the others, a member leaving is gone
// at once, and a member that stops refreshing its key (killed) is gone once
// the key expires.
func TestMembers(t *testing.T) {
	_, js := testenv.StartJetStream(t)
	log := slog.New(slog.DiscardHandler)
	join := func(name string) (*members, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		m, err := joinMembers(ctx, ctx, js, "PRESENCE", 1, Member{Instance: name, HTTP: name + ":8080"}, log)
		if err != nil {
			t.Fatal(err)
		}
		return m, cancel
	}
	sees := func(m *members, want ...string) func() bool {
		return func() bool {
			live, _ := m.snapshot()
			return slices.Equal(memberNames(live), want)
		}
	}
	a, _ := join("a")
	b, _ := join("b")
	c, killC := join("c")
	testenv.WaitFor(t, "a to see a, b and c", sees(a, "a", "b", "c"))
	testenv.WaitFor(t, "c to see a, b and c", sees(c, "a", "b", "c"))

	b.setReady([]int{0, 2})
	testenv.WaitFor(t, "a to see b ready for 0 and 2", func() bool {
		live, _ := a.snapshot()
		return len(live) == 3 && slices.Equal(live[1].Ready, []int{0, 2})
	})

	if err := b.leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "a to see b leave", sees(a, "a", "c"))

	killC() // no goodbye: c's key expires
	c.beating.Wait()
	start := time.Now()
	testenv.WaitFor(t, "a to see c gone", sees(a, "a"))
	t.Logf("a member killed was gone for the others after %v (its key's TTL is %v)", time.Since(start).Round(time.Millisecond), memberTTL)
}
