package ingest

import (
	"testing"
	"time"
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

func TestLastDeadLetterCovers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	tests := []struct {
		name                string
		last                lastDeadLetter
		created             time.Time
		seq, streamLast     uint64
		wantCovered, wantNe bool
	}{
		{"no dead letter yet", lastDeadLetter{known: true}, t0, 5, 10, false, false},
		{"same stream, later message", lastDeadLetter{known: true, seq: 3, created: t0, source: 9}, t0, 5, 10, true, false},
		{"same stream, this message", lastDeadLetter{known: true, seq: 3, created: t0, source: 5}, t0, 5, 10, true, false},
		{"same stream, earlier message", lastDeadLetter{known: true, seq: 3, created: t0, source: 4}, t0, 5, 10, false, false},
		{"of the stream before a recreation", lastDeadLetter{known: true, seq: 3, created: t0, source: 900}, t1, 5, 10, false, false},
		{"of a stream created after this one", lastDeadLetter{known: true, seq: 3, created: t1, source: 1}, t0, 5, 10, false, true},
		{"older presenced, within the stream", lastDeadLetter{known: true, seq: 3, source: 7}, t0, 5, 10, true, false},
		{"older presenced, beyond the stream", lastDeadLetter{known: true, seq: 3, source: 70}, t0, 5, 10, false, false},
		{"unreadable header", lastDeadLetter{known: true, seq: 3}, t0, 5, 10, false, false},
	}
	for _, tt := range tests {
		covered, newer := tt.last.covers(tt.created, tt.seq, tt.streamLast)
		if covered != tt.wantCovered || newer != tt.wantNe {
			t.Errorf("%s: covers = %v, %v; want %v, %v", tt.name, covered, newer, tt.wantCovered, tt.wantNe)
		}
	}
}
