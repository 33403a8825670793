package presence_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/presenced/presenced/presence"
)

// FuzzDecode checks, on any input, that Decode does not panic, leaves data
// alone and fails with a *FieldError; and that what it accepts is valid JSON
// (json.Valid), a valid event (Validate), read as encoding/json reads it, and
// encoded by AppendJSON into a payload that decodes to the same event.
// The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		ev := presence.Event{Type: presence.Profile}
		err := presence.Decode(data, &ev)
		if !bytes.Equal(data, orig) {
			t.Fatal("Decode changed its input")
		}
		if err != nil {
			var fe *presence.FieldError
			if !errors.As(err, &fe) || !errors.Is(err, presence.ErrInvalid) {
				t.Fatalf("error %v (%T) is no *FieldError", err, err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("Decode accepts what json.Valid rejects: %q", data)
		}
		if ev.Type != presence.Profile {
			t.Fatalf("Decode changed Type to %v", ev.Type)
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("Decode accepts an event Validate rejects: %v", err)
		}
		checkAsEncodingJSON(t, data, &ev)

		enc := ev.AppendJSON(nil)
		again := presence.Event{Type: presence.Profile}
		if err := presence.Decode(enc, &again); err != nil {
			t.Fatalf("Decode(AppendJSON(%+v)) = %v; payload %s", ev, err, enc)
		}
		checkSame(t, again, ev)
	})
}

// checkAsEncodingJSON compares the strings of ev with what encoding/json reads
// from the same payload. A map keeps keys exact, and the last of repeated keys.
func checkAsEncodingJSON(t *testing.T, data []byte, ev *presence.Event) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("encoding/json cannot read %q: %v", data, err)
	}
	var userID string
	if err := json.Unmarshal(m["userId"], &userID); err != nil || userID != ev.UserID {
		t.Fatalf("userId: encoding/json reads %q (%v), Decode %q", userID, err, ev.UserID)
	}
	for _, l := range []struct {
		key string
		bit presence.Fields
		ids []string
	}{
		{"groupIds", presence.HasGroups, ev.GroupIDs},
		{"projectIds", presence.HasProjects, ev.ProjectIDs},
		{"routingGroupIds", presence.HasRoutingGroups, ev.RoutingGroupIDs},
	} {
		var ids []string
		if err := json.Unmarshal(m[l.key], &ids); m[l.key] != nil && err != nil {
			t.Fatalf("%s: encoding/json cannot read %s: %v", l.key, m[l.key], err)
		}
		var want []string
		for _, id := range ids {
			if !slices.Contains(want, id) {
				want = append(want, id)
			}
		}
		if ev.Has(l.bit) != (ids != nil) || !slices.Equal(l.ids, want) {
			t.Fatalf("%s: encoding/json reads %q, Decode %q (present %v)", l.key, want, l.ids, ev.Has(l.bit))
		}
	}
}

// FuzzTimestamp takes time.Parse(time.RFC3339Nano) as the oracle of ts.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{
		"2026-11-25T10:00:00.123Z", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00.123456789+05:30",
		"2026-11-25T10:00:00-00:00", "1677-09-21T00:12:43.145224192Z", "2262-04-11T23:47:16.854775808Z",
		"2024-02-29T23:59:59.9999999999Z", "2026-11-25T1:2:3Z", "2026-11-25T10:00:00,5Z", "2026-11-25t10:00:00z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59+23:59", "2026-11-25T10:00:00+24:00", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		quoted, _ := json.Marshal(s)
		if err := json.Unmarshal(quoted, &s); err != nil { // as Decode sees it
			t.Fatal(err)
		}
		doc := append(append([]byte(`{"userId":"u","ts":`), quoted...), '}')
		var ev presence.Event
		err := presence.Decode(doc, &ev)

		want, perr := time.Parse(time.RFC3339Nano, s)
		inRange := perr == nil && !want.Before(time.Unix(0, -1<<63)) && !want.After(time.Unix(0, 1<<63-1))
		switch {
		case inRange && err != nil:
			t.Fatalf("Decode rejects ts %q that time.Parse reads: %v", s, err)
		case !inRange && err == nil:
			t.Fatalf("Decode accepts ts %q (%v, time.Parse error %v)", s, ev.TS, perr)
		case err != nil:
			checkFieldError(t, err, "ts")
		case ev.TS != want.UnixNano() || !ev.Has(presence.HasTS):
			t.Fatalf("ts %q: Decode %d, time.Parse %d", s, ev.TS, want.UnixNano())
		}
	})
}
