package ingest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// BenchmarkTail measures the live tail's work per message on a 100k-user
// tenant: "bookkeeping" is handle plus the stream reader's take, "bare" the
// decode and apply alone, its floor.
func BenchmarkTail(b *testing.B) {
	const users = 100_000
	eng, err := engine.New(engine.Config{})
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	for u := range users {
		eng.Apply("acme", &presence.Event{Type: presence.Login, UserID: fmt.Sprintf("user-%06d", u), TS: base.UnixNano(),
			Fields:   presence.HasTS | presence.HasGroups | presence.HasChat,
			GroupIDs: []string{fmt.Sprintf("g%d", u%2000), fmt.Sprintf("g%d", u%1999)}, Chat: presence.Available})
	}
	msgs := make([]*nats.Msg, 4096)
	for k := range msgs {
		ts := base.Add(time.Duration(k+1) * time.Microsecond).UTC().Format(time.RFC3339Nano)
		msgs[k] = &nats.Msg{Subject: "presence.acme.status", Data: fmt.Appendf(nil,
			`{"userId":"user-%06d","ts":"%s","availabilityStatus":"BUSY","chat":{"availability":"BUSY","currentSlots":%d}}`,
			k*24%users, ts, k%4)}
	}
	ing := &Ingester{cfg: Config{Prefix: DefaultPrefix, MaxClockSkew: DefaultMaxClockSkew, Applier: eng}}
	ing.metrics, _ = newMetrics(nil, ing)
	ing.tail = newTail(ing)
	ing.caughtUp.Store(true)

	b.Run("bookkeeping", func(b *testing.B) {
		var ev presence.Event
		b.ReportAllocs()
		k := 0
		for b.Loop() {
			m := msgs[k%len(msgs)]
			ing.tail.handle(m, &ev)
			if _, ok := ing.tail.take(m.Subject, m.Data); !ok {
				b.Fatal("the tail did not apply the message")
			}
			k++
		}
	})
	b.Run("bare", func(b *testing.B) {
		var ev presence.Event
		b.ReportAllocs()
		k := 0
		for b.Loop() {
			m := msgs[k%len(msgs)]
			tenant, typ, _ := presence.ParseSubject(DefaultPrefix, m.Subject)
			ev.Type = typ
			if err := presence.Decode(m.Data, &ev); err != nil {
				b.Fatal(err)
			}
			eng.Apply(tenant, &ev)
			k++
		}
	})
}
