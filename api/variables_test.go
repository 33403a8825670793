package api

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	graphql "github.com/graph-gophers/graphql-go"

	"github.com/presenced/presenced"
	"github.com/presenced/presenced/engine"
)

// coerceSDL has what the API's schema has not yet: arguments and input
// fields with defaults of several types (the coming connectedUsers), an
// interface, a union and a directive with a defaulted argument.
const coerceSDL = `
schema { query: Query subscription: Subscription }
directive @cap(max: Int = 7) on FIELD
enum Order { USER_ID NAME }
input Page { first: Int = 100, after: String, order: Order = USER_ID }
interface Node { id(format: String = "plain"): ID! }
type Thing implements Node { id(format: String = "plain"): ID! }
union Any = Thing
type Query {
  users(first: Int = 100, after: String, orderBy: Order = USER_ID, page: Page): [String!]!
  other(first: Int = 50, ids: [ID!]): String!
  same(first: Int = 100): String!
  node: Node
  any: Any
}
type Subscription { live(minIntervalMs: Int = 1000, first: Int = 100): String! }
`

func TestCoerceVariables(t *testing.T) {
	schema := graphql.MustParseSchema(coerceSDL, nil).AST()
	cases := []struct {
		name, query, op string
		vars            map[string]any
		want            map[string]any // nil: vars unchanged
		err             string
	}{
		{name: "no variables", query: `{ users }`, vars: map[string]any{"x": 1}},
		{name: "declared default, not sent", query: `query($n: Int = 5) { users(first: $n) }`,
			want: map[string]any{"n": int32(5)}},
		{name: "declared default, sent", query: `query($n: Int = 5) { users(first: $n) }`,
			vars: map[string]any{"n": 7.0}},
		{name: "declared default, explicit null", query: `query($n: Int = 5) { users(first: $n) }`,
			vars: map[string]any{"n": nil}},
		{name: "no default, not sent: the argument's default", query: `query($n: Int) { users(first: $n) }`,
			want: map[string]any{"n": int32(100)}},
		{name: "no default, explicit null", query: `query($n: Int) { users(first: $n) }`,
			vars: map[string]any{"n": nil}},
		{name: "no default, not sent, argument without default: unset", query: `query($a: String) { users(after: $a) }`},
		{name: "enum default of the argument", query: `query($o: Order) { users(orderBy: $o) }`,
			want: map[string]any{"o": "USER_ID"}},
		{name: "input field default", query: `query($n: Int, $o: Order) { users(page: {first: $n, order: $o}) }`,
			want: map[string]any{"n": int32(100), "o": "USER_ID"}},
		{name: "non-null not sent: graphql-go's error", query: `query($n: Int!) { users(first: $n) }`},
		{name: "list item: null", query: `query($i: ID) { other(ids: [$i]) }`},
		{name: "same default twice", query: `query($n: Int) { a: users(first: $n) b: same(first: $n) }`,
			want: map[string]any{"n": int32(100)}},
		{name: "defaults differ", query: "query(\n  $n: Int) { users(first: $n) other(first: $n) }",
			err: `Variable "$n" is not provided and is passed to positions whose defaults differ: first (default 100) and first (default 50)`},
		{name: "no default, and a list item: both null", query: `query($n: ID) { other(ids: [$n]) users(after: $n) }`},
		{name: "default and none", query: `query($n: String) { users(after: $n) node { id(format: $n) } }`,
			err: `after (no default) and format (default "plain")`},
		{name: "directive argument", query: `query($m: Int) { users @cap(max: $m) }`,
			want: map[string]any{"m": int32(7)}},
		{name: "interface field", query: `query($f: String) { node { id(format: $f) } }`,
			want: map[string]any{"f": "plain"}},
		{name: "inline fragment on a union member", query: `query($f: String) { any { ... on Thing { id(format: $f) } } }`,
			want: map[string]any{"f": "plain"}},
		{name: "fragment spread twice, cycle-safe",
			query: `query($n: Int) { ...A ...A } fragment A on Query { users(first: $n) ...B } fragment B on Query { same(first: $n) }`,
			want:  map[string]any{"n": int32(100)}},
		{name: "fragment defined first",
			query: `fragment A on Query { users(first: $n) } query Q($n: Int) { ...A }`,
			want:  map[string]any{"n": int32(100)}},
		{name: "operationName chooses the subscription",
			query: `query Q($n: Int = 1) { users(first: $n) } subscription S($m: Int, $k: Int = 3) { live(minIntervalMs: $m, first: $k) }`,
			op:    "S", want: map[string]any{"m": int32(1000), "k": int32(3)}},
		{name: "operationName chooses the query",
			query: `query Q($n: Int = 1) { users(first: $n) } subscription S($m: Int) { live(minIntervalMs: $m) }`,
			op:    "Q", want: map[string]any{"n": int32(1)}},
		{name: "several operations, no name: graphql-go's error",
			query: `query Q($n: Int = 1) { users(first: $n) } query R { users }`},
		{name: "unknown operation: graphql-go's error", query: `query Q($n: Int = 1) { users(first: $n) }`, op: "Nope"},
		{name: "invalid default: graphql-go's error, once", query: `query($o: Order = NOPE, $p: Page = {nope: 1}) { users(orderBy: $o, page: $p) }`},
		{name: "syntax error: graphql-go's", query: `query($n: Int = 1) { users(first: $n) `},
		{name: "unknown field: graphql-go's error", query: `query($n: Int) { nope(first: $n) }`},
		{name: "unknown argument is no conflict: graphql-go's error", query: `query($n: Int) { users(first: $n, nope: [$n]) }`,
			want: map[string]any{"n": int32(100)}},
		{name: "undeclared variables sent are kept", query: `query($n: Int = 1) { users(first: $n) }`,
			vars: map[string]any{"z": "x"}, want: map[string]any{"z": "x", "n": int32(1)}},
		{name: "literals", query: `query(
			# a comment, and commas
			$a: [ID!] = ["x\u00e9\u{1F600}\uD83D\uDE00\/", """
			    two
			      lines
			"""],
			$b: Page = {first: -3, after: "y", order: NAME},
			$c: Float = 1.5e3, $d: Boolean = false, $e: Int = 3000000000, $f: String = null
		) { other(ids: $a) users(page: $b, first: $e, after: $f) node { id(format: $f) } }`,
			vars: map[string]any{"c": 1.0, "d": true},
			want: map[string]any{
				"a": []any{"xé😀😀/", "two\n  lines"},
				"b": map[string]any{"first": int32(-3), "after": "y", "order": "NAME"},
				"c": 1.0, "d": true, "e": int64(3000000000), "f": nil,
			}},
		{name: "a $ in a string only", query: `{ users(after: "$x") }`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := coerceVariables(schema, c.query, c.op, c.vars)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Message, c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				if err.Extensions["code"] != "BAD_USER_INPUT" || err.Extensions["variable"] == nil || len(err.Locations) != 1 {
					t.Errorf("error %+v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want == nil {
				if !reflect.DeepEqual(got, c.vars) {
					t.Fatalf("got %#v, want vars unchanged %#v", got, c.vars)
				}
				return
			}
			for k, v := range c.vars {
				if _, ok := want[k]; !ok {
					want[k] = v
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

// TestCoerceLikeExec checks the declared defaults against graphql-go's own:
// Exec fills them into the map it is given, with ast.Value.Deserialize.
func TestCoerceLikeExec(t *testing.T) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`query($f: ConnectedUsersIndicatorFilters = {roles: [BOT, OPERATOR], userIds: ["a\u00e9", """b"""], groupIds: []}) { connectedUsersIndicator(filters: $f) { connectedUsersCount } }`,
		`query($u: [ID!] = "one", $g: [ID!] = null) { connectedUsersIndicator(filters: {userIds: $u, groupIds: $g}) { connectedUsersCount } }`,
		`query($by: IndicatorDimension = ROLE) { connectedUsersIndicatorBreakdown(by: $by) { key } }`,
	} {
		got, qerr := coerceVariables(s.schema.AST(), q, "", nil)
		if qerr != nil {
			t.Fatal(qerr)
		}
		filled := map[string]any{}
		ctx := withTenant(context.Background(), "t")
		if resp := s.schema.Exec(ctx, q, "", filled); len(resp.Errors) > 0 {
			t.Fatalf("%s: %v", q, resp.Errors)
		}
		if !reflect.DeepEqual(got, filled) {
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(filled)
			t.Errorf("%s\ngot  %s %#v\nExec %s %#v", q, a, got, b, filled)
		}
	}
}

// TestCoerceSchema keeps the test schema's shapes honest: the API's schema
// must parse with the same library.
func TestCoerceSchema(t *testing.T) {
	if _, err := graphql.ParseSchema(presenced.Schema, nil); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCoerceVariables is the cost coerceVariables adds to a request.
func BenchmarkCoerceVariables(b *testing.B) {
	schema := graphql.MustParseSchema(presenced.Schema, nil).AST()
	for _, c := range []struct {
		name, query string
		vars        map[string]any
	}{
		{"no variables", `{ connectedUsersIndicator { connectedUsersCount countByChatAvailabilityStatus { available busy toggleOff } } }`, nil},
		{"sent", `query Q($f: ConnectedUsersIndicatorFilters) { connectedUsersIndicator(filters: $f) { connectedUsersCount } }`,
			map[string]any{"f": map[string]any{}}},
		{"not sent", `query Q($f: ConnectedUsersIndicatorFilters) { connectedUsersIndicator(filters: $f) { connectedUsersCount } }`, nil},
		{"default filled", `subscription S($m: Int = 100) { connectedUsersIndicatorUpdated(minIntervalMs: $m) { connectedUsersCount } }`, nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := coerceVariables(schema, c.query, "", c.vars); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzCoerceVariables reads arbitrary documents: whatever the text, no
// panic, the variables sent come back as they were, and an error is the
// one of a variable whose positions disagree.
func FuzzCoerceVariables(f *testing.F) {
	schema := graphql.MustParseSchema(coerceSDL, nil).AST()
	for _, q := range []string{
		`query($n: Int = 5, $a: String) { users(first: $n, after: $a) }`,
		`query Q($n: Int) { ...A } fragment A on Query { users(first: $n) ...A } subscription S($m: Int) { live(minIntervalMs: $m) }`,
		`query($p: Page = {first: -1, order: NAME, after: "\u{1F600}"}, $q: [ID!] = ["""b"""]) { users(page: $p) other(ids: $q) }`,
		`query($n: Int) { users(first: $n) other(first: $n) }`,
		`query($f: String) { any { ... on Thing { id(format: $f) } } node { ... { id } } }`,
		`{ users @cap(max: 1) }`,
	} {
		f.Add(q, "", true)
		f.Add(q, "Q", false)
	}
	f.Fuzz(func(t *testing.T, query, op string, sendN bool) {
		vars := map[string]any{"x": "sent"}
		if sendN {
			vars["n"] = nil
		}
		got, err := coerceVariables(schema, query, op, vars)
		if err != nil {
			if !strings.Contains(err.Message, "positions whose defaults differ") {
				t.Fatalf("error %v", err)
			}
			return
		}
		for k, v := range vars {
			if gv, ok := got[k]; !ok || gv != v {
				t.Fatalf("variable %s: %v, sent %v", k, gv, v)
			}
		}
	})
}
