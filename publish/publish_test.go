package publish_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
)

func TestNew(t *testing.T) {
	js := startJS(t)
	tests := []struct {
		name   string
		js     jetstream.JetStream
		prefix string
		want   string // the prefix, or the text of the error
	}{
		{"default", js, "", "presence"},
		{"custom", js, "acme.presence", "acme.presence"},
		{"no js", nil, "", "publish: invalid config: js: required"},
		{"wildcard", js, "acme.*", "publish: invalid config: presence: prefix: must be a NATS subject of literal tokens"},
		{"empty token", js, "acme..presence", "publish: invalid config: presence: prefix: must be a NATS subject of literal tokens"},
		{"trailing dot", js, "presence.", "publish: invalid config: presence: prefix: must be a NATS subject of literal tokens"},
		{"space", js, "pres ence", "publish: invalid config: presence: prefix: must be a NATS subject of literal tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := publish.New(tt.js, tt.prefix)
			if err != nil {
				if !errors.Is(err, publish.ErrConfig) || err.Error() != tt.want {
					t.Fatalf("New: %v, want %q matching ErrConfig", err, tt.want)
				}
				return
			}
			if p.Prefix() != tt.want {
				t.Fatalf("Prefix() = %q, want %q", p.Prefix(), tt.want)
			}
		})
	}
}

// Every event lands in the stream, in order, on its subject, and decodes back
// to itself.
func TestPublish(t *testing.T) {
	for _, prefix := range []string{"presence", "acme.presence"} {
		t.Run(prefix, func(t *testing.T) {
			js := startJS(t)
			stream := createStream(t, js, prefix)
			pub, err := publish.New(js, prefix)
			if err != nil {
				t.Fatal(err)
			}
			evs := events("u")
			for i := range evs {
				if err := pub.Publish(context.Background(), "tenant_A-1", &evs[i]); err != nil {
					t.Fatalf("Publish %d: %v", i, err)
				}
			}
			got := readStream(t, stream, prefix)
			if len(got) != len(evs) {
				t.Fatalf("stream has %d messages, want %d", len(got), len(evs))
			}
			for i, g := range got {
				want := prefix + ".tenant_A-1." + evs[i].Type.String()
				if g.Subject != want {
					t.Errorf("message %d: subject %q, want %q", i, g.Subject, want)
				}
				if !sameEvent(&g.Ev, &evs[i]) {
					t.Errorf("message %d decodes to\n%+v\nwant\n%+v", i, g.Ev, evs[i])
				}
			}
		})
	}
}

// An invalid event or tenant is refused with the FieldError the engine would
// give, and nothing is published.
func TestPublishInvalid(t *testing.T) {
	js := startJS(t)
	stream := createStream(t, js, "presence")
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}
	valid := presence.Event{Type: presence.Heartbeat, UserID: "42"}
	tests := []struct {
		name   string
		tenant string
		edit   func(*presence.Event)
		field  string
	}{
		{"no userId", "acme", func(ev *presence.Event) { ev.UserID = "" }, "userId"},
		{"long userId", "acme", func(ev *presence.Event) { ev.UserID = strings.Repeat("x", 129) }, "userId"},
		{"no type", "acme", func(ev *presence.Event) { ev.Type = 0 }, "type"},
		{"bad type", "acme", func(ev *presence.Event) { ev.Type = presence.NumTypes }, "type"},
		{"bad role", "acme", func(ev *presence.Event) { ev.Fields |= presence.HasRole }, "role"},
		{"bad id", "acme", func(ev *presence.Event) {
			ev.Fields |= presence.HasGroups
			ev.GroupIDs = []string{"g1", ""}
		}, "groupIds[1]"},
		{"max slots", "acme", func(ev *presence.Event) {
			ev.Fields |= presence.HasMaxSlots
			ev.MaxSlots = 1001
		}, "chat.maxSlots"},
		{"no tenant", "", func(*presence.Event) {}, "tenantId"},
		{"tenant with dot", "a.b", func(*presence.Event) {}, "tenantId"},
		{"tenant wildcard", "*", func(*presence.Event) {}, "tenantId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := valid
			tt.edit(&ev)
			check := func(what string, err error) {
				t.Helper()
				var fe *presence.FieldError
				if !errors.Is(err, publish.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("%s: %v, want ErrInvalid wrapping a FieldError on %s", what, err, tt.field)
				}
			}
			check("Publish", pub.Publish(context.Background(), tt.tenant, &ev))
			batch := []presence.Event{valid, valid, ev}
			err := pub.PublishBatch(context.Background(), tt.tenant, batch)
			check("PublishBatch", err)
			if tt.field != "tenantId" && !strings.Contains(err.Error(), "evs[2]") {
				t.Errorf("PublishBatch: %v does not name evs[2]", err)
			}
		})
	}
	if got := readStream(t, stream, "presence"); len(got) != 0 {
		t.Fatalf("stream has %d messages, want none", len(got))
	}
}

// Without a stream to capture the subject there is no ack: an error, not a
// silent loss.
func TestPublishNoStream(t *testing.T) {
	js := startJS(t)
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}
	evs := events("u")
	err = pub.Publish(context.Background(), "acme", &evs[0])
	if !errors.Is(err, publish.ErrNotAcked) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("Publish: %v, want ErrNotAcked wrapping jetstream.ErrNoStreamResponse", err)
	}
	if !strings.Contains(err.Error(), "presence.acme.login") {
		t.Errorf("Publish: %v does not name the subject", err)
	}
	err = pub.PublishBatch(context.Background(), "acme", evs)
	if !errors.Is(err, publish.ErrNotAcked) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("PublishBatch: %v, want ErrNotAcked wrapping jetstream.ErrNoStreamResponse", err)
	}
	if want := fmt.Sprintf("%d of %d events, first evs[0]", len(evs), len(evs)); !strings.Contains(err.Error(), want) {
		t.Errorf("PublishBatch: %v does not say %q", err, want)
	}
}

func TestPublishCanceled(t *testing.T) {
	js := startJS(t)
	createStream(t, js, "presence")
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	evs := events("u")
	if err := pub.Publish(ctx, "acme", &evs[0]); !errors.Is(err, publish.ErrNotAcked) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish: %v, want ErrNotAcked wrapping context.Canceled", err)
	}
	if err := pub.PublishBatch(ctx, "acme", evs); !errors.Is(err, publish.ErrNotAcked) || !errors.Is(err, context.Canceled) {
		t.Fatalf("PublishBatch: %v, want ErrNotAcked wrapping context.Canceled", err)
	}
	if err := pub.PublishBatch(ctx, "acme", nil); err != nil {
		t.Fatalf("PublishBatch of nothing: %v", err)
	}
}

// A batch larger than the ack window, and batches and single publishes from
// several goroutines, all land intact: pooled buffers are never shared.
func TestPublishBatch(t *testing.T) {
	js := startJS(t)
	stream := createStream(t, js, "presence")
	pub, err := publish.New(js, "")
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 4, 150 // 150 * 7 = 1050 events per worker batch
	want := map[string]presence.Event{}
	batches := make([][]presence.Event, workers)
	for w := range batches {
		for r := range rounds {
			batches[w] = append(batches[w], events(fmt.Sprintf("w%d-r%d-", w, r))...)
		}
		for _, ev := range batches[w] {
			want[ev.UserID] = ev
		}
	}
	singles := events("single-")
	for _, ev := range singles {
		want[ev.UserID] = ev
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers+len(singles))
	for _, b := range batches {
		wg.Go(func() { errs <- pub.PublishBatch(context.Background(), "acme", b) })
	}
	for i := range singles {
		wg.Go(func() { errs <- pub.Publish(context.Background(), "acme", &singles[i]) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	got := readStream(t, stream, "presence")
	if len(got) != len(want) {
		t.Fatalf("stream has %d messages, want %d", len(got), len(want))
	}
	last := map[int]int{} // worker -> last round seen, to check order within a batch
	for _, g := range got {
		w, ok := want[g.Ev.UserID]
		if !ok {
			t.Fatalf("unexpected message for %q", g.Ev.UserID)
		}
		delete(want, g.Ev.UserID)
		if g.Subject != "presence.acme."+w.Type.String() || !sameEvent(&g.Ev, &w) {
			t.Fatalf("%s decodes to %+v, want %+v", g.Subject, g.Ev, w)
		}
		var wk, r int
		if n, _ := fmt.Sscanf(g.Ev.UserID, "w%d-r%d-", &wk, &r); n == 2 {
			if prev, seen := last[wk]; seen && r < prev {
				t.Fatalf("worker %d: round %d stored after round %d", wk, r, prev)
			}
			last[wk] = r
		}
	}
}
