package presence

import (
	"hash/maphash"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of arrays and objects, the payload's own object
// being at depth 1. It is encoding/json's bound, so that Decode accepts no
// document json.Valid rejects and deep garbage cannot grow the stack.
const maxDepth = 10000

// The id lists of an event, in the order they take in their shared array and
// in the encoded payload.
var (
	listNames = [3]string{"groupIds", "projectIds", "routingGroupIds"}
	listBits  = [3]Fields{HasGroups, HasProjects, HasRoutingGroups}
)

// The times an int64 of Unix nanoseconds holds.
var minTS, maxTS = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// Decode decodes the JSON payload of an event (contract section 1) into ev and
// checks every rule of the contract. ev.Type, which comes from the subject, is
// kept; every other field is reset. An error is a *FieldError naming the field,
// or "json" with a byte offset when data is not one JSON object; ev is then
// partly filled. Decode never panics.
//
// Decode keeps no reference to data: the strings of the event share one new
// allocation that holds just them. The three id lists share one array, which
// the next Decode into the same ev reuses: copy a list to keep it past that
// call or to append to it.
//
// Where the contract is silent Decode does what encoding/json does: a repeated
// key takes its last value (a repeated "chat" replaces the whole earlier
// object), yet an invalid earlier value is still an error; keys match exactly;
// a \u escape of a lone surrogate decodes to U+FFFD; nesting deeper than 10000
// is an error. ts is read as time.Parse(time.RFC3339Nano) reads it. Unlike
// encoding/json, Decode rejects invalid UTF-8, and keys that differ only in
// case are unknown keys.
func Decode(data []byte, ev *Event) error {
	*ev = Event{Type: ev.Type, GroupIDs: ev.GroupIDs[:0]}
	d := decoder{b: data}
	return d.event(ev)
}

// UnmarshalJSON decodes like Decode, so that encoding/json reads the payload
// MarshalJSON writes.
func (ev *Event) UnmarshalJSON(data []byte) error { return Decode(data, ev) }

// decoder reads one payload in place.
type decoder struct {
	b []byte
	i int // offset of the next byte to read
}

// kept gathers the strings the event keeps, to become one string at the end.
// It is passed and returned by value, not held by the decoder, so that the
// compiler keeps the arrays of a usual event on the stack.
type kept struct {
	text []byte // userId and the ids, decoded
	ids  []span // the ids of every list read, repeated keys included
}

// span is where a string is in kept.text, or a list in kept.ids.
type span struct{ start, end int }

func (d *decoder) event(ev *Event) error {
	var text [256]byte
	var ids [16]span
	k := kept{text: text[:0], ids: ids[:0]}
	var lists [3]span // where in k.ids each list of the event is
	var user span     // empty while userId is absent

	d.space()
	if d.peek() != '{' {
		if d.i == len(d.b) {
			return d.syntax()
		}
		return fieldError("json", ruleObject)
	}
	d.i++
	for first := true; ; first = false {
		key, more, err := d.member(first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		var ok bool
		switch string(key) {
		case "userId":
			k, user, err = d.userID(k)
		case "ts":
			err = d.ts(ev)
		case "role":
			err = d.role(ev)
		case "groupIds":
			k, err = d.list(0, k, ev, &lists)
		case "projectIds":
			k, err = d.list(1, k, ev, &lists)
		case "routingGroupIds":
			k, err = d.list(2, k, ev, &lists)
		case "availabilityStatus":
			ev.Availability, ok, err = d.status("availabilityStatus", 1)
			ev.mark(HasAvailability, ok)
		case "chat":
			err = d.chat(ev)
		default:
			err = d.skip(1)
		}
		if err != nil {
			return err
		}
	}
	d.space()
	if d.i < len(d.b) {
		return d.fail("data after the object")
	}
	if user.start == user.end {
		return fieldError("userId", ruleRequired)
	}
	all := string(k.text) // the one copy of the strings the event keeps
	ev.UserID = all[user.start:user.end]
	setLists(ev, all, k.ids, lists)
	return nil
}

// mark sets or clears f: a later key or a null undoes what an earlier key set.
func (ev *Event) mark(f Fields, present bool) {
	if present {
		ev.Fields |= f
	} else {
		ev.Fields &^= f
	}
}

// userID reads the userId into k, or null (an empty span).
func (d *decoder) userID(k kept) (kept, span, error) {
	if d.null() {
		return k, span{}, nil
	}
	if d.peek() != '"' {
		return k, span{}, d.wrongType("userId", ruleUserID, 1)
	}
	text, s, err := d.keep(k.text)
	if err == nil && (s.start == s.end || s.end-s.start > MaxUserIDLen) {
		err = fieldError("userId", ruleUserID)
	}
	k.text = text
	return k, s, err
}

func (d *decoder) ts(ev *Event) error {
	v, ok, err := d.strOrNull("ts", ruleTS, 1)
	ev.TS = 0
	ev.mark(HasTS, false)
	if err != nil || !ok {
		return err
	}
	// UnmarshalText is time.Parse(time.RFC3339Nano) on bytes: the same RFC
	// 3339 fast path, without allocating, and the same fallback. (Go means to
	// make it stricter, to RFC 3339 proper: go.dev/issue/54580.)
	var t time.Time
	if t.UnmarshalText(v) != nil {
		return fieldError("ts", ruleTS)
	}
	if t.Before(minTS) || t.After(maxTS) {
		return fieldError("ts", ruleTSRange)
	}
	ev.TS = t.UnixNano()
	ev.mark(HasTS, true)
	return nil
}

func (d *decoder) role(ev *Event) error {
	v, ok, err := d.strOrNull("role", ruleRole, 1)
	ev.Role = NoRole
	ev.mark(HasRole, false)
	if err != nil || !ok {
		return err
	}
	if ev.Role, ok = ParseRole(string(v)); !ok {
		return fieldError("role", ruleRole)
	}
	ev.mark(HasRole, true)
	return nil
}

// status reads an availability status, or null (ok false). depth is that of
// the object holding it.
func (d *decoder) status(field string, depth int) (st Status, ok bool, err error) {
	v, ok, err := d.strOrNull(field, ruleStatus, depth)
	if err != nil || !ok {
		return ToggleOff, false, err
	}
	if st, ok = ParseStatus(string(v)); !ok {
		return ToggleOff, false, fieldError(field, ruleStatus)
	}
	return st, true, nil
}

// list reads id list l (an index of listNames), or null, into k without
// duplicates, and records where it is in lists.
func (d *decoder) list(l int, k kept, ev *Event, lists *[3]span) (kept, error) {
	name := listNames[l]
	ev.mark(listBits[l], false)
	if d.null() {
		return k, nil
	}
	if d.peek() != '[' {
		return k, d.wrongType(name, ruleList, 1)
	}
	d.i++
	start := len(k.ids)
	for n := 0; ; n++ {
		more, err := d.more(n == 0, ']')
		if err != nil {
			return k, err
		}
		if !more {
			break
		}
		if n == MaxIDs {
			return k, fieldError(name, ruleList)
		}
		if d.peek() != '"' {
			return k, d.wrongType(elemField(name, n), ruleID, 2)
		}
		var id span
		if k.text, id, err = d.keep(k.text); err != nil {
			return k, err
		}
		if id.start == id.end || id.end-id.start > MaxIDLen {
			return k, fieldError(elemField(name, n), ruleID)
		}
		k.ids = append(k.ids, id)
	}
	k.ids = k.ids[:start+len(dedupe(k.ids[start:], k.text))]
	lists[l] = span{start, len(k.ids)}
	ev.mark(listBits[l], true)
	return k, nil
}

// elemField names entry n of a list, as in "groupIds[3]".
func elemField(list string, n int) string { return list + "[" + strconv.Itoa(n) + "]" }

func (d *decoder) chat(ev *Event) error {
	ev.Chat, ev.MaxSlots, ev.CurrentSlots = ToggleOff, 0, 0
	ev.mark(HasChat|HasMaxSlots|HasCurrentSlots, false)
	if d.null() {
		return nil
	}
	if d.peek() != '{' {
		return d.wrongType("chat", ruleChat, 1)
	}
	d.i++
	for first := true; ; first = false {
		key, more, err := d.member(first)
		if err != nil || !more {
			return err
		}
		var ok bool
		switch string(key) {
		case "availability":
			ev.Chat, ok, err = d.status("chat.availability", 2)
			ev.mark(HasChat, ok)
		case "maxSlots":
			ev.MaxSlots, ok, err = d.slots("chat.maxSlots")
			ev.mark(HasMaxSlots, ok)
		case "currentSlots":
			ev.CurrentSlots, ok, err = d.slots("chat.currentSlots")
			ev.mark(HasCurrentSlots, ok)
		default:
			err = d.skip(2)
		}
		if err != nil {
			return err
		}
	}
}

// slots reads a slot count of the chat object, or null (ok false).
func (d *decoder) slots(field string) (n uint16, ok bool, err error) {
	if d.null() {
		return 0, false, nil
	}
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		return 0, false, d.wrongType(field, ruleSlots, 2)
	}
	start := d.i
	if err := d.number(); err != nil {
		return 0, false, err
	}
	lit := d.b[start:d.i]
	if len(lit) > len("1000") {
		return 0, false, fieldError(field, ruleSlots)
	}
	v := 0
	for _, c := range lit {
		if c < '0' || c > '9' { // a sign, a fraction or an exponent
			return 0, false, fieldError(field, ruleSlots)
		}
		v = v*10 + int(c-'0')
	}
	if v > MaxSlotsLen {
		return 0, false, fieldError(field, ruleSlots)
	}
	return uint16(v), true, nil
}

// strOrNull reads a string, or null (ok false), as str does. Any other value
// breaks rule; depth is that of the container holding the value.
func (d *decoder) strOrNull(field, rule string, depth int) (v []byte, ok bool, err error) {
	if d.null() {
		return nil, false, nil
	}
	if d.peek() != '"' {
		return nil, false, d.wrongType(field, rule, depth)
	}
	v, err = d.str()
	return v, err == nil, err
}

// wrongType reports a value of the wrong JSON type for field, unless the
// value is not even JSON: a syntax error says more.
func (d *decoder) wrongType(field, rule string, depth int) error {
	if err := d.skip(depth); err != nil {
		return err
	}
	return fieldError(field, rule)
}

// setLists gives the event its id lists, copied into one array: ev's own when
// it is large enough. Groups come first, and ev.GroupIDs keeps the array's
// whole capacity, for the next Decode to find.
func setLists(ev *Event, all string, ids []span, lists [3]span) {
	total := 0
	for k, bit := range listBits {
		if ev.Has(bit) {
			total += lists[k].end - lists[k].start
		}
	}
	out := ev.GroupIDs // emptied by Decode
	if cap(out) < total {
		out = make([]string, 0, total)
	}
	var got [3][]string
	for k, bit := range listBits {
		if !ev.Has(bit) {
			continue
		}
		n := len(out)
		for _, id := range ids[lists[k].start:lists[k].end] {
			out = append(out, all[id.start:id.end])
		}
		got[k] = out[n:len(out):len(out)]
	}
	clear(out[len(out):cap(out)]) // let go of earlier events' strings
	ev.GroupIDs = out[:len(got[0])]
	ev.ProjectIDs, ev.RoutingGroupIDs = got[1], got[2]
}

// dedupeSeed seeds the hash of dedupe. It is random per process, so that no
// payload can be built to collide.
var dedupeSeed = maphash.MakeSeed()

// dedupe removes repeated ids (at most MaxIDs of them, spans of text) in place,
// keeping the first of each in order, and returns the shortened slice.
func dedupe(ids []span, text []byte) []span {
	n := 0
	if len(ids) <= 8 { // a scan beats hashing on short lists
	next:
		for _, id := range ids {
			for _, prev := range ids[:n] {
				if string(text[prev.start:prev.end]) == string(text[id.start:id.end]) {
					continue next
				}
			}
			ids[n] = id
			n++
		}
		return ids[:n]
	}
	// An open-addressing set of the kept ids, at most half full: position+1 in
	// ids, 0 for an empty slot. It stays on the stack.
	var table [2 * MaxIDs]uint16
	for _, id := range ids {
		v := text[id.start:id.end]
		for j := maphash.Bytes(dedupeSeed, v) % uint64(len(table)); ; j = (j + 1) % uint64(len(table)) {
			p := table[j]
			if p == 0 {
				ids[n] = id
				n++
				table[j] = uint16(n)
				break
			}
			if prev := ids[p-1]; string(text[prev.start:prev.end]) == string(v) {
				break
			}
		}
	}
	return ids[:n]
}

// member reads the key of the next member of an object, whose brace is read,
// and the colon after it; more is false once the closing brace is read.
func (d *decoder) member(first bool) (key []byte, more bool, err error) {
	if more, err = d.more(first, '}'); !more || err != nil {
		return nil, false, err
	}
	if d.peek() != '"' {
		return nil, false, d.syntax()
	}
	if key, err = d.str(); err != nil {
		return nil, false, err
	}
	d.space()
	if d.peek() != ':' {
		return nil, false, d.syntax()
	}
	d.i++
	d.space()
	return key, true, nil
}

// more reads what comes before the next element of an array or object (end is
// its closing bracket) and reports whether one follows; if not, it reads end.
func (d *decoder) more(first bool, end byte) (bool, error) {
	d.space()
	if d.peek() == end {
		d.i++
		return false, nil
	}
	if !first {
		if d.peek() != ',' {
			return false, d.syntax()
		}
		d.i++
		d.space()
	}
	return true, nil
}

// skip reads past any JSON value; depth is that of the container holding it.
func (d *decoder) skip(depth int) error {
	switch c := d.peek(); c {
	case '"':
		_, _, err := d.scanStr()
		return err
	case '{', '[':
		if depth >= maxDepth {
			return d.fail("nesting deeper than " + strconv.Itoa(maxDepth))
		}
		d.i++
		for first := true; ; first = false {
			var more bool
			var err error
			if c == '{' {
				_, more, err = d.member(first)
			} else {
				more, err = d.more(first, ']')
			}
			if err != nil || !more {
				return err
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		return d.number()
	}
}

// null reads a null if one comes next.
func (d *decoder) null() bool {
	if len(d.b)-d.i >= len("null") && string(d.b[d.i:d.i+len("null")]) == "null" {
		d.i += len("null")
		return true
	}
	return false
}

func (d *decoder) literal(lit string) error {
	for j := 0; j < len(lit); j, d.i = j+1, d.i+1 {
		if d.peek() != lit[j] {
			return d.syntax()
		}
	}
	return nil
}

// number reads a number of the JSON grammar.
func (d *decoder) number() error {
	if d.peek() == '-' {
		d.i++
	}
	switch c := d.peek(); {
	case c == '0':
		d.i++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return d.syntax()
	}
	if d.peek() == '.' {
		d.i++
		if !d.digits() {
			return d.syntax()
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.i++
		if c := d.peek(); c == '+' || c == '-' {
			d.i++
		}
		if !d.digits() {
			return d.syntax()
		}
	}
	return nil
}

// digits reads decimal digits and reports whether there was one.
func (d *decoder) digits() bool {
	start := d.i
	for c := d.peek(); '0' <= c && c <= '9'; c = d.peek() {
		d.i++
	}
	return d.i > start
}

// str reads a string and returns its value: the payload's own bytes unless it
// holds escapes, which are rare in keys and enum values.
func (d *decoder) str() ([]byte, error) {
	raw, escaped, err := d.scanStr()
	if err != nil || !escaped {
		return raw, err
	}
	return unquote(nil, raw), nil
}

// keep reads a string, appends its value to text and returns where it is.
func (d *decoder) keep(text []byte) ([]byte, span, error) {
	raw, escaped, err := d.scanStr()
	if err != nil {
		return text, span{}, err
	}
	start := len(text)
	if escaped {
		text = unquote(text, raw)
	} else {
		text = append(text, raw...)
	}
	return text, span{start, len(text)}, nil
}

// plain holds the bytes that stand for themselves in a JSON string and need
// no check: the quick loop of scanStr runs over them.
var plain = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanStr reads a string, checking its escapes and its UTF-8, and returns
// what is between the quotes.
func (d *decoder) scanStr() (raw []byte, escaped bool, err error) {
	b, start := d.b, d.i+1
	i := start
	for i < len(b) && plain[b[i]] {
		i++
	}
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return b[start:i], escaped, nil
		case c == '\\':
			n := escapeLen(b[i:])
			if n == 0 {
				d.i = i
				return nil, false, d.fail("invalid escape")
			}
			escaped = true
			i += n
		case c < ' ':
			d.i = i
			return nil, false, d.syntax()
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				d.i = i
				return nil, false, d.fail("invalid UTF-8")
			}
			i += n
		}
	}
	d.i = len(b)
	return nil, false, d.syntax()
}

// escapeLen returns the length of the escape sequence b starts with, or 0 if
// it is not one.
func escapeLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
		if len(b) >= 6 && hex4(b[2:6]) >= 0 {
			return 6
		}
	}
	return 0
}

// hex4 returns the value of the four hex digits b starts with, or -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote appends to dst the value of raw, whose escapes scanStr checked.
func unquote(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch c = raw[i+1]; c {
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair decodes to one rune; a lone half is invalid UTF-16.
				r2 := rune(-1)
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = hex4(raw[i+2:])
				}
				if r = utf16.DecodeRune(r, r2); r != utf8.RuneError {
					i += 6
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		}
		dst = append(dst, c)
		i += 2
	}
	return dst
}

func (d *decoder) space() {
	b, i := d.b, d.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	d.i = i
}

// peek returns the next byte, or 0 at the end.
func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// syntax reports the byte at d.i as unexpected.
func (d *decoder) syntax() error {
	if d.i >= len(d.b) {
		return d.fail("unexpected end")
	}
	return d.fail("invalid character " + strconv.Quote(string(d.b[d.i:d.i+1])))
}

// fail reports a syntax error at d.i.
func (d *decoder) fail(what string) error {
	return fieldError("json", what+" at byte "+strconv.Itoa(d.i))
}
