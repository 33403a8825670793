package api

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// This file reads GraphQL documents for coerceVariables: a lexer that
// splits them as graphql-go's does, and the decoding of constant values
// into what graphql-go's ast.Value.Deserialize makes of them.

// constValue reads the constant value at l into what graphql-go's
// ast.Value.Deserialize makes of it: int32 (int64 past 32 bits), float64,
// string, bool, nil, an enum value's name, []any, map[string]any.
func constValue(l *lexer, depth int) (any, bool) {
	if depth > maxNesting {
		return nil, false
	}
	switch {
	case l.is('-'):
		l.next()
		if l.kind != tokInt && l.kind != tokFloat {
			return nil, false
		}
		return number(l, "-"+l.text())
	case l.kind == tokInt || l.kind == tokFloat:
		return number(l, l.text())
	case l.kind == tokString:
		s, ok := unquote(l.text())
		l.next()
		return s, ok
	case l.kind == tokBlockString:
		s := blockString(l.text()[3 : len(l.text())-3])
		l.next()
		return s, true
	case l.kind == tokName:
		name := l.text()
		l.next()
		switch name {
		case "true":
			return true, true
		case "false":
			return false, true
		case "null":
			return nil, true
		}
		return name, true
	case l.is('['):
		list := []any{}
		l.next()
		for !l.is(']') {
			v, ok := constValue(l, depth+1)
			if !ok {
				return nil, false
			}
			list = append(list, v)
		}
		l.next()
		return list, true
	case l.is('{'):
		obj := map[string]any{}
		l.next()
		for !l.is('}') {
			if l.kind != tokName {
				return nil, false
			}
			name := l.text()
			if l.next(); !l.is(':') {
				return nil, false
			}
			l.next()
			v, ok := constValue(l, depth+1)
			if !ok {
				return nil, false
			}
			obj[name] = v
		}
		l.next()
		return obj, true
	}
	return nil, false
}

func number(l *lexer, text string) (any, bool) {
	kind := l.kind
	l.next()
	if kind == tokFloat {
		f, err := strconv.ParseFloat(text, 64)
		return f, err == nil
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return nil, false
	}
	if n < -1<<31 || n > 1<<31-1 {
		return n, true
	}
	return int32(n), true
}

// unquote decodes a GraphQL string literal, with its escapes (\u{…} and
// surrogate pairs included).
func unquote(lit string) (string, bool) {
	body := lit[1 : len(lit)-1]
	if strings.IndexByte(body, '\\') < 0 {
		return body, true
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i++; i == len(body) {
			return "", false
		}
		switch c = body[i]; c {
		case '"', '\\', '/':
			b.WriteByte(c)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, n, ok := unicodeEscape(body[i+1:])
			if !ok {
				return "", false
			}
			i += n
			if utf16.IsSurrogate(r) {
				// A pair: \uD83D\uDE00.
				if !strings.HasPrefix(body[i+1:], `\u`) {
					return "", false
				}
				r2, n2, ok := unicodeEscape(body[i+3:])
				if r = utf16.DecodeRune(r, r2); !ok || r == unicode.ReplacementChar {
					return "", false
				}
				i += 2 + n2
			}
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	return b.String(), true
}

// unicodeEscape reads the XXXX or {X…} after \u, and how many bytes it took.
func unicodeEscape(s string) (rune, int, bool) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 2 {
			return 0, 0, false
		}
		n, err := strconv.ParseUint(s[1:end], 16, 32)
		if err != nil || n > unicode.MaxRune {
			return 0, 0, false
		}
		return rune(n), end + 1, true
	}
	if len(s) < 4 {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(s[:4], 16, 32)
	return rune(n), 4, err == nil
}

// blockString is the value of a block string's raw text (the spec's
// BlockStringValue): common indentation and blank first and last lines
// removed.
func blockString(raw string) string {
	lines := strings.Split(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(raw), "\n")
	indent := -1
	for _, line := range lines[1:] {
		n := len(line) - len(strings.TrimLeft(line, " \t"))
		if n < len(line) && (indent < 0 || n < indent) {
			indent = n
		}
	}
	if indent > 0 {
		for i := 1; i < len(lines); i++ {
			lines[i] = lines[i][min(indent, len(lines[i])):]
		}
	}
	for len(lines) > 0 && strings.TrimLeft(lines[0], " \t") == "" {
		lines = lines[1:]
	}
	for len(lines) > 0 && strings.TrimLeft(lines[len(lines)-1], " \t") == "" {
		lines = lines[:len(lines)-1]
	}
	return strings.Join(lines, "\n")
}

// Token kinds of the lexer.
const (
	tokEOF         = iota
	tokPunct       // one character: ! $ ( ) : = @ [ ] { } . - and any other
	tokName        // also true, false, null and the keywords
	tokInt         // digits
	tokFloat       // digits with a fraction or an exponent
	tokString      // "…", quotes included
	tokBlockString // """…""", quotes included
	tokBad         // a string that does not end
)

// lexer splits a GraphQL document into tokens as graphql-go's lexer
// (text/scanner) does, skipping white space, commas and comments. It
// allocates nothing: a token is a slice of src.
type lexer struct {
	src   string
	pos   int // after the current token
	start int // of the current token
	kind  int
}

// text returns the current token.
func (l *lexer) text() string { return l.src[l.start:l.pos] }

// is reports whether the current token is the character c.
func (l *lexer) is(c byte) bool { return l.kind == tokPunct && l.src[l.start] == c }

// next moves to the next token.
func (l *lexer) next() {
	src, i := l.src, l.pos
	for i < len(src) {
		switch c := src[i]; c {
		case ' ', '\t', '\n', '\r', ',':
			i++
			continue
		case '#':
			for i < len(src) && src[i] != '\n' && src[i] != '\r' {
				i++
			}
			continue
		}
		if c := src[i]; c == 0xEF && strings.HasPrefix(src[i:], "\uFEFF") {
			i += 3
			continue
		}
		break
	}
	l.start = i
	if i == len(src) {
		l.kind, l.pos = tokEOF, i
		return
	}
	switch c := src[i]; {
	case c == '"':
		l.pos, l.kind = scanString(src, i)
	case c >= '0' && c <= '9':
		l.pos, l.kind = scanNumber(src, i)
	case c >= utf8.RuneSelf || nameChar[c] == 1:
		// text/scanner's identifiers: letters (any script), digits, '_'.
		j := i
		for j < len(src) {
			if c := src[j]; c < utf8.RuneSelf {
				if nameChar[c] == 0 || j == i && nameChar[c] == 2 {
					break
				}
				j++
				continue
			}
			r, n := utf8.DecodeRuneInString(src[j:])
			if !unicode.IsLetter(r) && (j == i || !unicode.IsDigit(r)) {
				break
			}
			j += n
		}
		if j == i { // a character that is no letter
			_, n := utf8.DecodeRuneInString(src[i:])
			l.pos, l.kind = i+n, tokPunct
			return
		}
		l.pos, l.kind = j, tokName
	default:
		l.pos, l.kind = i+1, tokPunct
	}
}

// nameChar is 1 for the ASCII characters that may start a name, 2 for
// those that may only follow.
var nameChar = func() (t [utf8.RuneSelf]uint8) {
	for c := range t {
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			t[c] = 1
		case c >= '0' && c <= '9':
			t[c] = 2
		}
	}
	return t
}()

func scanString(src string, i int) (int, int) {
	if strings.HasPrefix(src[i:], `"""`) {
		// As graphql-go: the block ends at the first """.
		end := strings.Index(src[i+3:], `"""`)
		if end < 0 {
			return len(src), tokBad
		}
		return i + 3 + end + 3, tokBlockString
	}
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '"':
			return j + 1, tokString
		case '\\':
			j++
		case '\n', '\r':
			return j, tokBad
		}
	}
	return len(src), tokBad
}

func scanNumber(src string, i int) (int, int) {
	kind := tokInt
	j := i
	digits := func() {
		for j < len(src) && src[j] >= '0' && src[j] <= '9' {
			j++
		}
	}
	digits()
	if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
		kind = tokFloat
		j++
		digits()
	}
	if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
		k := j + 1
		if k < len(src) && (src[k] == '+' || src[k] == '-') {
			k++
		}
		if k < len(src) && src[k] >= '0' && src[k] <= '9' {
			kind, j = tokFloat, k
			digits()
		}
	}
	// Letters stuck to a number (0x1F, 1_000) stay part of it, as in
	// text/scanner; strconv then refuses them.
	for j < len(src) && (src[j] == '_' || src[j] == '.' || src[j] >= '0' && src[j] <= '9' ||
		src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z') {
		j++
	}
	return j, kind
}

// skipBalanced skips from an opening bracket to after its closing one.
func (l *lexer) skipBalanced() bool {
	depth := 0
	for {
		switch {
		case l.kind == tokEOF || l.kind == tokBad:
			return false
		case l.is('(') || l.is('[') || l.is('{'):
			depth++
		case l.is(')') || l.is(']') || l.is('}'):
			depth--
		}
		l.next()
		if depth == 0 {
			return true
		}
	}
}

// skipDirectives skips the directives at l, if any.
func (l *lexer) skipDirectives() bool {
	for l.is('@') {
		if l.next(); l.kind != tokName {
			return false
		}
		if l.next(); l.is('(') && !l.skipBalanced() {
			return false
		}
	}
	return true
}

// skipType skips a type reference and reports whether it is non-null.
func (l *lexer) skipType(depth int) (nonNull, ok bool) {
	switch {
	case depth > maxNesting:
		return false, false
	case l.is('['):
		l.next()
		if _, ok := l.skipType(depth + 1); !ok || !l.is(']') {
			return false, false
		}
	case l.kind != tokName:
		return false, false
	}
	l.next()
	if l.is('!') {
		l.next()
		return true, true
	}
	return false, true
}

// skipValue skips one value.
func (l *lexer) skipValue() bool {
	switch {
	case l.is('[') || l.is('{'):
		return l.skipBalanced()
	case l.is('$'):
		if l.next(); l.kind != tokName {
			return false
		}
	case l.is('-'):
		if l.next(); l.kind != tokInt && l.kind != tokFloat {
			return false
		}
	case l.kind != tokName && l.kind != tokInt && l.kind != tokFloat && l.kind != tokString && l.kind != tokBlockString:
		return false
	}
	l.next()
	return true
}
