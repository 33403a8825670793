package api

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// This file decodes the usual body of POST /graphql, an object of "query",
// "operationName" and "variables", into a gqlRequest in one pass, to the
// very values json.Unmarshal gives (the variables as map[string]any,
// []any, string, float64, bool and nil), without its validating pre-scan
// and its reflection. Anything it does not take as it comes (another key,
// a key twice, a key in another case, a surrogate escape, bytes that are
// not UTF-8, a number float64 cannot hold, deep nesting, any error) makes
// it give up, and decodeRequest falls back to json.Unmarshal: one decoder
// decides what a body means. FuzzDecodeBody checks the two agree.

// maxFastNesting bounds the nesting of the variables decoded here; deeper
// ones are left to json.Unmarshal (which stops at 10,000).
const maxFastNesting = 100

// decodeBody decodes body into req and reports whether it could.
func decodeBody(body []byte, req *gqlRequest) bool {
	d := bodyDecoder{src: body}
	d.space()
	if !d.eat('{') {
		return false
	}
	var seen [3]bool
	d.space()
	if d.eat('}') {
		return d.end()
	}
	for {
		d.space()
		key, ok := d.key()
		if !ok {
			return false
		}
		d.space()
		if !d.eat(':') {
			return false
		}
		d.space()
		var field int
		switch string(key) {
		case "query":
			field = 0
		case "operationName":
			field = 1
		case "variables":
			field = 2
		default:
			return false
		}
		if seen[field] {
			return false
		}
		seen[field] = true
		if d.literal("null") {
			// null leaves the field as it is, as json.Unmarshal does.
		} else if field == 2 {
			if d.peek() != '{' {
				return false
			}
			v, ok := d.value(0)
			if !ok {
				return false
			}
			req.Variables = v.(map[string]any)
		} else {
			s, ok := d.str()
			if !ok {
				return false
			}
			if field == 0 {
				req.Query = s
			} else {
				req.OperationName = s
			}
		}
		d.space()
		if d.eat('}') {
			return d.end()
		}
		if !d.eat(',') {
			return false
		}
	}
}

type bodyDecoder struct {
	src []byte
	pos int
}

func (d *bodyDecoder) space() {
	for d.pos < len(d.src) {
		switch d.src[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// end reports whether only white space follows.
func (d *bodyDecoder) end() bool {
	d.space()
	return d.pos == len(d.src)
}

func (d *bodyDecoder) peek() byte {
	if d.pos < len(d.src) {
		return d.src[d.pos]
	}
	return 0
}

func (d *bodyDecoder) eat(c byte) bool {
	if d.peek() == c {
		d.pos++
		return true
	}
	return false
}

func (d *bodyDecoder) literal(lit string) bool {
	if len(d.src)-d.pos >= len(lit) && string(d.src[d.pos:d.pos+len(lit)]) == lit {
		d.pos += len(lit)
		return true
	}
	return false
}

// key reads a key of the request object, as the bytes between its quotes:
// one with an escape is left to json.Unmarshal.
func (d *bodyDecoder) key() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start := d.pos
	for d.pos < len(d.src) {
		switch c := d.src[d.pos]; {
		case c == '"':
			d.pos++
			return d.src[start : d.pos-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.pos++
	}
	return nil, false
}

// str reads a JSON string.
func (d *bodyDecoder) str() (string, bool) {
	if !d.eat('"') {
		return "", false
	}
	start := d.pos
	// The common case: no escape, ASCII or valid UTF-8.
	ascii := true
	for d.pos < len(d.src) {
		c := d.src[d.pos]
		switch {
		case c == '"':
			s := d.src[start:d.pos]
			d.pos++
			if !ascii && !utf8.Valid(s) {
				return "", false // json.Unmarshal replaces the bytes with U+FFFD
			}
			return string(s), true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.pos++
	}
	return "", false
}

// escaped reads the rest of a string from its first backslash, at d.pos;
// the string started at start.
func (d *bodyDecoder) escaped(start int) (string, bool) {
	out := make([]byte, 0, d.pos-start+32)
	out = append(out, d.src[start:d.pos]...)
	for d.pos < len(d.src) {
		c := d.src[d.pos]
		switch {
		case c == '"':
			d.pos++
			if !utf8.Valid(out) {
				return "", false
			}
			// out is this string's alone: no copy (as strings.Builder).
			return unsafe.String(unsafe.SliceData(out), len(out)), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			d.pos++
			continue
		}
		if d.pos+1 >= len(d.src) {
			return "", false
		}
		e := d.src[d.pos+1]
		d.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if d.pos+4 > len(d.src) {
				return "", false
			}
			// Four hex digits, no sign nor prefix: ParseUint's rules in base 16.
			r, err := strconv.ParseUint(string(d.src[d.pos:d.pos+4]), 16, 32)
			if err != nil {
				return "", false
			}
			if utf16.IsSurrogate(rune(r)) {
				return "", false // pairs and lone halves: json.Unmarshal's rules
			}
			d.pos += 4
			out = utf8.AppendRune(out, rune(r))
		default:
			return "", false
		}
	}
	return "", false
}

// value reads any JSON value as json.Unmarshal does into an any.
func (d *bodyDecoder) value(depth int) (any, bool) {
	switch c := d.peek(); {
	case c == '"':
		return d.str()
	case c == '{':
		if depth >= maxFastNesting {
			return nil, false
		}
		d.pos++
		m := map[string]any{}
		d.space()
		if d.eat('}') {
			return m, true
		}
		for {
			d.space()
			k, ok := d.str()
			if !ok {
				return nil, false
			}
			d.space()
			if !d.eat(':') {
				return nil, false
			}
			d.space()
			v, ok := d.value(depth + 1)
			if !ok {
				return nil, false
			}
			m[k] = v
			d.space()
			if d.eat('}') {
				return m, true
			}
			if !d.eat(',') {
				return nil, false
			}
		}
	case c == '[':
		if depth >= maxFastNesting {
			return nil, false
		}
		d.pos++
		a := []any{}
		d.space()
		if d.eat(']') {
			return a, true
		}
		for {
			d.space()
			v, ok := d.value(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			d.space()
			if d.eat(']') {
				return a, true
			}
			if !d.eat(',') {
				return nil, false
			}
		}
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	}
	return nil, false
}

// number reads a JSON number as a float64.
func (d *bodyDecoder) number() (any, bool) {
	start := d.pos
	d.eat('-')
	switch c := d.peek(); {
	case c == '0':
		d.pos++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return nil, false
	}
	if d.eat('.') {
		if !d.digits() {
			return nil, false
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.pos++
		if c := d.peek(); c == '+' || c == '-' {
			d.pos++
		}
		if !d.digits() {
			return nil, false
		}
	}
	f, err := strconv.ParseFloat(string(d.src[start:d.pos]), 64)
	if err != nil {
		return nil, false // out of range: json.Unmarshal's error to give
	}
	return f, true
}

// digits reads one digit or more.
func (d *bodyDecoder) digits() bool {
	start := d.pos
	for d.pos < len(d.src) && '0' <= d.src[d.pos] && d.src[d.pos] <= '9' {
		d.pos++
	}
	return d.pos > start
}
