package presence_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/presenced/presenced/presence"
)

func TestDecodeSample(t *testing.T) {
	ev := presence.Event{Type: presence.Login}
	if err := presence.Decode([]byte(sampleJSON), &ev); err != nil {
		t.Fatal(err)
	}
	checkSame(t, ev, sampleEvent())
}

// withUser is a payload with a valid userId and the members given.
func withUser(members string) string {
	if members == "" {
		return `{"userId":"u"}`
	}
	return `{"userId":"u",` + members + `}`
}

// ids returns a JSON array of n ids "<prefix>0", "<prefix>1"...
func ids(prefix string, n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(prefix + strconv.Itoa(i)))
	}
	b.WriteByte(']')
	return b.String()
}

// ruleTest is one payload: it decodes to an event that check accepts, or
// fails with a *FieldError for field.
type ruleTest struct {
	name  string
	doc   string
	field string                    // "" when the payload is valid
	check func(presence.Event) bool // nil: nothing more to check
}

func runRuleTests(t *testing.T, tests []ruleTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev presence.Event
			err := presence.Decode([]byte(tt.doc), &ev)
			if tt.field != "" {
				checkFieldError(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.doc, err)
			}
			if tt.check != nil && !tt.check(ev) {
				t.Errorf("Decode(%s) = %+v", tt.doc, ev)
			}
		})
	}
}

func TestDecodeUserID(t *testing.T) {
	is := func(id string) func(presence.Event) bool {
		return func(ev presence.Event) bool { return ev.UserID == id }
	}
	runRuleTests(t, []ruleTest{
		{"plain", `{"userId":"42"}`, "", is("42")},
		{"128 bytes", `{"userId":"` + strings.Repeat("x", 128) + `"}`, "", is(strings.Repeat("x", 128))},
		{"128 bytes of UTF-8", `{"userId":"` + strings.Repeat("é", 64) + `"}`, "", is(strings.Repeat("é", 64))},
		{"128 bytes once unescaped", `{"userId":"` + strings.Repeat(`\u00e9`, 64) + `"}`, "", is(strings.Repeat("é", 64))},
		{"129 bytes", `{"userId":"` + strings.Repeat("x", 129) + `"}`, "userId", nil},
		{"129 bytes of UTF-8", `{"userId":"` + strings.Repeat("é", 64) + `x"}`, "userId", nil},
		{"missing", `{}`, "userId", nil},
		{"null", `{"userId":null}`, "userId", nil},
		{"empty", `{"userId":""}`, "userId", nil},
		{"number", `{"userId":42}`, "userId", nil},
		{"bool", `{"userId":true}`, "userId", nil},
		{"array", `{"userId":["42"]}`, "userId", nil},
		{"object", `{"userId":{"id":"42"}}`, "userId", nil},
		{"null after a value", `{"userId":"42","userId":null}`, "userId", nil},
		{"value after null", `{"userId":null,"userId":"42"}`, "", is("42")},
		{"last of two", `{"userId":"1","userId":"2"}`, "", is("2")},
		{"wrong case key", `{"userid":"42"}`, "userId", nil},
	})
}

func TestDecodeTS(t *testing.T) {
	at := func(s string) func(presence.Event) bool {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return func(ev presence.Event) bool {
			return ev.Has(presence.HasTS) && ev.TS == want.UnixNano()
		}
	}
	absent := func(ev presence.Event) bool { return !ev.Has(presence.HasTS) && ev.TS == 0 }
	ts := func(s string) string { return withUser(`"ts":"` + s + `"`) }
	runRuleTests(t, []ruleTest{
		{"milliseconds", ts("2026-11-25T10:00:00.123Z"), "", at("2026-11-25T10:00:00.123Z")},
		{"no fraction", ts("2026-11-25T10:00:00Z"), "", at("2026-11-25T10:00:00Z")},
		{"nanoseconds", ts("2026-11-25T10:00:00.123456789Z"), "", at("2026-11-25T10:00:00.123456789Z")},
		{"offset", ts("2026-11-25T11:30:00.5+01:30"), "", at("2026-11-25T10:00:00.5Z")},
		{"negative offset", ts("2026-11-25T05:00:00-05:00"), "", at("2026-11-25T10:00:00Z")},
		{"leap day", ts("2024-02-29T00:00:00Z"), "", at("2024-02-29T00:00:00Z")},
		{"earliest", ts("1677-09-21T00:12:43.145224192Z"), "", at("1677-09-21T00:12:43.145224192Z")},
		{"latest", ts("2262-04-11T23:47:16.854775807Z"), "", at("2262-04-11T23:47:16.854775807Z")},
		{"null", withUser(`"ts":null`), "", absent},
		{"absent", withUser(``), "", absent},
		{"null after a value", withUser(`"ts":"2026-11-25T10:00:00Z","ts":null`), "", absent},
		{"before int64 nanoseconds", ts("1677-09-21T00:12:43.145224191Z"), "ts", nil},
		{"after int64 nanoseconds", ts("2262-04-11T23:47:16.854775808Z"), "ts", nil},
		{"year 1", ts("0001-01-01T00:00:00Z"), "ts", nil},
		{"no zone", ts("2026-11-25T10:00:00"), "ts", nil},
		{"date only", ts("2026-11-25"), "ts", nil},
		{"space for T", ts("2026-11-25 10:00:00Z"), "ts", nil},
		{"month 13", ts("2026-13-25T10:00:00Z"), "ts", nil},
		{"February 30", ts("2026-02-30T10:00:00Z"), "ts", nil},
		{"February 29 of a common year", ts("2026-02-29T10:00:00Z"), "ts", nil},
		{"hour 24", ts("2026-11-25T24:00:00Z"), "ts", nil},
		{"leap second", ts("2026-12-31T23:59:60Z"), "ts", nil},
		{"point without digits", ts("2026-11-25T10:00:00.Z"), "ts", nil},
		// What time.Parse(time.RFC3339Nano) accepts beyond RFC 3339.
		{"one-digit hour", ts("2026-11-25T1:00:00Z"), "", at("2026-11-25T01:00:00Z")},
		{"comma for point", ts("2026-11-25T10:00:00,5Z"), "", at("2026-11-25T10:00:00.5Z")},
		{"ten fraction digits", ts("2026-11-25T10:00:00.1234567899Z"), "", at("2026-11-25T10:00:00.123456789Z")},
		{"empty", ts(""), "ts", nil},
		{"words", ts("yesterday"), "ts", nil},
		{"unix seconds", withUser(`"ts":1795600800`), "ts", nil},
		{"unix seconds as a string", ts("1795600800"), "ts", nil},
		{"object", withUser(`"ts":{}`), "ts", nil},
	})
}

func TestDecodeRole(t *testing.T) {
	is := func(r presence.Role) func(presence.Event) bool {
		return func(ev presence.Event) bool { return ev.Has(presence.HasRole) && ev.Role == r }
	}
	absent := func(ev presence.Event) bool { return !ev.Has(presence.HasRole) && ev.Role == presence.NoRole }
	role := func(s string) string { return withUser(`"role":"` + s + `"`) }
	runRuleTests(t, []ruleTest{
		{"operator", role("operator"), "", is(presence.Operator)},
		{"manager", role("manager"), "", is(presence.Manager)},
		{"admin", role("admin"), "", is(presence.Admin)},
		{"expert", role("expert"), "", is(presence.Expert)},
		{"bot", role("bot"), "", is(presence.Bot)},
		{"upper case", role("OPERATOR"), "", is(presence.Operator)},
		{"mixed case", role("MaNaGeR"), "", is(presence.Manager)},
		{"escaped", role(`\u0062ot`), "", is(presence.Bot)},
		{"null", withUser(`"role":null`), "", absent},
		{"null after a value", withUser(`"role":"bot","role":null`), "", absent},
		{"unknown", role("root"), "role", nil},
		{"empty", role(""), "role", nil},
		{"padded", role(" bot"), "role", nil},
		{"Kelvin sign for k", role("\u212a"), "role", nil},
		{"number", withUser(`"role":1`), "role", nil},
		{"array", withUser(`"role":["bot"]`), "role", nil},
		{"invalid before a valid one", withUser(`"role":"root","role":"bot"`), "role", nil},
	})
}

func TestDecodeStatuses(t *testing.T) {
	for _, f := range []struct {
		field string
		doc   func(value string) string
		get   func(presence.Event) (presence.Status, bool)
	}{
		{
			"availabilityStatus",
			func(v string) string { return withUser(`"availabilityStatus":` + v) },
			func(ev presence.Event) (presence.Status, bool) {
				return ev.Availability, ev.Has(presence.HasAvailability)
			},
		},
		{
			"chat.availability",
			func(v string) string { return withUser(`"chat":{"availability":` + v + `}`) },
			func(ev presence.Event) (presence.Status, bool) { return ev.Chat, ev.Has(presence.HasChat) },
		},
	} {
		is := func(want presence.Status) func(presence.Event) bool {
			return func(ev presence.Event) bool { st, ok := f.get(ev); return ok && st == want }
		}
		absent := func(ev presence.Event) bool { st, ok := f.get(ev); return !ok && st == presence.ToggleOff }
		t.Run(f.field, func(t *testing.T) {
			runRuleTests(t, []ruleTest{
				{"AVAILABLE", f.doc(`"AVAILABLE"`), "", is(presence.Available)},
				{"BUSY", f.doc(`"BUSY"`), "", is(presence.Busy)},
				{"TOGGLE_OFF", f.doc(`"TOGGLE_OFF"`), "", is(presence.ToggleOff)},
				{"lower case", f.doc(`"busy"`), "", is(presence.Busy)},
				{"mixed case", f.doc(`"Toggle_Off"`), "", is(presence.ToggleOff)},
				{"null", f.doc(`null`), "", absent},
				{"unknown", f.doc(`"AWAY"`), f.field, nil},
				{"hyphen", f.doc(`"TOGGLE-OFF"`), f.field, nil},
				{"empty", f.doc(`""`), f.field, nil},
				{"number", f.doc(`1`), f.field, nil},
				{"bool", f.doc(`true`), f.field, nil},
			})
		})
	}
}

func TestDecodeLists(t *testing.T) {
	for _, l := range []struct {
		name string
		bit  presence.Fields
		get  func(presence.Event) []string
	}{
		{"groupIds", presence.HasGroups, func(ev presence.Event) []string { return ev.GroupIDs }},
		{"projectIds", presence.HasProjects, func(ev presence.Event) []string { return ev.ProjectIDs }},
		{"routingGroupIds", presence.HasRoutingGroups, func(ev presence.Event) []string { return ev.RoutingGroupIDs }},
	} {
		doc := func(v string) string { return withUser(`"` + l.name + `":` + v) }
		is := func(want ...string) func(presence.Event) bool {
			return func(ev presence.Event) bool { return ev.Has(l.bit) && slices.Equal(l.get(ev), want) }
		}
		isN := func(n int) func(presence.Event) bool {
			return func(ev presence.Event) bool { return ev.Has(l.bit) && len(l.get(ev)) == n }
		}
		absent := func(ev presence.Event) bool { return !ev.Has(l.bit) && len(l.get(ev)) == 0 }
		t.Run(l.name, func(t *testing.T) {
			runRuleTests(t, []ruleTest{
				{"two", doc(`["a","b"]`), "", is("a", "b")},
				{"empty: clears the set", doc(`[]`), "", is()},
				{"null", doc(`null`), "", absent},
				{"null after a list", doc(`["a"],"` + l.name + `":null`), "", absent},
				{"last list wins", doc(`["a"],"` + l.name + `":["b"]`), "", is("b")},
				{"duplicates collapse in order", doc(`["b","a","b","c","a"]`), "", is("b", "a", "c")},
				{"escaped duplicate", doc(`["a","\u0061"]`), "", is("a")},
				{"256", doc(ids("g", 256)), "", isN(256)},
				{"257", doc(ids("g", 257)), l.name, nil},
				{"257 as sent, 1 once collapsed", doc(`[` + strings.Repeat(`"a",`, 256) + `"a"]`), l.name, nil},
				{"256 as sent, many duplicates", doc(`[` + strings.Repeat(`"a","b",`, 127) + `"a","c"]`), "", is("a", "b", "c")},
				{"many distinct and duplicated", doc(`[` + strings.Trim(ids("g", 128), "[]") + "," + strings.Trim(ids("g", 128), "[]") + `]`), "", isN(128)},
				{"id of 128 bytes", doc(`["` + strings.Repeat("i", 128) + `"]`), "", is(strings.Repeat("i", 128))},
				{"id of 129 bytes", doc(`["a","` + strings.Repeat("i", 129) + `"]`), l.name + "[1]", nil},
				{"empty id", doc(`["a","b",""]`), l.name + "[2]", nil},
				{"number id", doc(`["a",1]`), l.name + "[1]", nil},
				{"null id", doc(`[null]`), l.name + "[0]", nil},
				{"array id", doc(`[["a"]]`), l.name + "[0]", nil},
				{"string", doc(`"a"`), l.name, nil},
				{"object", doc(`{"a":1}`), l.name, nil},
				{"number", doc(`1`), l.name, nil},
				{"trailing comma", doc(`["a",]`), "json", nil},
				{"no comma", doc(`["a" "b"]`), "json", nil},
			})
		})
	}
}

func TestDecodeChat(t *testing.T) {
	has := func(f presence.Fields) func(presence.Event) bool {
		return func(ev presence.Event) bool { return ev.Fields == f }
	}
	slots := func(max, cur uint16) func(presence.Event) bool {
		return func(ev presence.Event) bool {
			return ev.Has(presence.HasMaxSlots|presence.HasCurrentSlots) && ev.MaxSlots == max && ev.CurrentSlots == cur
		}
	}
	chat := func(members string) string { return withUser(`"chat":{` + members + `}`) }
	runRuleTests(t, []ruleTest{
		{"null", withUser(`"chat":null`), "", has(0)},
		{"empty", chat(``), "", has(0)},
		{"all null", chat(`"availability":null,"maxSlots":null,"currentSlots":null`), "", has(0)},
		{"0 and 1000", chat(`"maxSlots":0,"currentSlots":1000`), "", slots(0, 1000)},
		{"current above max", chat(`"maxSlots":2,"currentSlots":5`), "", slots(2, 5)},
		{"spaces", chat(` "maxSlots" : 7 , "currentSlots" : 8 `), "", slots(7, 8)},
		{"a later chat replaces it", withUser(`"chat":{"maxSlots":3},"chat":{"currentSlots":4}`), "", has(presence.HasCurrentSlots)},
		{"a later null removes it", withUser(`"chat":{"maxSlots":3},"chat":null`), "", has(0)},
		{"unknown members", chat(`"x":{"maxSlots":"no"},"maxSlots":1,"currentSlots":2,"y":[1]`), "", slots(1, 2)},
		{"string", withUser(`"chat":"BUSY"`), "chat", nil},
		{"array", withUser(`"chat":[]`), "chat", nil},
		{"number", withUser(`"chat":1`), "chat", nil},
		{"maxSlots 1001", chat(`"maxSlots":1001`), "chat.maxSlots", nil},
		{"maxSlots -1", chat(`"maxSlots":-1`), "chat.maxSlots", nil},
		{"maxSlots -0", chat(`"maxSlots":-0`), "chat.maxSlots", nil},
		{"maxSlots 1.0", chat(`"maxSlots":1.0`), "chat.maxSlots", nil},
		{"maxSlots 1.5", chat(`"maxSlots":1.5`), "chat.maxSlots", nil},
		{"maxSlots 1e2", chat(`"maxSlots":1e2`), "chat.maxSlots", nil},
		{"maxSlots 1E2", chat(`"maxSlots":1E2`), "chat.maxSlots", nil},
		{"maxSlots 0e0", chat(`"maxSlots":0e0`), "chat.maxSlots", nil},
		{"maxSlots huge", chat(`"maxSlots":100000000000000000000000000`), "chat.maxSlots", nil},
		{"maxSlots string", chat(`"maxSlots":"3"`), "chat.maxSlots", nil},
		{"maxSlots bool", chat(`"maxSlots":true`), "chat.maxSlots", nil},
		{"maxSlots leading zero", chat(`"maxSlots":03`), "json", nil},
		{"maxSlots plus sign", chat(`"maxSlots":+3`), "json", nil},
		{"currentSlots 1001", chat(`"currentSlots":1001`), "chat.currentSlots", nil},
		{"currentSlots -1", chat(`"currentSlots":-1`), "chat.currentSlots", nil},
		{"currentSlots 2.0", chat(`"currentSlots":2.0`), "chat.currentSlots", nil},
		{"currentSlots 1e1", chat(`"currentSlots":1e1`), "chat.currentSlots", nil},
		{"currentSlots string", chat(`"currentSlots":"1"`), "chat.currentSlots", nil},
		{"availability unknown", chat(`"availability":"ON"`), "chat.availability", nil},
		{"slots at the top level are unknown", withUser(`"maxSlots":5000`), "", has(0)},
	})
}

func TestDecodeNullIsAbsent(t *testing.T) {
	doc := `{"userId":"u","ts":null,"role":null,"groupIds":null,"projectIds":null,
		"routingGroupIds":null,"availabilityStatus":null,"chat":null,"other":null}`
	ev := presence.Event{Type: presence.Heartbeat}
	if err := presence.Decode([]byte(doc), &ev); err != nil {
		t.Fatal(err)
	}
	checkSame(t, ev, presence.Event{Type: presence.Heartbeat, UserID: "u"})
}

func TestDecodeUnknownFields(t *testing.T) {
	want := presence.Event{UserID: "u", Fields: presence.HasRole, Role: presence.Bot}
	for _, tt := range []struct{ name, members string }{
		{"scalars", `"a":1,"b":-1.5e-7,"c":true,"d":false,"e":null,"f":"x"`},
		{"nested", `"a":{"b":[1,{"c":[[],{}]},"d"],"e":{}},"f":[]`},
		{"string with escapes", `"a":"\"}]\\\n\u00e9\ud83d\ude00\/"`},
		{"keys with escapes", `"\u0061":1,"\"":2,"{":{"}":"]"}`},
		{"role inside an unknown object is not the role", `"x":{"role":"admin","userId":7}`},
		{"wrong-case known keys", `"Role":"admin","USERID":1,"groupids":5,"Chat":"x"`},
		{"whitespace everywhere", " \t\n\r\"a\" \n: [ 1 , { \"b\" : null } ] "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ev presence.Event
			doc := `{"userId":"u",` + tt.members + `,"role":"bot"}`
			if err := presence.Decode([]byte(doc), &ev); err != nil {
				t.Fatalf("Decode(%s): %v", doc, err)
			}
			checkSame(t, ev, want)
		})
	}
}

func TestDecodeEscapes(t *testing.T) {
	for _, tt := range []struct{ name, json, want string }{
		{"quote and backslash", `a\"b\\c`, `a"b\c`},
		{"solidus", `a\/b`, "a/b"},
		{"controls", `\b\f\n\r\t`, "\b\f\n\r\t"},
		{"BMP", `caf\u00e9 \u20AC`, "café €"},
		{"surrogate pair", `\ud83d\ude00`, "😀"},
		{"raw UTF-8", "😀é", "😀é"},
		{"lone high surrogate", `a\ud800b`, "a\ufffdb"},
		{"lone low surrogate", `\udc00`, "\ufffd"},
		{"high then non-surrogate escape", `\ud800\u0041`, "\ufffdA"},
		{"two highs then a low", `\ud800\ud83d\ude00`, "\ufffd😀"},
		{"escaped U+FFFD", `\ufffd`, "\ufffd"},
		{"NUL", `\u0000`, "\x00"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := `{"userId":"` + tt.json + `","groupIds":["` + tt.json + `"]}`
			var ev presence.Event
			if err := presence.Decode([]byte(doc), &ev); err != nil {
				t.Fatalf("Decode(%s): %v", doc, err)
			}
			if ev.UserID != tt.want || len(ev.GroupIDs) != 1 || ev.GroupIDs[0] != tt.want {
				t.Errorf("Decode(%s): userId %q, groupIds %q, want %q", doc, ev.UserID, ev.GroupIDs, tt.want)
			}
			// encoding/json, the oracle, reads the same strings.
			var std struct{ UserID string }
			if err := json.Unmarshal([]byte(doc), &std); err != nil || std.UserID != ev.UserID {
				t.Errorf("encoding/json reads %q (%v), Decode %q", std.UserID, err, ev.UserID)
			}
		})
	}
}

func TestDecodeSyntax(t *testing.T) {
	for _, tt := range []struct{ name, doc, rule string }{
		{"empty", ``, "unexpected end at byte 0"},
		{"only spaces", "  \n", "unexpected end at byte 3"},
		{"array", `[{"userId":"u"}]`, "must be one JSON object"},
		{"string", `"u"`, "must be one JSON object"},
		{"null", `null`, "must be one JSON object"},
		{"unclosed", `{"userId":"u"`, "unexpected end at byte 13"},
		{"unclosed string", `{"userId":"u`, "unexpected end at byte 12"},
		{"trailing garbage", `{"userId":"u"} x`, "data after the object at byte 15"},
		{"two objects", `{"userId":"u"}{"userId":"v"}`, "data after the object at byte 14"},
		{"trailing comma", `{"userId":"u",}`, `invalid character "}" at byte 14`},
		{"leading comma", `{,"userId":"u"}`, `invalid character "," at byte 1`},
		{"missing colon", `{"userId" "u"}`, `invalid character "\"" at byte 10`},
		{"single quotes", `{'userId':'u'}`, `invalid character "'" at byte 1`},
		{"bare key", `{userId:"u"}`, `invalid character "u" at byte 1`},
		{"control in string", "{\"userId\":\"a\tb\"}", `invalid character "\t" at byte 12`},
		{"bad escape", `{"userId":"a\x"}`, "invalid escape at byte 12"},
		{"short unicode escape", `{"userId":"\u12"}`, "invalid escape at byte 11"},
		{"invalid UTF-8", "{\"userId\":\"a\xffb\"}", "invalid UTF-8 at byte 12"},
		{"UTF-8 surrogate", "{\"userId\":\"\xed\xa0\x80\"}", "invalid UTF-8 at byte 11"},
		{"overlong UTF-8", "{\"userId\":\"\xc0\xaf\"}", "invalid UTF-8 at byte 11"},
		{"invalid UTF-8 in an unknown key", "{\"userId\":\"u\",\"\xff\":1}", "invalid UTF-8 at byte 15"},
		{"byte order mark", "\xef\xbb\xbf{\"userId\":\"u\"}", "must be one JSON object"},
		{"bad literal", `{"userId":"u","x":nul}`, `invalid character "}" at byte 21`},
		{"truncated literal", `{"userId":"u","x":tru`, "unexpected end at byte 21"},
		{"bad number", `{"userId":"u","x":1.}`, `invalid character "}" at byte 20`},
		{"hex number", `{"userId":"u","x":0x1}`, `invalid character "x" at byte 19`},
		{"NaN", `{"userId":"u","x":NaN}`, `invalid character "N" at byte 18`},
		{"unclosed array", `{"userId":"u","x":[1,2}`, `invalid character "}" at byte 22`},
		{"mismatched bracket", `{"userId":"u","x":{"a":1]}`, `invalid character "]" at byte 24`},
		{"comment", `{"userId":"u"/*c*/}`, `invalid character "/" at byte 13`},
		{"backslash at the end", `{"userId":"u\`, "invalid escape at byte 12"},
		{"bad escape in an id", `{"userId":"u","groupIds":["a\q"]}`, "invalid escape at byte 28"},
		{"minus alone as slots", `{"userId":"u","chat":{"maxSlots":-}}`, `invalid character "}" at byte 34`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var ev presence.Event
			err := presence.Decode([]byte(tt.doc), &ev)
			checkFieldError(t, err, "json")
			var fe *presence.FieldError
			if errors.As(err, &fe) && fe.Rule != tt.rule {
				t.Errorf("Decode(%q): rule %q, want %q", tt.doc, fe.Rule, tt.rule)
			}
			if json.Valid([]byte(tt.doc)) && utf8.ValidString(tt.doc) && tt.rule != "must be one JSON object" {
				t.Errorf("encoding/json finds %q valid", tt.doc)
			}
		})
	}
}

// TestDecodeAcceptsWhatJSONValidAccepts takes encoding/json as the oracle of
// the syntax: on payloads whose known fields are all valid, Decode succeeds
// exactly when json.Valid does (except for invalid UTF-8, which json.Valid
// lets through and Decode rejects).
func TestDecodeAcceptsWhatJSONValidAccepts(t *testing.T) {
	bodies := []string{
		``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `{"a" 1}`, `{"a"::1}`, `{"a":}`, `{:1}`,
		`[1,2]`, `[1,,2]`, `[,]`, `[1 2]`, `[`, `]`, `{`, `}`, `{"a":[}`, `{"a":{]}`,
		`"x"`, `"\u00"`, `"\uZZZZ"`, `"\a"`, `"\'"`, `"\U0041"`, `"\u0041"`, `"\ud800"`,
		`0`, `-0`, `-`, `01`, `1.`, `.1`, `1e`, `1e+`, `1E-5`, `+1`, `1.5e3`, `-0.0e-0`, `1_000`,
		`true`, `false`, `null`, `True`, `nul`, `nulll`, `tru e`, `NaN`, `Infinity`,
		" \t\r\n1", "\v1", "\f1", "\u00a01", `"a` + "\x00" + `b"`, `"a` + "\x7f" + `b"`,
		`[[[[[[[[[[]]]]]]]]]]`, `[[[]]`, `[]]`, `{"a":{"b":{"c":{}}}}`,
		`"` + strings.Repeat(`\\`, 10) + `"`, `"` + strings.Repeat(`\\`, 9) + `"`,
	}
	for _, body := range bodies {
		for _, doc := range []string{
			`{"userId":"u","x":` + body + `}`,
			`{"userId":"u","chat":{"x":` + body + `}}`,
			`{"x":` + body + `,"userId":"u"}`,
			`{"userId":"u"}` + body,
		} {
			var ev presence.Event
			err := presence.Decode([]byte(doc), &ev)
			if valid := json.Valid([]byte(doc)); (err == nil) != valid {
				t.Errorf("Decode(%q) = %v; json.Valid = %v", doc, err, valid)
			}
		}
	}
}

// TestDecodeNesting checks the nesting bound against json.Valid's.
func TestDecodeNesting(t *testing.T) {
	// The payload object is at depth 1; json.Valid accepts depth 10000.
	for _, depth := range []int{2, 100, 9999, 10000, 10001, 100000} {
		n := depth - 1 // arrays inside the object
		for _, open := range []string{"[", `{"a":`} {
			close := map[string]string{"[": "]", `{"a":`: "}"}[open]
			doc := `{"userId":"u","x":` + strings.Repeat(open, n) + strings.Repeat(close, n) + `}`
			if open != "[" {
				doc = `{"userId":"u","x":` + strings.Repeat(open, n) + `1` + strings.Repeat(close, n) + `}`
			}
			var ev presence.Event
			err := presence.Decode([]byte(doc), &ev)
			if valid := json.Valid([]byte(doc)); (err == nil) != valid {
				t.Errorf("depth %d of %s: Decode: %v; json.Valid: %v", depth, open, err, valid)
			}
			if err != nil {
				checkFieldError(t, err, "json")
			}
		}
	}
}

func TestDecodeResetsAndReuses(t *testing.T) {
	ev := presence.Event{Type: presence.Profile}
	if err := presence.Decode([]byte(sampleJSON), &ev); err != nil {
		t.Fatal(err)
	}
	if err := presence.Decode([]byte(`{"userId":"7","projectIds":["x","y"]}`), &ev); err != nil {
		t.Fatal(err)
	}
	checkSame(t, ev, presence.Event{
		Type: presence.Profile, UserID: "7", Fields: presence.HasProjects, ProjectIDs: []string{"x", "y"},
	})

	// An error leaves no id list behind.
	if err := presence.Decode([]byte(`{"groupIds":["a"]}`), &ev); err == nil {
		t.Fatal("no error without a userId")
	}
	if ev.GroupIDs != nil && len(ev.GroupIDs) != 0 || ev.ProjectIDs != nil || ev.RoutingGroupIDs != nil {
		t.Errorf("lists after an error: %q %q %q", ev.GroupIDs, ev.ProjectIDs, ev.RoutingGroupIDs)
	}

	// The id lists are separate: appending to one does not touch the next.
	if err := presence.Decode([]byte(sampleJSON), &ev); err != nil {
		t.Fatal(err)
	}
	_ = append(ev.ProjectIDs, "clobber")
	if ev.RoutingGroupIDs[0] != "r1" {
		t.Errorf("appending to ProjectIDs changed RoutingGroupIDs: %q", ev.RoutingGroupIDs)
	}
}

func TestDecodeKeepsNoReferenceToData(t *testing.T) {
	data := []byte(sampleJSON)
	var ev presence.Event
	if err := presence.Decode(data, &ev); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 'x'
	}
	checkSame(t, ev, func() presence.Event { e := sampleEvent(); e.Type = 0; return e }())
}

func TestDecodeAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocations differ under -cover and -race")
	}
	data := []byte(sampleJSON)
	var ev presence.Event
	fresh := testing.AllocsPerRun(100, func() {
		ev = presence.Event{}
		_ = presence.Decode(data, &ev)
	})
	reused := testing.AllocsPerRun(100, func() { _ = presence.Decode(data, &ev) })
	// One string for all the event's strings, one array for its ids.
	if fresh > 2 || reused > 1 {
		t.Errorf("allocations per Decode: %v into a new Event, %v into a reused one; want 2 and 1", fresh, reused)
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	var ev presence.Event
	err := presence.Decode([]byte(`{"userId":"u","chat":{"maxSlots":1001}}`), &ev)
	if want := "presence: chat.maxSlots: must be an integer from 0 to 1000"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	err = presence.Decode([]byte(`{"userId":"u","groupIds":["a",""]}`), &ev)
	if want := "presence: groupIds[1]: must be a string of 1 to 128 bytes"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

// TestDecodeStringBoundaries puts each kind of byte that ends the quick scan of
// a string at every offset of the words it reads, with encoding/json as the
// oracle.
func TestDecodeStringBoundaries(t *testing.T) {
	for _, special := range []string{`"`, `\\`, `\"`, `\u00e9`, "\x00", "\x1f", " ", "\x7f", "é", "😀", "\xff", "~"} {
		for pos := range 20 {
			for tail := range 10 {
				s := strings.Repeat("a", pos) + special + strings.Repeat("b", tail)
				doc := `{"userId":"` + s + `","x":"` + s + `"}`
				var ev presence.Event
				err := presence.Decode([]byte(doc), &ev)
				var std struct{ UserID string }
				stdErr := json.Unmarshal([]byte(doc), &std)
				switch {
				case (err == nil) != (stdErr == nil && utf8.ValidString(doc)):
					t.Fatalf("Decode(%q): %v; encoding/json: %v", doc, err, stdErr)
				case err == nil && ev.UserID != std.UserID:
					t.Fatalf("Decode(%q): userId %q; encoding/json: %q", doc, ev.UserID, std.UserID)
				}
			}
		}
	}
}
