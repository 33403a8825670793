package ingest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

func TestCovers(t *testing.T) {
	tests := []struct {
		pattern, sub string
		want         bool
	}{
		{"presence.*.*", "presence.*.*", true},
		{"presence.>", "presence.*.*", true},
		{">", "presence.*.*", true},
		{"*.*.*", "presence.*.*", true},
		{"presence.acme.*", "presence.*.*", false},
		{"presence.*", "presence.*.*", false},
		{"presence.*.*.*", "presence.*.*", false},
		{"other.>", "presence.*.*", false},
		{"deadletter.>", "deadletter.presence.>", true},
		{"deadletter.presence.>", "deadletter.presence.>", true},
		{"deadletter.presence.*", "deadletter.presence.>", false},
		{"deadletter.presence.>", "deadletter.presence", false},
	}
	for _, tt := range tests {
		if got := covers(tt.pattern, tt.sub); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.pattern, tt.sub, got, tt.want)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := limiter{every: time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for k := range 5 {
		if ok, _ := l.allow(t0.Add(time.Duration(k) * 100 * time.Millisecond)); ok {
			t.Fatalf("line %d inside the interval allowed", k)
		}
	}
	if ok, n := l.allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %v with %d suppressed, want true with 5", ok, n)
	}
}

func TestReconnectDelay(t *testing.T) {
	for attempts := 1; attempts < 100; attempts++ {
		d := reconnectDelay(attempts)
		if d < reconnectMin/2 || d > reconnectMax {
			t.Errorf("reconnectDelay(%d) = %v, outside [%v, %v]", attempts, d, reconnectMin/2, reconnectMax)
		}
	}
	if d := reconnectDelay(100); d < reconnectMax/2 {
		t.Errorf("reconnectDelay(100) = %v, want the cap's range", d)
	}
}

func TestHeaderValue(t *testing.T) {
	if got := headerValue("a\r\nb\nc"); got != "a  b c" {
		t.Errorf("headerValue = %q", got)
	}
}

// TestTailWindow checks that the tail remembers what it applied for one to
// two windows: across one rotation the reader still finds it, after two it
// is forgotten.
func TestTailWindow(t *testing.T) {
	eng, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ing := &Ingester{cfg: Config{Prefix: DefaultPrefix, MaxClockSkew: DefaultMaxClockSkew, Applier: eng}}
	ing.metrics, _ = newMetrics(nil, ing)
	ing.tail = newTail(ing)
	ing.caughtUp.Store(true)
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	msg := func(user string) *nats.Msg {
		return &nats.Msg{Subject: "presence.acme.login", Data: []byte(`{"userId":"` + user + `","ts":"` + ts + `"}`)}
	}
	var ev presence.Event
	tl := ing.tail
	rotate := func() { tl.rotated = tl.rotated.Add(-aheadWindow) }

	tl.handle(msg("u1"), &ev)
	rotate()
	tl.handle(msg("u1"), &ev) // rotates; a repeat, left to the stream
	if tl.held.Load() != 1 {
		t.Errorf("held %d after a rotation, want 1", tl.held.Load())
	}
	if _, ok := tl.take(msg("u1").Subject, msg("u1").Data); !ok {
		t.Error("u1 forgotten after one rotation")
	}
	tl.handle(msg("u2"), &ev)
	rotate()
	tl.handle(msg("u3"), &ev)
	rotate()
	tl.handle(msg("u4"), &ev) // u2 is two windows old
	if _, ok := tl.take(msg("u2").Subject, msg("u2").Data); ok {
		t.Error("u2 still remembered after two rotations")
	}
	for _, u := range []string{"u3", "u4"} {
		if a, ok := tl.take(msg(u).Subject, msg(u).Data); !ok || a.typ != presence.Login || a.res != engine.Applied {
			t.Errorf("%s: take = %+v, %v", u, a, ok)
		}
	}
	if tl.held.Load() != 0 {
		t.Errorf("held %d once all is taken, want 0", tl.held.Load())
	}
}
