package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// bodySeeds are bodies decodeBody takes, and bodies it leaves to
// json.Unmarshal.
var bodySeeds = []string{
	`{"query":"{ __typename }"}`,
	`{"query":"query Q($f: F) {\n  x(f: $f) { a }\n}","variables":{"f":{"groupIds":["g1","g2"],"roles":["OPERATOR"],"userIds":[]}},"operationName":"Q"}`,
	` { "variables" : { "a" : [ 1 , -0.5e+3 , 0 , true , false , null , { } , [ ] ] } , "query" : "\"\\\/\b\f\n\r\t\u00e9\u2028" } `,
	`{"query":null,"variables":null,"operationName":null}`,
	`{"query":"é日本","variables":{"é":"\u0000"}}`,
	`{}`,
	`null`,
	`{"QUERY":"x"}`,
	`{"query":"a","query":"b"}`,
	`{"query":"\ud83d\ude00"}`,
	`{"query":"\ud83d"}`,
	`{"query":"x","extensions":{}}`,
	`{"query":"x","variables":[1]}`,
	`{"query":1}`,
	`{"query":"x"} {}`,
	`{"query":"x","variables":{"n":1e400}}`,
	`{"query":"x","variables":{"n":01}}`,
	"{\"query\":\"\xff\"}",
	`{"query":"x","variables":{"a":{"b":{"c":[[[[1]]]]}}}}`,
	`{"query":"x","variables":{"a":1,"a":2}}`,
	`{"qu\u0065ry":"x"}`,
	`{"query":"x",}`,
	`{"query":"x"`,
}

// FuzzDecodeBody checks that whatever body decodeBody decodes, json.Unmarshal
// decodes too, to the same request.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"query":"x","variables":{"d":` + strings.Repeat("[", maxFastNesting+1) + strings.Repeat("]", maxFastNesting+1) + `}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var got gqlRequest
		if !decodeBody(body, &got) {
			return
		}
		var want gqlRequest
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("decodeBody took %q, json.Unmarshal: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\ndecodeBody     %#v\njson.Unmarshal %#v", body, got, want)
		}
	})
}

// TestDecodeBodyTakes checks which seeds decodeBody decodes itself, so that
// the usual bodies do not fall back to json.Unmarshal unnoticed.
func TestDecodeBodyTakes(t *testing.T) {
	takes := map[string]bool{
		bodySeeds[0]: true, bodySeeds[1]: true, bodySeeds[2]: true, bodySeeds[3]: true,
		bodySeeds[4]: true, bodySeeds[5]: true, bodySeeds[18]: true, bodySeeds[19]: true,
	}
	for _, s := range bodySeeds {
		var req gqlRequest
		if got := decodeBody([]byte(s), &req); got != takes[s] {
			t.Errorf("decodeBody(%s) = %v, want %v", s, got, takes[s])
		}
	}
}
