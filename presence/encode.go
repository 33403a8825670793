package presence

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

var (
	_ json.Marshaler   = (*Event)(nil)
	_ json.Unmarshaler = (*Event)(nil)
)

// AppendJSON appends the JSON payload of ev (contract section 1) to dst and
// returns the extended buffer. It writes the fields whose bit is set in
// ev.Fields, and userId; it does not check them: call Validate first, or use
// MarshalJSON. ts is written in UTC with as many fraction digits as it needs.
func (ev *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"userId":`...)
	dst = appendString(dst, ev.UserID)
	if ev.Has(HasTS) {
		dst = append(dst, `,"ts":"`...)
		dst = time.Unix(0, ev.TS).UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if ev.Has(HasRole) {
		dst = append(dst, `,"role":`...)
		dst = appendString(dst, ev.Role.String())
	}
	for k, list := range ev.lists() {
		if !ev.Has(listBits[k]) {
			continue
		}
		dst = append(dst, `,"`...)
		dst = append(dst, listNames[k]...)
		dst = append(dst, `":[`...)
		for i, id := range list {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, id)
		}
		dst = append(dst, ']')
	}
	if ev.Has(HasAvailability) {
		dst = append(dst, `,"availabilityStatus":`...)
		dst = appendString(dst, ev.Availability.String())
	}
	if ev.Fields&(HasChat|HasMaxSlots|HasCurrentSlots) != 0 {
		dst = append(dst, `,"chat":`...)
		// Each member is written after a comma; the first comma becomes the
		// opening brace.
		open := len(dst)
		if ev.Has(HasChat) {
			dst = append(dst, `,"availability":`...)
			dst = appendString(dst, ev.Chat.String())
		}
		if ev.Has(HasMaxSlots) {
			dst = append(dst, `,"maxSlots":`...)
			dst = strconv.AppendUint(dst, uint64(ev.MaxSlots), 10)
		}
		if ev.Has(HasCurrentSlots) {
			dst = append(dst, `,"currentSlots":`...)
			dst = strconv.AppendUint(dst, uint64(ev.CurrentSlots), 10)
		}
		dst[open] = '{'
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// MarshalJSON returns the JSON payload of ev, or the error of Validate.
func (ev *Event) MarshalJSON() ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev.AppendJSON(make([]byte, 0, 256)), nil
}

// Validate checks an event built in Go by the rules Decode applies to a
// payload, and returns the same *FieldError, so that a publisher learns before
// publishing why the engine would reject the event. It checks userId and the
// fields whose bit is set in ev.Fields. The type is checked by Subject, and
// invalid UTF-8, which Decode reports as a "json" error, is reported here
// under the field that holds it.
func (ev *Event) Validate() error {
	switch {
	case ev.UserID == "":
		return fieldError("userId", ruleRequired)
	case len(ev.UserID) > MaxUserIDLen:
		return fieldError("userId", ruleUserID)
	case !utf8.ValidString(ev.UserID):
		return fieldError("userId", ruleUTF8)
	}
	if ev.Has(HasRole) && (ev.Role == NoRole || ev.Role >= NumRoles) {
		return fieldError("role", ruleRole)
	}
	for k, list := range ev.lists() {
		if !ev.Has(listBits[k]) {
			continue
		}
		if len(list) > MaxIDs {
			return fieldError(listNames[k], ruleList)
		}
		for i, id := range list {
			if id == "" || len(id) > MaxIDLen {
				return fieldError(elemField(listNames[k], i), ruleID)
			}
			if !utf8.ValidString(id) {
				return fieldError(elemField(listNames[k], i), ruleUTF8)
			}
		}
	}
	if ev.Has(HasAvailability) && ev.Availability >= NumStatuses {
		return fieldError("availabilityStatus", ruleStatus)
	}
	if ev.Has(HasChat) && ev.Chat >= NumStatuses {
		return fieldError("chat.availability", ruleStatus)
	}
	if ev.Has(HasMaxSlots) && ev.MaxSlots > MaxSlotsLen {
		return fieldError("chat.maxSlots", ruleSlots)
	}
	if ev.Has(HasCurrentSlots) && ev.CurrentSlots > MaxSlotsLen {
		return fieldError("chat.currentSlots", ruleSlots)
	}
	return nil
}

// lists returns the id lists in the order of listNames.
func (ev *Event) lists() [3][]string {
	return [3][]string{ev.GroupIDs, ev.ProjectIDs, ev.RoutingGroupIDs}
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// with encoding/json, so that the output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	lit := 0 // start of the bytes not yet appended
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, s[lit:i]...)
				dst = append(dst, `\ufffd`...)
				lit = i + 1
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[lit:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		lit = i
	}
	dst = append(dst, s[lit:]...)
	return append(dst, '"')
}
