package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/testenv"
)

type echo struct{ instance string }

func (e echo) ServeForwarded(_ context.Context, req api.ForwardRequest) api.Forwarded {
	return api.Forwarded{Status: 200, ContentType: "application/json",
		Body: []byte(`{"from":"` + e.instance + `","kind":"` + req.Kind + `","tenant":"` + req.Tenant + `","body":` + string(req.Body) + `}`)}
}

// TestForward checks a forwarded request on a real server: answered byte
// for byte by the holder of the partition; waited for while no holder
// answers, and answered as soon as one does; unavailable after
// UnavailableAfter.
func TestForward(t *testing.T) {
	url, _ := testenv.StartJetStream(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	results := map[string]int{}
	f := &forwarder{nc: nc, stream: "PRESENCE", count: func(r string) { results[r]++ }}
	ctx := context.Background()

	s, err := serve(ctx, nc, "PRESENCE", "a", 3, echo{"a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.forward(ctx, 3, api.ForwardRequest{Kind: api.KindGraphQL, Tenant: "acme", Body: []byte(`{"q":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"from":"a","kind":"graphql","tenant":"acme","body":{"q":1}}`; a.Status != 200 || string(a.Body) != want || a.ContentType != "application/json" {
		t.Fatalf("answer %+v %s, want %s", a, a.Body, want)
	}

	// Partition 4 has no holder until one starts serving it.
	go func() {
		time.Sleep(300 * time.Millisecond)
		if _, err := serve(ctx, nc, "PRESENCE", "b", 4, echo{"b"}, nil); err != nil {
			t.Error(err)
		}
	}()
	if a, err := f.forward(ctx, 4, api.ForwardRequest{Kind: api.KindHistory, Tenant: "globex", Body: []byte(`null`)}); err != nil || string(a.Body) != `{"from":"b","kind":"history","tenant":"globex","body":null}` {
		t.Fatalf("after the holder started: %+v %v", a, err)
	}

	s.stop()
	start := time.Now()
	if _, err := f.forward(ctx, 3, api.ForwardRequest{Kind: api.KindGraphQL, Tenant: "acme"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no holder: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited < UnavailableAfter {
		t.Fatalf("unavailable after %v, before %v", waited, UnavailableAfter)
	}
	if results["ok"] != 2 || results["unavailable"] != 1 {
		t.Fatalf("counted %v", results)
	}
}
