package engine_test

import (
	"testing"

	"github.com/presenced/presenced/engine"
	"github.com/presenced/presenced/presence"
)

// TestWatchAfterUnwatched watches a view, lets it go unwatched while its
// value changes, watches it again, and changes the value back to what the
// first watch last saw: the new watch must be woken.
func TestWatchAfterUnwatched(t *testing.T) {
	e := mustEngine(t, engine.Config{})
	ev := func(typ presence.Type, ts int64) *presence.Event {
		return &presence.Event{Type: typ, UserID: "u", TS: ts, Fields: presence.HasTS}
	}
	f := &engine.Filter{}
	w := e.Watch("acme", f)
	w.Close()
	e.Apply("acme", ev(presence.Login, 1)) // unwatched: 0 -> 1
	w = e.Watch("acme", f)
	defer w.Close()
	v, changed := w.Next()
	if v.Connected != 1 {
		t.Fatalf("connected %d", v.Connected)
	}
	e.Apply("acme", ev(presence.Logout, 2)) // 1 -> 0, the value the view last notified
	select {
	case <-changed:
	default:
		t.Fatal("the value changed but the channel did not fire")
	}
}
