package presence_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/presenced/presenced/presence"
)

func TestAppendJSONSample(t *testing.T) {
	ev := sampleEvent()
	got := string(ev.AppendJSON([]byte("prefix:")))
	want := `prefix:{"userId":"42","ts":"2026-11-25T10:00:00.123Z","role":"operator",` +
		`"groupIds":["g1","g2"],"projectIds":["p1"],"routingGroupIds":["r1"],` +
		`"availabilityStatus":"AVAILABLE","chat":{"availability":"BUSY","maxSlots":3,"currentSlots":3}}`
	if got != want {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
	}
}

func TestAppendJSONWritesOnlyPresentFields(t *testing.T) {
	for _, tt := range []struct {
		name string
		ev   presence.Event
		want string
	}{
		{"userId only", presence.Event{UserID: "u", Role: presence.Bot, MaxSlots: 3}, `{"userId":"u"}`},
		{"empty list", presence.Event{UserID: "u", Fields: presence.HasProjects}, `{"userId":"u","projectIds":[]}`},
		{"zero values", presence.Event{UserID: "u", Fields: presence.HasTS | presence.HasAvailability | presence.HasMaxSlots},
			`{"userId":"u","ts":"1970-01-01T00:00:00Z","availabilityStatus":"TOGGLE_OFF","chat":{"maxSlots":0}}`},
		{"one chat member", presence.Event{UserID: "u", Fields: presence.HasCurrentSlots, CurrentSlots: 1000},
			`{"userId":"u","chat":{"currentSlots":1000}}`},
		{"chat availability", presence.Event{UserID: "u", Fields: presence.HasChat, Chat: presence.Available},
			`{"userId":"u","chat":{"availability":"AVAILABLE"}}`},
		{"role upper in Go, lower on the wire", presence.Event{UserID: "u", Fields: presence.HasRole, Role: presence.Expert},
			`{"userId":"u","role":"expert"}`},
		{"ts in UTC with nanoseconds", presence.Event{UserID: "u", Fields: presence.HasTS, TS: -1},
			`{"userId":"u","ts":"1969-12-31T23:59:59.999999999Z"}`},
		{"connection bit has no wire form", presence.Event{UserID: "u", Fields: presence.HasConnection}, `{"userId":"u"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(tt.ev.AppendJSON(nil)); got != tt.want {
				t.Errorf("AppendJSON:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestAppendJSONStrings takes encoding/json as the oracle of string escaping.
func TestAppendJSONStrings(t *testing.T) {
	for _, s := range []string{
		"plain", `quote " and backslash \`, "controls \x00\x01\b\f\n\r\t\x1f\x7f",
		"html <a href='x'>&amp;</a>", "unicode é € 😀 \u2028\u2029", "\ufffd",
		"slash /", strings.Repeat("x", 128),
	} {
		t.Run(s, func(t *testing.T) {
			ev := presence.Event{UserID: s, Fields: presence.HasGroups, GroupIDs: []string{s}}
			data := ev.AppendJSON(nil)
			var std struct {
				UserID   string
				GroupIDs []string
			}
			if err := json.Unmarshal(data, &std); err != nil {
				t.Fatalf("encoding/json cannot read %s: %v", data, err)
			}
			if std.UserID != s || len(std.GroupIDs) != 1 || std.GroupIDs[0] != s {
				t.Errorf("encoding/json reads %q %q from %s, want %q", std.UserID, std.GroupIDs, data, s)
			}
		})
	}
	// Invalid UTF-8 (which Validate rejects) still makes valid JSON.
	ev := presence.Event{UserID: "a\xffb"}
	if data := ev.AppendJSON(nil); string(data) != `{"userId":"a\ufffdb"}` {
		t.Errorf("AppendJSON of invalid UTF-8: %s", data)
	}
}

// validEvents are events as Decode returns them: each round-trips exactly.
func validEvents() map[string]presence.Event {
	return map[string]presence.Event{
		"sample":  sampleEvent(),
		"minimal": {UserID: "x"},
		"logout":  {Type: presence.Logout, UserID: "u", Fields: presence.HasTS, TS: 1},
		"empty lists": {UserID: "u", Fields: presence.HasGroups | presence.HasProjects | presence.HasRoutingGroups,
			GroupIDs: []string{}, ProjectIDs: []string{}, RoutingGroupIDs: []string{}},
		"extremes": {UserID: strings.Repeat("é", 64), Fields: presence.HasTS | presence.HasMaxSlots | presence.HasCurrentSlots,
			TS: -1 << 63, MaxSlots: 1000, CurrentSlots: 1000},
		"latest ts":  {UserID: "u", Fields: presence.HasTS, TS: 1<<63 - 1},
		"256 ids":    {UserID: "u", Fields: presence.HasRoutingGroups, RoutingGroupIDs: distinctIDs(256)},
		"odd bytes":  {UserID: "\x00\"\\\n</script>\u2028", Fields: presence.HasGroups, GroupIDs: []string{"\t", "😀"}},
		"every role": {UserID: "u", Fields: presence.HasRole, Role: presence.Bot},
		"statuses": {UserID: "u", Fields: presence.HasAvailability | presence.HasChat,
			Availability: presence.Busy, Chat: presence.ToggleOff},
	}
}

func distinctIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strings.Repeat("i", i%127+1) + string(rune('a'+i/127))
	}
	return ids
}

func TestRoundTrip(t *testing.T) {
	for name, ev := range validEvents() {
		t.Run(name, func(t *testing.T) {
			if err := ev.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			data, err := ev.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			got := presence.Event{Type: ev.Type}
			if err := presence.Decode(data, &got); err != nil {
				t.Fatalf("Decode(%s): %v", data, err)
			}
			checkSame(t, got, ev)

			// encoding/json goes through MarshalJSON (escaping <, > and & on
			// top) and UnmarshalJSON.
			std, err := json.Marshal(&ev)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			got = presence.Event{Type: ev.Type}
			if err := json.Unmarshal(std, &got); err != nil {
				t.Fatalf("json.Unmarshal(%s): %v", std, err)
			}
			checkSame(t, got, ev)
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func() presence.Event { return presence.Event{UserID: "u"} }
	with := func(f func(*presence.Event)) presence.Event { ev := valid(); f(&ev); return ev }
	for _, tt := range []struct {
		name  string
		ev    presence.Event
		field string
	}{
		{"no userId", presence.Event{}, "userId"},
		{"userId of 129 bytes", presence.Event{UserID: strings.Repeat("u", 129)}, "userId"},
		{"userId not UTF-8", presence.Event{UserID: "\xff"}, "userId"},
		{"role bit without a role", with(func(ev *presence.Event) { ev.Fields = presence.HasRole }), "role"},
		{"role out of range", with(func(ev *presence.Event) { ev.Fields, ev.Role = presence.HasRole, presence.NumRoles }), "role"},
		{"257 groups", with(func(ev *presence.Event) { ev.Fields, ev.GroupIDs = presence.HasGroups, distinctIDs(257) }), "groupIds"},
		{"257 projects even if repeated", with(func(ev *presence.Event) {
			ev.Fields, ev.ProjectIDs = presence.HasProjects, slices.Repeat([]string{"a"}, 257)
		}), "projectIds"},
		{"empty routing group", with(func(ev *presence.Event) {
			ev.Fields, ev.RoutingGroupIDs = presence.HasRoutingGroups, []string{"a", ""}
		}), "routingGroupIds[1]"},
		{"group of 129 bytes", with(func(ev *presence.Event) {
			ev.Fields, ev.GroupIDs = presence.HasGroups, []string{strings.Repeat("g", 129)}
		}), "groupIds[0]"},
		{"group not UTF-8", with(func(ev *presence.Event) { ev.Fields, ev.GroupIDs = presence.HasGroups, []string{"\xc0"} }), "groupIds[0]"},
		{"availability out of range", with(func(ev *presence.Event) {
			ev.Fields, ev.Availability = presence.HasAvailability, presence.NumStatuses
		}), "availabilityStatus"},
		{"chat out of range", with(func(ev *presence.Event) { ev.Fields, ev.Chat = presence.HasChat, 7 }), "chat.availability"},
		{"maxSlots 1001", with(func(ev *presence.Event) { ev.Fields, ev.MaxSlots = presence.HasMaxSlots, 1001 }), "chat.maxSlots"},
		{"currentSlots 65535", with(func(ev *presence.Event) { ev.Fields, ev.CurrentSlots = presence.HasCurrentSlots, 65535 }), "chat.currentSlots"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ev.Validate()
			checkFieldError(t, err, tt.field)
			if _, merr := tt.ev.MarshalJSON(); merr == nil || merr.Error() != err.Error() {
				t.Errorf("MarshalJSON error %v, want %v", merr, err)
			}
			// The engine finds the same fault in the payload, except
			// invalid UTF-8, which AppendJSON replaces.
			if strings.Contains(err.Error(), "UTF-8") {
				return
			}
			var got presence.Event
			checkFieldError(t, presence.Decode(tt.ev.AppendJSON(nil), &got), tt.field)
		})
	}
	// Values without their bit are not checked, as they are not sent.
	ev := presence.Event{UserID: "u", Role: 200, MaxSlots: 5000, GroupIDs: []string{""}}
	if err := ev.Validate(); err != nil {
		t.Errorf("Validate checks absent fields: %v", err)
	}
}
