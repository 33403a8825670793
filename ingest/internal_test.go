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

func TestMarkCovers(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	tests := []struct {
		name                string
		mark                mark
		created             time.Time
		seq                 uint64
		wantCovered, wantNe bool
	}{
		{"no mark yet", mark{known: true}, t0, 5, false, false},
		{"same stream, later message", mark{known: true, rev: 3, created: t0, seq: 9}, t0, 5, true, false},
		{"same stream, this message", mark{known: true, rev: 3, created: t0, seq: 5}, t0, 5, true, false},
		{"same stream, earlier message", mark{known: true, rev: 3, created: t0, seq: 4}, t0, 5, false, false},
		{"of the stream before a recreation", mark{known: true, rev: 3, created: t0, seq: 900}, t1, 5, false, false},
		{"of a stream created after this one", mark{known: true, rev: 3, created: t1, seq: 1}, t0, 5, false, true},
		{"unreadable entry", mark{known: true, rev: 3}, t0, 5, false, false},
	}
	for _, tt := range tests {
		covered, newer := tt.mark.covers(tt.created, tt.seq)
		if covered != tt.wantCovered || newer != tt.wantNe {
			t.Errorf("%s: covers = %v, %v; want %v, %v", tt.name, covered, newer, tt.wantCovered, tt.wantNe)
		}
	}
}

func TestMarkFresh(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := mark{known: true, seq: 4, seen: t0}
	for _, tt := range []struct {
		mark   mark
		now    time.Time
		window time.Duration
		want   bool
	}{
		{m, t0.Add(29 * time.Minute), time.Hour, true},
		{m, t0.Add(30 * time.Minute), time.Hour, false},
		{m, t0.Add(time.Millisecond), 100 * time.Millisecond, true},
		{m, t0.Add(50 * time.Millisecond), 100 * time.Millisecond, false},
		{m, t0, 0, false}, // no window known: always read
		{mark{seq: 4, seen: t0}, t0, time.Hour, false},
	} {
		if got := tt.mark.fresh(tt.now, tt.window); got != tt.want {
			t.Errorf("mark seen at %v, window %v: fresh at %v = %v, want %v", tt.mark.seen, tt.window, tt.now, got, tt.want)
		}
	}
}

// TestLastDeadLetterMark checks the mark that the newest dead letter of a
// presenced before marks stands for.
func TestLastDeadLetterMark(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Hour)
	tests := []struct {
		name        string
		last        lastDeadLetter
		streamLast  uint64
		wantCreated time.Time
		wantSeq     uint64
	}{
		{"no dead letter", lastDeadLetter{}, 10, time.Time{}, 0},
		{"of this stream", lastDeadLetter{created: t0, source: 7}, 10, t0, 7},
		{"of another stream", lastDeadLetter{created: t1, source: 70}, 10, t1, 70},
		{"older presenced, within the stream", lastDeadLetter{source: 7}, 10, t0, 7},
		{"older presenced, beyond the stream", lastDeadLetter{source: 70}, 10, time.Time{}, 0},
	}
	for _, tt := range tests {
		created, seq := tt.last.mark(t0, tt.streamLast)
		if !created.Equal(tt.wantCreated) || seq != tt.wantSeq {
			t.Errorf("%s: mark = %v, %d; want %v, %d", tt.name, created, seq, tt.wantCreated, tt.wantSeq)
		}
	}
}
