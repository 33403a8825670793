package presence_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/presenced/presenced/presence"
)

// sampleJSON is the sample payload of contract section 1, as printed there.
const sampleJSON = `{
  "userId": "42",
  "ts": "2026-11-25T10:00:00.123Z",
  "role": "operator",
  "groupIds": ["g1", "g2"],
  "projectIds": ["p1"],
  "routingGroupIds": ["r1"],
  "availabilityStatus": "AVAILABLE",
  "chat": { "availability": "BUSY", "maxSlots": 3, "currentSlots": 3 }
}`

// sampleEvent is what sampleJSON decodes to, for a login.
func sampleEvent() presence.Event {
	return presence.Event{
		Type:   presence.Login,
		UserID: "42",
		TS:     1795600800123000000, // 2026-11-25T10:00:00.123Z
		Fields: presence.HasTS | presence.HasRole | presence.HasGroups | presence.HasProjects |
			presence.HasRoutingGroups | presence.HasAvailability | presence.HasChat |
			presence.HasMaxSlots | presence.HasCurrentSlots,
		Role:            presence.Operator,
		GroupIDs:        []string{"g1", "g2"},
		ProjectIDs:      []string{"p1"},
		RoutingGroupIDs: []string{"r1"},
		Availability:    presence.Available,
		Chat:            presence.Busy,
		MaxSlots:        3,
		CurrentSlots:    3,
	}
}

// checkSame fails t unless got and want are the same event, taking an empty
// id list and a nil one as the same.
func checkSame(t testing.TB, got, want presence.Event) {
	t.Helper()
	got, want = normalized(got), normalized(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
}

func normalized(ev presence.Event) presence.Event {
	for _, l := range []*[]string{&ev.GroupIDs, &ev.ProjectIDs, &ev.RoutingGroupIDs} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return ev
}

// checkFieldError fails t unless err is a *FieldError for field that matches
// ErrInvalid.
func checkFieldError(t testing.TB, err error, field string) {
	t.Helper()
	var fe *presence.FieldError
	switch {
	case err == nil:
		t.Errorf("no error, want one for %q", field)
	case !errors.As(err, &fe):
		t.Errorf("error %v (%T) is no *FieldError", err, err)
	case fe.Field != field:
		t.Errorf("error %q names field %q, want %q", err, fe.Field, field)
	case !errors.Is(err, presence.ErrInvalid):
		t.Errorf("error %q does not match ErrInvalid", err)
	}
}
