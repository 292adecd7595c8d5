package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The decoder of structured envelopes. A small scanner splits the object
// into its top-level members instead of decoding through reflection into a
// map. It stays because it pays: BenchmarkDecodeStructured (wire_test.go)
// measured ~1.3 µs and 4 allocations per envelope against ~4.7 µs and 50
// allocations for encoding/json into a map of raw members.

// decodeStructured parses a structured-mode CloudEvent into e. It reports
// isEnvelope false, and no error, when b is not a JSON object with a
// top-level "specversion" attribute: such bytes are a bare payload, not a
// broken envelope. Errors wrap ErrDecode.
//
// One pass of a small scanner splits the object into its top-level members,
// checking the JSON grammar as it goes (nested values with json.Valid, but
// not the payload in "data", see split) and
// sorting the CloudEvents attributes into their places (the last of several
// members of one name wins). Attribute values are substrings of b, which
// the Message contract says never changes, and "data" is a sub-slice of b:
// nothing is copied but an escaped string or base64 data.
func decodeStructured(e *Event, b []byte) (isEnvelope bool, err error) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i == len(b) || b[i] != '{' || !bytes.Contains(b[i:], []byte(`"specversion"`)) {
		return false, nil // cheap rejection of most bare payloads
	}
	var buf [8]member // backs env.ext for the usual few extensions
	var env envelope
	ext, ok := env.split(b, buf[:0])
	if !ok || !env.has(attrSpec) {
		return false, nil
	}
	if env.str[attrSpec].val != "1.0" {
		return true, fmt.Errorf("%w: CloudEvents specversion %s, want \"1.0\"", ErrDecode, env.str[attrSpec].raw)
	}
	return true, env.event(e, b, ext)
}

// The attributes a structured envelope may carry, as indexes into
// envelope.str.
const (
	attrSpec = iota
	attrID
	attrSource
	attrType
	attrTime
	attrContentType
	attrKey
	attrTraceParent
	attrTraceState
	attrData
	attrBase64
	nAttrs
)

// attrIndex returns the index of the attribute called name, -1 for an
// extension and -2 for an attribute that is dropped.
func attrIndex(name string) int {
	switch name {
	case "specversion":
		return attrSpec
	case "id":
		return attrID
	case "source":
		return attrSource
	case "type":
		return attrType
	case "time":
		return attrTime
	case "datacontenttype":
		return attrContentType
	case "partitionkey":
		return attrKey
	case TraceParent:
		return attrTraceParent
	case TraceState:
		return attrTraceState
	case "data":
		return attrData
	case "data_base64":
		return attrBase64
	case "dataschema", "subject":
		return -2
	}
	return -1
}

// value is the JSON text of one member's value, where it starts in the
// object and, for a string, its decoded value.
type value struct {
	raw   string
	val   string // decoded, when str
	off   int
	str   bool
	found bool
}

// member is one extension member of a JSON object: its decoded name and
// value.
type member struct {
	name string
	v    value
}

// envelope holds the attributes of a structured envelope.
type envelope struct {
	str [nAttrs]value
}

func (env *envelope) has(i int) bool { return env.str[i].found }

// split splits the JSON object b into its members: the attributes into
// env.str, the extensions appended to ext, which it returns. It reports
// false unless b is a valid JSON object (surrounded by optional whitespace).
func (env *envelope) split(b []byte, ext []member) ([]member, bool) {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return nil, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return ext, skipSpace(s, i+1) == len(s)
	}
	for {
		end, name, ok := scanString(s, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(s, end)
		if i >= len(s) || s[i] != ':' {
			return nil, false
		}
		i = skipSpace(s, i+1)
		a := attrIndex(name)
		var v value
		if i < len(s) && s[i] == '"' {
			end, val, ok := scanString(s, i)
			if !ok {
				return nil, false
			}
			v = value{raw: s[i:end], val: val, off: i, str: true, found: true}
		} else {
			vend := endOfValue(s, i)
			if vend <= i {
				return nil, false
			}
			// Nested values are checked with json.Valid, except the
			// payload: whoever reads it parses it anyway (Unmarshal fails
			// with ErrDecode on bad JSON, and the bus dead-letters the
			// event), so it is not parsed twice. Its extent is still
			// found with strings and brackets respected.
			if a != attrData && !json.Valid(b[i:vend]) {
				return nil, false
			}
			v = value{raw: s[i:vend], off: i, found: true}
		}
		switch a {
		case -1:
			ext = append(ext, member{name: name, v: v})
		case -2:
		default:
			env.str[a] = v
		}
		i = skipSpace(s, v.off+len(v.raw))
		switch {
		case i < len(s) && s[i] == ',':
			i = skipSpace(s, i+1)
		case i < len(s) && s[i] == '}':
			return ext, skipSpace(s, i+1) == len(s)
		default:
			return nil, false
		}
	}
}

// scanString reads the JSON string starting at s[i]: it returns the index
// just past it and its decoded value, or ok false when there is no valid
// string at i. A string without escapes, the usual case, is checked and
// delimited in one pass (eight bytes at a time, see plainRun) and its value
// is a substring of s.
func scanString(s string, i int) (end int, val string, ok bool) {
	if i >= len(s) || s[i] != '"' {
		return 0, "", false
	}
	j := plainRun(s, i+1)
	switch {
	case j >= len(s):
		return 0, "", false
	case s[j] == '"':
		return j + 1, s[i+1 : j], true
	case s[j] == '\\':
		if end = endOfString(s, i); end < 0 {
			return 0, "", false
		}
		val, ok = jsonString(s[i:end])
		return end, val, ok
	}
	return 0, "", false // control characters must be escaped
}

// plainRun returns the index of the first byte of s at or after j that
// ends a run of plain JSON string content: a quote, a backslash or a
// control character; len(s) when there is none.
//
// It tests eight bytes at a time: a byte below 0x20 sets its top bit in
// (x - 0x20…) &^ x, a byte equal to c is a zero byte of x ^ c…, which sets
// its top bit in (y - 0x01…) &^ y, and the lowest flagged byte is always a
// real one (a false flag can only follow a real one, through a borrow).
// Past the first 48 bytes (most strings of an envelope are shorter) the
// quote and the backslash are found with strings.IndexByte, which is
// vectorized, and only control characters are tested by word.
func plainRun(s string, j int) int {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	for stop := min(j+48, len(s)); j+8 <= stop; j += 8 {
		w := s[j : j+8] // a constant length: no bounds checks, one load
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q, bs := x^('"'*ones), x^('\\'*ones)
		if hit := ((x - 0x20*ones) &^ x) | ((q - ones) &^ q) | ((bs - ones) &^ bs); hit&tops != 0 {
			return j + bits.TrailingZeros64(hit&tops)/8
		}
	}
	end := len(s)
	if q := strings.IndexByte(s[j:], '"'); q >= 0 {
		end = j + q
	}
	if b := strings.IndexByte(s[j:end], '\\'); b >= 0 {
		end = j + b
	}
	for ; j+8 <= end; j += 8 {
		w := s[j : j+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		if hit := (x - 0x20*ones) &^ x & tops; hit != 0 {
			return j + bits.TrailingZeros64(hit)/8
		}
	}
	for ; j < end; j++ {
		if s[j] < 0x20 {
			return j
		}
	}
	return end
}

// PlainText reports whether b can be the value of a JSON string as it is:
// valid UTF-8 without quotes, backslashes or control characters.
func PlainText(b []byte) bool {
	s := unsafe.String(unsafe.SliceData(b), len(b))
	return plainRun(s, 0) == len(s) && utf8.ValidString(s)
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// endOfString returns the index just past the JSON string starting at
// s[i], or -1.
func endOfString(s string, i int) int {
	if i >= len(s) || s[i] != '"' {
		return -1
	}
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// endOfValue returns the index just past the JSON value starting at s[i],
// or -1.
func endOfValue(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		return endOfString(s, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(s); j++ {
			switch s[j] {
			case '"':
				end := endOfString(s, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(s) && s[j] != ',' && s[j] != '}' && s[j] != ']' && s[j] != ' ' && s[j] != '\t' && s[j] != '\r' && s[j] != '\n' {
		j++
	}
	return j
}

// jsonString decodes the JSON string literal raw.
func jsonString(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	if strings.IndexByte(raw, '\\') < 0 {
		for i := 1; i < len(raw)-1; i++ {
			if raw[i] < 0x20 { // control characters must be escaped
				return "", false
			}
		}
		return raw[1 : len(raw)-1], true
	}
	var v string
	if json.Unmarshal([]byte(raw), &v) != nil {
		return "", false
	}
	return v, true
}

// event fills e from the attributes of env and the extensions ext, split
// from the envelope b.
func (env *envelope) event(e *Event, b []byte, ext []member) error {
	str := func(i int, name string, required bool) (string, error) {
		v := env.str[i]
		if !v.found {
			if required {
				return "", fmt.Errorf("%w: CloudEvent without %q", ErrDecode, name)
			}
			return "", nil
		}
		if !v.str || (required && v.val == "") {
			return "", fmt.Errorf("%w: CloudEvent attribute %q must be a non-empty string", ErrDecode, name)
		}
		return v.val, nil
	}
	var err error
	var tm string
	if e.ID, err = str(attrID, "id", true); err != nil {
		return err
	}
	if e.Source, err = str(attrSource, "source", true); err != nil {
		return err
	}
	if e.Type, err = str(attrType, "type", true); err != nil {
		return err
	}
	if tm, err = str(attrTime, "time", false); err != nil {
		return err
	}
	if tm != "" {
		if e.Time, err = parseTime(tm); err != nil {
			return fmt.Errorf("%w: CloudEvent time %q: %w", ErrDecode, tm, err)
		}
	}
	if e.ContentType, err = str(attrContentType, "datacontenttype", false); err != nil {
		return err
	}
	if e.ContentType == "" {
		e.ContentType = "application/json" // the CloudEvents JSON format's implied type
	}
	if e.Key, err = str(attrKey, "partitionkey", false); err != nil {
		return err
	}
	data, b64 := env.str[attrData], env.str[attrBase64]
	switch {
	case data.found && b64.found:
		return fmt.Errorf("%w: CloudEvent has both data and data_base64", ErrDecode)
	case b64.found:
		if !b64.str {
			return fmt.Errorf("%w: CloudEvent data_base64 is not a string", ErrDecode)
		}
		var src []byte
		if len(b64.val) == len(b64.raw)-2 { // no escapes: the string's bytes in b
			src = b[b64.off+1 : b64.off+len(b64.raw)-1]
		} else {
			src = []byte(b64.val)
		}
		raw := make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		n, err := base64.StdEncoding.Decode(raw, src)
		if err != nil {
			return fmt.Errorf("%w: CloudEvent data_base64: %w", ErrDecode, err)
		}
		e.Data = raw[:n:n]
	case data.found && IsJSONType(BaseMediaType(e.ContentType)):
		e.Data = b[data.off : data.off+len(data.raw) : data.off+len(data.raw)]
	case data.found: // non-JSON content in "data" is a JSON string
		if !data.str {
			return fmt.Errorf("%w: CloudEvent data for %q must be a string", ErrDecode, e.ContentType)
		}
		if len(data.val) == len(data.raw)-2 { // no escapes: the string's bytes in b
			e.Data = b[data.off+1 : data.off+len(data.raw)-1 : data.off+len(data.raw)-1]
		} else {
			e.Data = []byte(data.val)
		}
	default:
		e.Data = nil
	}
	e.TraceParent, e.TraceState = env.str[attrTraceParent].val, env.str[attrTraceState].val
	for _, m := range ext {
		if e.Headers == nil {
			e.Headers = make(map[string]string, len(ext))
		}
		if m.v.str {
			e.Headers[m.name] = m.v.val
		} else {
			e.Headers[m.name] = m.v.raw
		}
	}
	return nil
}
