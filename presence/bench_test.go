package presence_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
)

func BenchmarkDecodeSample(b *testing.B) {
	data := []byte(sampleJSON)
	var ev presence.Event
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := presence.Decode(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// stdEvent is the payload as encoding/json reads it, for the baseline. It
// checks no rule: the real cost of the stdlib route is higher still.
type stdEvent struct {
	UserID             string    `json:"userId"`
	TS                 time.Time `json:"ts"`
	Role               string    `json:"role"`
	GroupIDs           []string  `json:"groupIds"`
	ProjectIDs         []string  `json:"projectIds"`
	RoutingGroupIDs    []string  `json:"routingGroupIds"`
	AvailabilityStatus string    `json:"availabilityStatus"`
	Chat               *struct {
		Availability string `json:"availability"`
		MaxSlots     *int   `json:"maxSlots"`
		CurrentSlots *int   `json:"currentSlots"`
	} `json:"chat"`
}

func BenchmarkDecodeSampleStdlib(b *testing.B) {
	data := []byte(sampleJSON)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var ev stdEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSubject(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := presence.ParseSubject("acme.presence", "acme.presence.tenant-42.heartbeat"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := sampleEvent()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}
