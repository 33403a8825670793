package publish_test

import (
	"context"
	"testing"

	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/publish"
)

// The benchmarks publish to an embedded server, so they measure the round
// trip to JetStream more than this package; the baseline, jetstream's own
// Publish of a MarshalJSON payload, shows what the package adds.

func benchSetup(b *testing.B) (*publish.Publisher, presence.Event) {
	b.Helper()
	js := startJS(b)
	createStream(b, js, "presence")
	pub, err := publish.New(js, "")
	if err != nil {
		b.Fatal(err)
	}
	return pub, events("u")[0]
}

func BenchmarkPublish(b *testing.B) {
	pub, ev := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish(context.Background(), "acme", &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaselineJetStreamPublish(b *testing.B) {
	js := startJS(b)
	createStream(b, js, "presence")
	ev := events("u")[0]
	b.ReportAllocs()
	for b.Loop() {
		data, err := ev.MarshalJSON()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), "presence.acme.login", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishBatch reports the time per event of batches of 100.
func BenchmarkPublishBatch(b *testing.B) {
	pub, ev := benchSetup(b)
	batch := make([]presence.Event, 100)
	for i := range batch {
		batch[i] = ev
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := pub.PublishBatch(context.Background(), "acme", batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}
