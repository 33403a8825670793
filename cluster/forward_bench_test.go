package cluster

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/api"
	"github.com/presenced/presenced/internal/testenv"
)

// BenchmarkForward compares a forwarded request (forwarder to a holder's
// micro service, on connections of their own, an answer of the size of an
// indicator) with a bare NATS request-reply to a plain subscription that
// answers the same body: what the forwarding adds to NATS itself.
func BenchmarkForward(b *testing.B) {
	url, _ := testenv.StartJetStream(b)
	answer := []byte(`{"data":{"connectedUsersIndicator":{"connectedUsersCount":0,"countByChatAvailabilityStatus":{"available":0,"busy":0,"toggleOff":0},"usersInProductionChatOccupancy":{"maximumSimultaneousConversationAverage":0,"simultaneousConversationAverage":0,"occupancyRate":0}}}}`)
	body := []byte(`{"query":"{ connectedUsersIndicator { connectedUsersCount } }"}`)
	front, back := connect(b, url), connect(b, url)
	ctx := context.Background()

	b.Run("forwarded", func(b *testing.B) {
		s, err := serve(ctx, back, "PRESENCE", "a", 0, constant(answer), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.stop()
		f := &forwarder{nc: front, stream: "PRESENCE", count: func(string) {}}
		for b.Loop() {
			if _, err := f.forward(ctx, 0, api.ForwardRequest{Kind: api.KindGraphQL, Tenant: "acme", Body: body}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		sub, err := back.QueueSubscribe("bare", "q", func(m *nats.Msg) { _ = m.Respond(answer) })
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := back.Flush(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := front.Request("bare", body, UnavailableAfter); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type constant []byte

func (c constant) ServeForwarded(context.Context, api.ForwardRequest) api.Forwarded {
	return api.Forwarded{Status: 200, ContentType: "application/json", Body: c}
}
