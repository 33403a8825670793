package cluster

import (
	"context"
	"log/slog"
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/ingest"
	"github.com/presenced/presenced/internal/testenv"
)

// TestReconcileStopsTakingWhenMembersChange checks that a reconcile whose
// membership changed meanwhile takes one partition, not every one assigned
// to it by the members it started from: instances that start together
// would otherwise each load every partition before seeing the others.
func TestReconcileStopsTakingWhenMembersChange(t *testing.T) {
	url, js := testenv.StartJetStream(t)
	nc := connect(t, url)
	ctx := context.Background()
	icfg := ingest.Config{Stream: ingest.DefaultStream, Partitions: 4}
	if _, err := ingest.Prepare(ctx, js, icfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	n := &Node{cfg: Config{Conn: nc, JS: js, Instance: "a", Partitions: 4, Copies: 1, Replicas: 1,
		Engine: engine.Config{}, Ingest: icfg, DataDir: t.TempDir(), Logger: log},
		log: log, holders: map[int]*holder{}, wake: make(chan struct{}, 1), leave: make(chan struct{}),
		stopped: make(chan struct{}), failed: make(chan error, 1)}
	var err error
	if n.metrics, err = newNodeMetrics(nil, n); err != nil {
		t.Fatal(err)
	}
	life, end := context.WithCancel(ctx)
	defer end()
	if n.members, err = joinMembers(ctx, life, js, icfg.Stream, 1, Member{Instance: "a"}, log); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, h := range n.holders {
			h.stop(false)
		}
	}()
	changed := make(chan struct{})
	close(changed)
	n.reconcile(ctx, []Member{{Instance: "a"}}, changed)
	if len(n.holders) != 1 {
		t.Fatalf("the membership changed, and reconcile took %d partitions, want 1", len(n.holders))
	}
	n.reconcile(ctx, []Member{{Instance: "a"}}, make(chan struct{}))
	if len(n.holders) != 4 {
		t.Fatalf("a reconcile with no change took %d partitions in all, want 4", len(n.holders))
	}
}
