package eventstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The wire format of the distributed bus is a CloudEvents 1.0 event in
// structured-mode JSON (content type application/cloudevents+json):
//
//	{"specversion":"1.0","id":"...","source":"...","type":"...",
//	 "time":"2026-11-28T06:00:00.123456789Z","datacontenttype":"application/json",
//	 "partitionkey":"order-7","traceid":"abc","data":{"n":1}}
//
// The event key travels as the "partitionkey" extension (CloudEvents
// partitioning extension) and each header as an extension attribute of its
// own. JSON payloads are embedded as "data"; any other content type is
// carried base64-encoded in "data_base64".

// CloudEventsContentType is the content type of the envelope; adapters that
// carry headers receive it as the "content-type" header.
const CloudEventsContentType = "application/cloudevents+json"

// Header names of dead-lettered records (adapters that carry headers), and
// the JSON fields of the dead-letter CloudEvent data (other adapters).
const (
	HeaderDeadLetterError    = "eventstream-error"
	HeaderDeadLetterAttempts = "eventstream-attempts"
	HeaderDeadLetterTopic    = "eventstream-topic"
	HeaderDeadLetterGroup    = "eventstream-group"
)

// DeadLetterEventType is the CloudEvents type of the dead-letter events the
// distributed bus writes for adapters that cannot carry headers; their data
// is a DeadLetter in JSON.
const DeadLetterEventType = "eventstream.deadletter"

// DeadLetter is the data of a dead-letter event written for an adapter that
// cannot carry headers. Value holds the original message bytes unchanged.
type DeadLetter struct {
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	Topic    string `json:"topic"`
	Group    string `json:"group"`
	Value    []byte `json:"value"`
}

// reservedAttribute reports whether name is a CloudEvents context attribute
// or member name that a header must not take.
func reservedAttribute(name string) bool {
	switch name {
	case "specversion", "id", "source", "type", "time", "datacontenttype", "dataschema",
		"subject", "data", "data_base64", "partitionkey":
		return true
	}
	return false
}

// checkHeaderName reports whether name can travel as an extension attribute.
func checkHeaderName(name string) error {
	if name == "" || reservedAttribute(name) {
		return fmt.Errorf("%w: header name %q is empty or a CloudEvents attribute", ErrInvalidOption, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("%w: header name %q: CloudEvents extension names are lowercase letters and digits only", ErrInvalidOption, name)
		}
	}
	return nil
}

// appendEnvelope appends the structured-mode CloudEvent of e, whose payload
// encodes to data with content type ct, to buf. validJSON says that data is
// known to be valid JSON (it came from encoding/json), which saves checking.
func appendEnvelope(buf []byte, e *Event, ct string, data []byte, validJSON bool) ([]byte, error) {
	if !utf8.ValidString(e.ID) || !utf8.ValidString(e.Source) || !utf8.ValidString(e.Type) || !utf8.ValidString(e.Key) {
		return nil, fmt.Errorf("%w: event ID, source, type and key must be valid UTF-8 (CloudEvents attributes are strings)", ErrInvalidOption)
	}
	buf = append(buf, `{"specversion":"1.0","id":`...)
	buf = appendString(buf, e.ID)
	buf = append(buf, `,"source":`...)
	buf = appendString(buf, e.Source)
	buf = append(buf, `,"type":`...)
	buf = appendString(buf, e.Type)
	buf = append(buf, `,"time":"`...)
	buf = e.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","datacontenttype":`...)
	buf = appendString(buf, ct)
	if e.Key != "" {
		buf = append(buf, `,"partitionkey":`...)
		buf = appendString(buf, e.Key)
	}
	for k, v := range e.Headers {
		if err := checkHeaderName(k); err != nil {
			return nil, err
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: header %q: value is not valid UTF-8", ErrInvalidOption, k)
		}
		buf = append(buf, ',', '"')
		buf = append(buf, k...)
		buf = append(buf, '"', ':')
		buf = appendString(buf, v)
	}
	if isJSONType(baseMediaType(ct)) && (validJSON || json.Valid(data)) {
		buf = append(buf, `,"data":`...)
		buf = append(buf, data...)
	} else {
		buf = append(buf, `,"data_base64":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, data)
		buf = append(buf, '"')
	}
	return append(buf, '}'), nil
}

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	plain := utf8.ValidString(s)
	for i := 0; plain && i < len(s); i++ {
		c := s[i]
		plain = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if plain {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	b, _ := json.Marshal(s) // a string always marshals
	return append(buf, b...)
}

// decodeEnvelope parses a structured-mode CloudEvent. It reports
// isEnvelope false, and no error, when b is not a JSON object with a
// top-level "specversion" attribute: such bytes are a bare payload, not a
// broken envelope. Errors wrap ErrDecode.
//
// A small scanner splits the object into its top-level members, checking
// the JSON grammar as it goes (nested values with json.Valid), so attribute
// values are substrings of one copy of b and "data" is a sub-slice of b (the
// Message contract says its value never changes), rather than decoded
// through reflection into a map.
func decodeEnvelope(b []byte) (e *Event, isEnvelope bool, err error) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(`"specversion"`)) {
		return nil, false, nil // cheap rejection of most bare payloads
	}
	var buf [16]member
	attrs, ok := splitObject(string(b), buf[:0])
	if !ok {
		return nil, false, nil
	}
	spec, ok := attrs.take("specversion")
	if !ok {
		return nil, false, nil
	}
	if v, _ := jsonString(spec); v != "1.0" {
		return nil, true, fmt.Errorf("%w: CloudEvents specversion %s, want \"1.0\"", ErrDecode, spec)
	}
	e, err = envelopeEvent(attrs, b)
	return e, true, err
}

// member is one top-level member of a JSON object: its decoded name, the
// JSON text of its value and where that text starts in the object.
type member struct {
	name, raw string
	off       int
}

type members []member

// take returns the value of the last member called name and removes every
// member of that name.
func (ms *members) take(name string) (string, bool) {
	m, found := ms.takeMember(name)
	return m.raw, found
}

// takeMember is take returning the whole member.
func (ms *members) takeMember(name string) (member, bool) {
	var last member
	found := false
	kept := (*ms)[:0]
	for _, m := range *ms {
		if m.name == name {
			last, found = m, true
		} else {
			kept = append(kept, m)
		}
	}
	*ms = kept
	return last, found
}

// splitObject splits the JSON object s into its members. It reports false
// unless s is a valid JSON object (surrounded by optional whitespace).
func splitObject(s string, ms members) (members, bool) {
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return nil, false
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return ms, skipSpace(s, i+1) == len(s)
	}
	for {
		end := endOfString(s, i)
		if end < 0 {
			return nil, false
		}
		name, ok := jsonString(s[i:end])
		if !ok {
			return nil, false
		}
		i = skipSpace(s, end)
		if i >= len(s) || s[i] != ':' {
			return nil, false
		}
		i = skipSpace(s, i+1)
		vend := endOfValue(s, i)
		if vend <= i {
			return nil, false
		}
		raw := s[i:vend]
		if raw[0] == '"' {
			if _, ok := jsonString(raw); !ok {
				return nil, false
			}
		} else if !json.Valid([]byte(raw)) { // objects, arrays, literals
			return nil, false
		}
		ms = append(ms, member{name: name, raw: raw, off: i})
		i = skipSpace(s, vend)
		switch {
		case i < len(s) && s[i] == ',':
			i = skipSpace(s, i+1)
		case i < len(s) && s[i] == '}':
			return ms, skipSpace(s, i+1) == len(s)
		default:
			return nil, false
		}
	}
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

// envelopeEvent builds the event of a CloudEvent's attributes; b is the
// envelope the attributes were split from.
func envelopeEvent(attrs members, b []byte) (*Event, error) {
	str := func(name string, required bool) (string, error) {
		raw, ok := attrs.take(name)
		if !ok {
			if required {
				return "", fmt.Errorf("%w: CloudEvent without %q", ErrDecode, name)
			}
			return "", nil
		}
		s, ok := jsonString(raw)
		if !ok || (required && s == "") {
			return "", fmt.Errorf("%w: CloudEvent attribute %q must be a non-empty string", ErrDecode, name)
		}
		return s, nil
	}
	e := &Event{}
	var err error
	var tm string
	if e.ID, err = str("id", true); err != nil {
		return nil, err
	}
	if e.Source, err = str("source", true); err != nil {
		return nil, err
	}
	if e.Type, err = str("type", true); err != nil {
		return nil, err
	}
	if tm, err = str("time", false); err != nil {
		return nil, err
	}
	if tm != "" {
		if e.Time, err = time.Parse(time.RFC3339Nano, tm); err != nil {
			return nil, fmt.Errorf("%w: CloudEvent time %q: %w", ErrDecode, tm, err)
		}
	}
	if e.ContentType, err = str("datacontenttype", false); err != nil {
		return nil, err
	}
	if e.ContentType == "" {
		e.ContentType = "application/json" // the CloudEvents JSON format's implied type
	}
	if e.Key, err = str("partitionkey", false); err != nil {
		return nil, err
	}
	dataMember, hasData := attrs.takeMember("data")
	data := dataMember.raw
	b64, hasB64 := attrs.take("data_base64")
	switch {
	case hasData && hasB64:
		return nil, fmt.Errorf("%w: CloudEvent has both data and data_base64", ErrDecode)
	case hasB64:
		s, ok := jsonString(b64)
		if !ok {
			return nil, fmt.Errorf("%w: CloudEvent data_base64 is not a string", ErrDecode)
		}
		raw, err := base64.StdEncoding.AppendDecode(nil, []byte(s))
		if err != nil {
			return nil, fmt.Errorf("%w: CloudEvent data_base64: %w", ErrDecode, err)
		}
		e.Data = raw
	case hasData && isJSONType(baseMediaType(e.ContentType)):
		e.Data = b[dataMember.off : dataMember.off+len(data) : dataMember.off+len(data)]
	case hasData: // non-JSON content in "data" is a JSON string
		s, ok := jsonString(data)
		if !ok {
			return nil, fmt.Errorf("%w: CloudEvent data for %q must be a string", ErrDecode, e.ContentType)
		}
		e.Data = []byte(s)
	default:
		e.Data = []byte(nil)
	}
	attrs.take("dataschema")
	attrs.take("subject")
	for _, m := range attrs {
		if e.Headers == nil {
			e.Headers = make(map[string]string, len(attrs))
		}
		if s, ok := jsonString(m.raw); ok {
			e.Headers[m.name] = s
		} else {
			e.Headers[m.name] = m.raw
		}
	}
	return e, nil
}

// binaryPrefix starts the broker header names of CloudEvents attributes in
// binary content mode (the Kafka protocol binding's convention).
const binaryPrefix = "ce_"

// binaryRecord returns the binary-mode record of e, whose payload encodes to
// data with content type ct.
func binaryRecord(e *Event, ct string, data []byte) (Record, error) {
	if !utf8.ValidString(e.ID) || !utf8.ValidString(e.Source) || !utf8.ValidString(e.Type) || !utf8.ValidString(e.Key) {
		return Record{}, fmt.Errorf("%w: event ID, source, type and key must be valid UTF-8 (CloudEvents attributes are strings)", ErrInvalidOption)
	}
	h := make(map[string]string, 7+len(e.Headers))
	for k, v := range e.Headers {
		if err := checkHeaderName(k); err != nil {
			return Record{}, err
		}
		if !utf8.ValidString(v) {
			return Record{}, fmt.Errorf("%w: header %q: value is not valid UTF-8", ErrInvalidOption, k)
		}
		h[binaryPrefix+k] = v
	}
	h["ce_specversion"] = "1.0"
	h["ce_id"] = e.ID
	h["ce_source"] = e.Source
	h["ce_type"] = e.Type
	h["ce_time"] = e.Time.UTC().Format(time.RFC3339Nano)
	h["content-type"] = ct
	r := Record{Value: data, Headers: h, Time: e.Time}
	if e.Key != "" {
		h["ce_partitionkey"] = e.Key
		r.Key = []byte(e.Key)
	}
	return r, nil
}

// decodeBinary parses a binary-mode CloudEvent from the broker headers h
// and the value v. It reports isEnvelope false, and no error, when h has no
// ce_specversion header. Errors wrap ErrDecode.
func decodeBinary(h map[string]string, v []byte) (e *Event, isEnvelope bool, err error) {
	spec, ok := h["ce_specversion"]
	if !ok {
		return nil, false, nil
	}
	if spec != "1.0" {
		return nil, true, fmt.Errorf("%w: CloudEvents specversion %q, want \"1.0\"", ErrDecode, spec)
	}
	e = &Event{Data: v, ContentType: h["content-type"]}
	for _, a := range [...]struct {
		name string
		dst  *string
	}{{"ce_id", &e.ID}, {"ce_source", &e.Source}, {"ce_type", &e.Type}} {
		if *a.dst = h[a.name]; *a.dst == "" {
			return nil, true, fmt.Errorf("%w: binary-mode CloudEvent without %s header", ErrDecode, a.name)
		}
	}
	if e.ContentType == "" {
		e.ContentType = "application/json"
	}
	if tm := h["ce_time"]; tm != "" {
		if e.Time, err = time.Parse(time.RFC3339Nano, tm); err != nil {
			return nil, true, fmt.Errorf("%w: CloudEvent time %q: %w", ErrDecode, tm, err)
		}
	}
	e.Key = h["ce_partitionkey"]
	for k, val := range h {
		name, ext := strings.CutPrefix(k, binaryPrefix)
		switch {
		case k == "content-type" || ext && reservedAttribute(name):
			continue
		case e.Headers == nil:
			e.Headers = make(map[string]string, len(h))
		}
		e.Headers[name] = val
	}
	return e, true, nil
}

// appendDeadLetterHeaders returns the headers of a dead-lettered record.
func deadLetterHeaders(orig map[string]string, f *Failure) map[string]string {
	h := make(map[string]string, len(orig)+4)
	for k, v := range orig {
		h[k] = v
	}
	h[HeaderDeadLetterError] = f.Err.Error()
	h[HeaderDeadLetterAttempts] = strconv.Itoa(f.Attempts)
	h[HeaderDeadLetterTopic] = f.Topic
	h[HeaderDeadLetterGroup] = f.Group
	return h
}
