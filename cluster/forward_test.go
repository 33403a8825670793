package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// connect opens a connection to url, closed when the test ends.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestForward checks a forwarded request on a real server: answered byte
// for byte by the holder of the partition; waited for while no holder
// answers, and answered as soon as one does; unavailable after
// UnavailableAfter.
func TestForward(t *testing.T) {
	url, _ := testenv.StartJetStream(t)
	nc := connect(t, url)
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

// letGo is an executor that takes a while, and records whether it answered
// after its serving stopped (the partition let go of).
type letGo struct {
	echo
	gone  atomic.Bool
	after atomic.Int32
}

func (l *letGo) ServeForwarded(ctx context.Context, req api.ForwardRequest) api.Forwarded {
	time.Sleep(5 * time.Millisecond)
	if l.gone.Load() {
		l.after.Add(1)
	}
	return l.echo.ServeForwarded(ctx, req)
}

// TestForwardHandover stops one of two holders of a partition while
// requests stream in: each is answered, by one or the other, and none by
// the stopped holder once its stop returned.
func TestForwardHandover(t *testing.T) {
	url, _ := testenv.StartJetStream(t)
	ctx := context.Background()
	a, b := &letGo{echo: echo{"a"}}, &letGo{echo: echo{"b"}}
	sa, err := serve(ctx, connect(t, url), "PRESENCE", "a", 5, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serve(ctx, connect(t, url), "PRESENCE", "b", 5, b, nil); err != nil {
		t.Fatal(err)
	}
	f := &forwarder{nc: connect(t, url), stream: "PRESENCE", count: func(string) {}}
	var asked, failed atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				asked.Add(1)
				if _, err := f.forward(ctx, 5, api.ForwardRequest{Kind: api.KindGraphQL, Tenant: "acme", Body: []byte(`1`)}); err != nil {
					failed.Add(1)
					t.Error(err)
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	sa.stop()
	a.gone.Store(true)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || a.after.Load() > 0 {
		t.Fatalf("%d of %d requests failed; %d answered by a after its stop", failed.Load(), asked.Load(), a.after.Load())
	}
	t.Logf("%d requests", asked.Load())
}

// TestForwardDropped has the only holder drop the first send of a request,
// as a NATS server does with a request routed to a subscription that left
// it a moment before: the request is sent again and answered, well within
// UnavailableAfter (before, it waited for UnavailableAfter and failed).
func TestForwardDropped(t *testing.T) {
	url, _ := testenv.StartJetStream(t)
	nc := connect(t, url)
	var sends atomic.Int32
	sub, err := nc.QueueSubscribe(subject("PRESENCE", 2, api.KindGraphQL), "presenced", func(m *nats.Msg) {
		if sends.Add(1) == 1 {
			return // dropped
		}
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set(headerStatus, "200")
		reply.Data = []byte("answered")
		if err := nc.PublishMsg(reply); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	f := &forwarder{nc: connect(t, url), stream: "PRESENCE", count: func(string) {}}
	a, err := f.forward(context.Background(), 2, api.ForwardRequest{Kind: api.KindGraphQL, Tenant: "acme", Body: []byte(`{}`)})
	if err != nil || string(a.Body) != "answered" {
		t.Fatalf("answer %+v %s, %v; want answered", a, a.Body, err)
	}
	if n := sends.Load(); n != 2 {
		t.Fatalf("%d sends, want 2", n)
	}
}
