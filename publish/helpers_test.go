package publish_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
)

// startJS starts an embedded NATS server and returns a JetStream context on
// it; both end with the test.
func startJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	_, js := testenv.StartJetStream(t)
	return js
}

// createStream creates the stream presenced would: PRESENCE, capturing
// <prefix>.*.*.
func createStream(t testing.TB, js jetstream.JetStream, prefix string) jetstream.Stream {
	t.Helper()
	s, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:     "PRESENCE",
		Subjects: []string{prefix + ".*.*"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	return s
}

// stored is one message of the stream, decoded.
type stored struct {
	Subject string
	Tenant  string
	Ev      presence.Event
}

// readStream returns every message of s in sequence order, each decoded with
// presence.ParseSubject and presence.Decode; a message that fails either
// fails the test.
func readStream(t testing.TB, s jetstream.Stream, prefix string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg %d: %v", seq, err)
		}
		tenant, typ, err := presence.ParseSubject(prefix, m.Subject)
		if err != nil {
			t.Fatalf("message %d: subject %q: %v", seq, m.Subject, err)
		}
		ev := presence.Event{Type: typ}
		if err := presence.Decode(m.Data, &ev); err != nil {
			t.Fatalf("message %d: payload %s: %v", seq, m.Data, err)
		}
		ev = clone(ev) // Decode's id lists are reused by the next Decode
		out = append(out, stored{Subject: m.Subject, Tenant: tenant, Ev: ev})
	}
	return out
}

func clone(ev presence.Event) presence.Event {
	ev.GroupIDs = slices.Clone(ev.GroupIDs)
	ev.ProjectIDs = slices.Clone(ev.ProjectIDs)
	ev.RoutingGroupIDs = slices.Clone(ev.RoutingGroupIDs)
	return ev
}

// sameEvent compares events as the wire sees them: an absent list and an
// empty one are the same when its bit is unset.
func sameEvent(a, b *presence.Event) bool {
	return a.Type == b.Type && a.UserID == b.UserID && a.Fields == b.Fields &&
		(!a.Has(presence.HasTS) || a.TS == b.TS) &&
		(!a.Has(presence.HasRole) || a.Role == b.Role) &&
		(!a.Has(presence.HasGroups) || slices.Equal(a.GroupIDs, b.GroupIDs)) &&
		(!a.Has(presence.HasProjects) || slices.Equal(a.ProjectIDs, b.ProjectIDs)) &&
		(!a.Has(presence.HasRoutingGroups) || slices.Equal(a.RoutingGroupIDs, b.RoutingGroupIDs)) &&
		(!a.Has(presence.HasAvailability) || a.Availability == b.Availability) &&
		(!a.Has(presence.HasChat) || a.Chat == b.Chat) &&
		(!a.Has(presence.HasMaxSlots) || a.MaxSlots == b.MaxSlots) &&
		(!a.Has(presence.HasCurrentSlots) || a.CurrentSlots == b.CurrentSlots)
}

// events returns a varied set of valid events, one of each type and some
// without ts, for user ids prefixed with user.
func events(user string) []presence.Event {
	ts := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC).UnixNano()
	return []presence.Event{
		{
			Type: presence.Login, UserID: user + "1", TS: ts,
			Fields: presence.HasTS | presence.HasRole | presence.HasGroups | presence.HasProjects |
				presence.HasRoutingGroups | presence.HasAvailability | presence.HasChat |
				presence.HasMaxSlots | presence.HasCurrentSlots,
			Role:     presence.Operator,
			GroupIDs: []string{"sales", "support"}, ProjectIDs: []string{"p1"}, RoutingGroupIDs: []string{"chat-en"},
			Availability: presence.Available, Chat: presence.Busy, MaxSlots: 3, CurrentSlots: 3,
		},
		{Type: presence.StatusChange, UserID: user + "2", TS: ts + 1, Fields: presence.HasTS | presence.HasAvailability | presence.HasChat, Availability: presence.Busy, Chat: presence.ToggleOff},
		{Type: presence.Slots, UserID: user + "3", Fields: presence.HasCurrentSlots, CurrentSlots: 1000},
		{Type: presence.Profile, UserID: user + "4 \"quoted\" é", TS: ts, Fields: presence.HasTS | presence.HasRole | presence.HasGroups, Role: presence.Bot, GroupIDs: []string{}},
		{Type: presence.Heartbeat, UserID: user + "5", TS: ts, Fields: presence.HasTS},
		{Type: presence.Heartbeat, UserID: user + "6"},
		{Type: presence.Logout, UserID: user + "7", TS: ts + 2, Fields: presence.HasTS},
	}
}
