package api_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"golang.org/x/time/rate"

	"github.com/presenced/presenced/api"
)

// fuzzShapes are the operations FuzzGraphQLVariables sends its variables
// to: the filters as one variable, variables inside an input object literal,
// a non-null variable with aliases, a default value, a Boolean directive, a
// breakdown with an enum variable, and a subscription (which plain HTTP
// refuses with an error).
var fuzzShapes = []string{
	`query Q($f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage simultaneousConversationAverage occupancyRate }
  }
}`,
	`query Q($g: [ID!], $p: [ID!], $r: [UserRole!], $c: [AvailabilityStatus!], $a: [AvailabilityStatus!], $u: [ID!]) {
  connectedUsersIndicator(filters: {groupIds: $g, projectIds: $p, roles: $r, chatAvailability: $c, availabilityStatus: $a, userIds: $u}) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { occupancyRate }
  }
}`,
	`query Q($f: ConnectedUsersIndicatorFilters!, $u: [ID!]!) {
  a: connectedUsersIndicator(filters: $f) { connectedUsersCount countByChatAvailabilityStatus { busy } usersInProductionChatOccupancy { occupancyRate } }
  b: connectedUsersIndicator(filters: {userIds: $u, routingGroupIds: ["r1"]}) { connectedUsersCount countByChatAvailabilityStatus { available } usersInProductionChatOccupancy { simultaneousConversationAverage } }
}`,
	`query Q($f: ConnectedUsersIndicatorFilters = {roles: [OPERATOR], groupIds: ["g1", "g2"]}) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount
    countByChatAvailabilityStatus { available busy toggleOff }
    usersInProductionChatOccupancy { maximumSimultaneousConversationAverage }
  }
}`,
	`query Q($f: ConnectedUsersIndicatorFilters, $z: Boolean!) {
  connectedUsersIndicator(filters: $f) {
    connectedUsersCount @include(if: $z)
    countByChatAvailabilityStatus { available busy toggleOff @skip(if: $z) }
    usersInProductionChatOccupancy { occupancyRate }
  }
}`,
	`query Q($by: IndicatorDimension!, $f: ConnectedUsersIndicatorFilters) {
  connectedUsersIndicatorBreakdown(by: $by, filters: $f) {
    key
    indicator {
      connectedUsersCount
      countByChatAvailabilityStatus { available busy toggleOff }
      usersInProductionChatOccupancy { occupancyRate }
    }
  }
}`,
	`subscription Q($f: ConnectedUsersIndicatorFilters, $ms: Int) {
  connectedUsersIndicatorUpdated(filters: $f, minIntervalMs: $ms) { connectedUsersCount }
}`,
}

// FuzzGraphQLVariables sends arbitrary bytes as the "variables" of a
// GraphQL request (with one of fuzzShapes, chosen by the low 7 bits of
// shape) through the real
// handler over a real engine holding the fixture, in open mode and without a
// rate limit. Whatever the input: no panic, no 5xx, a JSON body; an answer
// without errors has data whose indicators carry both objects, and whose
// chat counts add up to connectedUsersCount when all are asked. With the
// application/graphql-response+json media type (high bit of shape), an answer
// without data is a 400 with errors.
// The seed corpus is in testdata/fuzz/FuzzGraphQLVariables.
func FuzzGraphQLVariables(f *testing.F) {
	srv, err := api.New(api.Config{
		Engine:    newEngine(f),
		RateLimit: rate.Inf,
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()

	f.Fuzz(func(t *testing.T, shape uint8, vars []byte) {
		query := fuzzShapes[int(shape&0x7f)%len(fuzzShapes)]
		q, _ := json.Marshal(query)
		var body bytes.Buffer
		body.WriteString(`{"query":`)
		body.Write(q)
		body.WriteString(`,"operationName":"Q","variables":`)
		body.Write(vars)
		body.WriteString(`}`)

		req := httptest.NewRequest(http.MethodPost, "/graphql", &body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Tenant-Id", "acme")
		strict := shape&0x80 != 0
		if strict {
			req.Header.Set("Accept", "application/graphql-response+json")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("status %d, body is not JSON: %q", rec.Code, rec.Body)
		}
		var resp struct {
			Data   map[string]json.RawMessage `json:"data"`
			Errors []json.RawMessage          `json:"errors"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d, body is not a GraphQL response: %v: %s", rec.Code, err, rec.Body)
		}
		switch rec.Code {
		case http.StatusOK:
			if resp.Data == nil && len(resp.Errors) == 0 {
				t.Fatalf("200 without data and without errors: %s", rec.Body)
			}
			if strict && resp.Data == nil {
				t.Fatalf("200 without data for application/graphql-response+json: %s", rec.Body)
			}
		default:
			if len(resp.Errors) == 0 {
				t.Fatalf("status %d without errors: %s", rec.Code, rec.Body)
			}
		}
		for field, raw := range resp.Data {
			if bytes.HasPrefix(raw, []byte("[")) {
				checkFuzzRows(t, field, raw, len(resp.Errors) == 0, rec.Body.Bytes())
			} else {
				checkFuzzIndicator(t, field, raw, len(resp.Errors) == 0, rec.Body.Bytes())
			}
		}
	})
}

// checkFuzzRows checks the rows of a breakdown: each has a key and an
// indicator that passes checkFuzzIndicator.
func checkFuzzRows(t *testing.T, field string, raw json.RawMessage, noErrors bool, body []byte) {
	t.Helper()
	var rows []struct {
		Key       *string
		Indicator json.RawMessage
	}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatalf("data.%s is not a list of rows: %v: %s", field, err, body)
	}
	for i, row := range rows {
		if row.Key == nil {
			t.Fatalf("data.%s[%d] has no key: %s", field, i, body)
		}
		checkFuzzIndicator(t, field+"["+strconv.Itoa(i)+"].indicator", row.Indicator, noErrors, body)
	}
}

// checkFuzzIndicator checks one connectedUsersIndicator of an answer. It
// may be null only when the answer has errors; otherwise both its objects
// are there, and its chat counts add up when all of them were asked.
func checkFuzzIndicator(t *testing.T, field string, raw json.RawMessage, noErrors bool, body []byte) {
	t.Helper()
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	var ind *struct {
		ConnectedUsersCount           *int64
		CountByChatAvailabilityStatus *struct {
			Available, Busy, ToggleOff *int64
		}
		UsersInProductionChatOccupancy *map[string]float64
	}
	if err := json.Unmarshal(raw, &ind); err != nil {
		t.Fatalf("data.%s is not an indicator: %v: %s", field, err, body)
	}
	if ind == nil {
		if noErrors {
			t.Fatalf("data.%s is null without errors: %s", field, body)
		}
		return
	}
	chat := ind.CountByChatAvailabilityStatus
	if chat == nil || ind.UsersInProductionChatOccupancy == nil {
		t.Fatalf("data.%s has a null object: %s", field, body)
	}
	if n := ind.ConnectedUsersCount; n != nil && chat.Available != nil && chat.Busy != nil && chat.ToggleOff != nil &&
		*n != *chat.Available+*chat.Busy+*chat.ToggleOff {
		t.Fatalf("data.%s: chat counts do not add up to connectedUsersCount: %s", field, body)
	}
}
