// Package wire is the distributed bus's wire format: CloudEvents 1.0 in
// structured mode (one JSON envelope, content type
// application/cloudevents+json) and in binary mode ("ce_" broker headers and
// the payload as the value), bare payloads written by other producers, the
// merging of broker headers with envelope attributes, the dead-letter
// headers and the trace-propagation fields. All validation of what goes on
// the wire is in Validate.
//
// A structured envelope looks like
//
//	{"specversion":"1.0","id":"...","source":"...","type":"...",
//	 "time":"2026-11-28T06:00:00.123456789Z","datacontenttype":"application/json",
//	 "partitionkey":"order-7","traceid":"abc","data":{"n":1}}
//
// The key travels as the "partitionkey" extension (CloudEvents partitioning
// extension), each header as an extension attribute of its own, and the
// trace context as the "traceparent"/"tracestate" extensions (CloudEvents
// distributed-tracing extension). JSON payloads are embedded as "data"; a
// payload of any other content type is a JSON string in "data" when it is
// text that needs no escaping (valid UTF-8 without quotes, backslashes or
// control characters), and base64-encoded in "data_base64" otherwise.
package wire

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors. The root package wraps them in its own sentinels.
var (
	// ErrInvalid is wrapped by Validate.
	ErrInvalid = errors.New("invalid event")
	// ErrDecode is wrapped by the decoders.
	ErrDecode = errors.New("cannot decode message")
)

// CloudEventsContentType is the content type of a structured envelope.
const CloudEventsContentType = "application/cloudevents+json"

// Trace-propagation field names (W3C Trace Context), carried as plain broker
// headers or as envelope extension attributes.
const (
	TraceParent = "traceparent"
	TraceState  = "tracestate"
)

// Dead-letter header names: added to a dead letter's headers (broker headers
// where the adapter carries them, envelope attributes otherwise).
const (
	HeaderError    = "eventstream-error"
	HeaderAttempts = "eventstream-attempts"
	HeaderTopic    = "eventstream-topic"
	HeaderGroup    = "eventstream-group"
)

// binaryPrefix starts the broker header names of CloudEvents attributes in
// binary content mode (the Kafka protocol binding's convention).
const binaryPrefix = "ce_"

// Event is what travels: the CloudEvents attributes, user headers, the trace
// fields and the encoded payload.
type Event struct {
	ID, Source, Type string
	Time             time.Time
	Key              string
	Headers          map[string]string
	ContentType      string
	Data             []byte
	// TraceParent and TraceState are the propagation fields; never in
	// Headers.
	TraceParent, TraceState string
}

// reservedAttribute reports whether name is a CloudEvents context attribute
// or member name that a header must not take.
func reservedAttribute(name string) bool {
	switch name {
	case "specversion", "id", "source", "type", "time", "datacontenttype", "dataschema",
		"subject", "data", "data_base64", "partitionkey", TraceParent, TraceState:
		return true
	}
	return false
}

// Validate reports whether an event built by a user can travel: attributes
// must be valid UTF-8 (CloudEvents attributes are strings) and header names
// valid extension names (lowercase ASCII letters and digits, not a
// CloudEvents attribute). Errors wrap ErrInvalid.
func Validate(id, source, typ, key string, headers map[string]string) error {
	if !utf8.ValidString(id) || !utf8.ValidString(source) || !utf8.ValidString(typ) || !utf8.ValidString(key) {
		return fmt.Errorf("%w: event ID, source, type and key must be valid UTF-8 (CloudEvents attributes are strings)", ErrInvalid)
	}
	for name, v := range headers {
		if name == "" || reservedAttribute(name) {
			return fmt.Errorf("%w: header name %q is empty or a CloudEvents attribute", ErrInvalid, name)
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
				return fmt.Errorf("%w: header name %q: CloudEvents extension names are lowercase letters and digits only", ErrInvalid, name)
			}
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: header %q: value is not valid UTF-8", ErrInvalid, name)
		}
	}
	return nil
}

// AppendStructured appends the structured-mode CloudEvent of e to buf.
// validJSON says e.Data is known to be valid JSON (it came from
// encoding/json), which saves checking. e must have passed Validate, except
// that headers written by the bus itself (the dead-letter headers) may use
// other names: every name is JSON-escaped, so the output is always valid
// JSON.
func AppendStructured(buf []byte, e *Event, validJSON bool) []byte {
	buf = append(buf, `{"specversion":"1.0","id":`...)
	buf = appendString(buf, e.ID)
	buf = append(buf, `,"source":`...)
	buf = appendString(buf, e.Source)
	buf = append(buf, `,"type":`...)
	buf = appendString(buf, e.Type)
	buf = append(buf, `,"time":"`...)
	buf = e.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","datacontenttype":`...)
	buf = appendString(buf, e.ContentType)
	if e.Key != "" {
		buf = append(buf, `,"partitionkey":`...)
		buf = appendString(buf, e.Key)
	}
	if e.TraceParent != "" {
		buf = append(buf, `,"traceparent":`...)
		buf = appendString(buf, e.TraceParent)
	}
	if e.TraceState != "" {
		buf = append(buf, `,"tracestate":`...)
		buf = appendString(buf, e.TraceState)
	}
	for k, v := range e.Headers {
		buf = append(buf, ',')
		buf = appendString(buf, k)
		buf = append(buf, ':')
		buf = appendString(buf, v)
	}
	switch {
	case len(e.Data) == 0:
	case IsJSONType(BaseMediaType(e.ContentType)):
		if validJSON || json.Valid(e.Data) {
			buf = append(buf, `,"data":`...)
			buf = append(buf, e.Data...)
			break
		}
		fallthrough
	case !PlainText(e.Data):
		buf = append(buf, `,"data_base64":"`...)
		buf = base64.StdEncoding.AppendEncode(buf, e.Data)
		buf = append(buf, '"')
	default: // text that needs no escaping travels as a JSON string
		buf = append(buf, `,"data":"`...)
		buf = append(buf, e.Data...)
		buf = append(buf, '"')
	}
	return append(buf, '}')
}

// jsonEscaped has bit c set for each ASCII byte c below 64 that a JSON
// string must escape (control characters, '"') or that encoding/json
// escapes ('&', '<', '>'); '\\' is the only other one.
const jsonEscaped uint64 = 1<<0x20 - 1 | 1<<'"' | 1<<'&' | 1<<'<' | 1<<'>'

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	// One pass over the bytes; the UTF-8 check runs only for strings with
	// non-ASCII bytes (IDs, sources and types are usually ASCII).
	plain, ascii := true, true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 64:
			if jsonEscaped>>c&1 != 0 {
				plain = false
			}
		case c == '\\':
			plain = false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		if !plain {
			break
		}
	}
	if plain && !ascii {
		plain = utf8.ValidString(s)
	}
	if plain {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	b, _ := json.Marshal(s) // a string always marshals
	return append(buf, b...)
}

// BinaryHeaders returns the binary-mode broker headers of e (its payload is
// the record value). The trace fields travel as plain traceparent and
// tracestate headers.
func BinaryHeaders(e *Event) map[string]string {
	h := make(map[string]string, 8+len(e.Headers))
	for k, v := range e.Headers {
		h[binaryPrefix+k] = v
	}
	h["ce_specversion"] = "1.0"
	h["ce_id"] = e.ID
	h["ce_source"] = e.Source
	h["ce_type"] = e.Type
	h["ce_time"] = e.Time.UTC().Format(time.RFC3339Nano)
	h["content-type"] = e.ContentType
	if e.Key != "" {
		h["ce_partitionkey"] = e.Key
	}
	AddTrace(h, e)
	return h
}

// AddTrace sets e's trace fields as plain broker headers in h.
func AddTrace(h map[string]string, e *Event) {
	if e.TraceParent != "" {
		h[TraceParent] = e.TraceParent
	}
	if e.TraceState != "" {
		h[TraceState] = e.TraceState
	}
}

// Decode reads a message: a binary-mode CloudEvent when the broker headers
// carry ce_specversion, else a structured-mode envelope when the value is a
// JSON object with a top-level "specversion", else a bare payload
// (isEnvelope false, no error, e nil). For envelopes the broker headers
// (less content-type and the trace fields) are merged under the envelope's
// extension attributes, and the trace fields come from the broker headers
// first, then the envelope. Errors wrap ErrDecode.
func Decode(native map[string]string, value []byte) (e *Event, isEnvelope bool, err error) {
	e = new(Event)
	if isEnvelope, err = DecodeInto(e, native, value); err != nil || !isEnvelope {
		return nil, isEnvelope, err
	}
	return e, true, nil
}

// DecodeInto is Decode writing the event into e, which must be the zero
// Event; e is unspecified unless it reports an envelope without an error.
// The event's strings and Data may share value's memory, which must not
// change afterwards.
func DecodeInto(e *Event, native map[string]string, value []byte) (isEnvelope bool, err error) {
	if len(native) > 0 {
		if spec, ok := native["ce_specversion"]; ok {
			return true, decodeBinary(e, spec, native, value)
		}
	}
	isEnvelope, err = decodeStructured(e, value)
	if err != nil || !isEnvelope {
		return isEnvelope, err
	}
	if len(native) == 0 || onlyContentType(native) { // the bus's own structured records
		return true, nil
	}
	if tp := native[TraceParent]; tp != "" {
		e.TraceParent, e.TraceState = tp, native[TraceState]
	}
	e.Headers = MergeHeaders(native, e.Headers)
	return true, nil
}

// onlyContentType reports whether h holds content-type and nothing else,
// as the broker headers of a structured envelope the bus wrote without
// user headers or trace fields do.
func onlyContentType(h map[string]string) bool {
	if len(h) != 1 {
		return false
	}
	_, ok := h["content-type"]
	return ok
}

// MergeHeaders returns the broker headers of a message, less content-type and
// the trace fields, overlaid with the envelope's extension attributes ext.
func MergeHeaders(native, ext map[string]string) map[string]string {
	n := len(native) // less the skipped names, found by lookup: cheaper than iterating
	for _, k := range [...]string{"content-type", TraceParent, TraceState} {
		if n == 0 {
			break
		}
		if _, ok := native[k]; ok {
			n--
		}
	}
	if n == 0 {
		return ext
	}
	h := make(map[string]string, n+len(ext))
	for k, v := range native {
		if !skipNative(k) {
			h[k] = v
		}
	}
	for k, v := range ext {
		h[k] = v
	}
	return h
}

func skipNative(k string) bool {
	return k == "content-type" || k == TraceParent || k == TraceState
}

// decodeBinary parses a binary-mode CloudEvent from the broker headers h and
// the value v, in one pass over h.
func decodeBinary(e *Event, spec string, h map[string]string, v []byte) error {
	if spec != "1.0" {
		return badSpec(spec)
	}
	*e = Event{Data: v}
	var tm string
	for k, val := range h {
		binaryField(e, &tm, len(h), k, val)
	}
	return binaryFinish(e, tm)
}

func badSpec(spec string) error {
	return fmt.Errorf("%w: CloudEvents specversion %q, want \"1.0\"", ErrDecode, spec)
}

// binaryField sets the broker header k of a binary-mode CloudEvent in e, or
// in *tm for its time; n is the number of headers, a bound on the
// extensions.
func binaryField(e *Event, tm *string, n int, k, val string) {
	switch k {
	case "ce_specversion":
	case "ce_id":
		e.ID = val
	case "ce_source":
		e.Source = val
	case "ce_type":
		e.Type = val
	case "ce_time":
		*tm = val
	case "ce_partitionkey":
		e.Key = val
	case "content-type":
		e.ContentType = val
	case TraceParent:
		e.TraceParent = val
	case TraceState:
		e.TraceState = val
	default:
		name, ext := strings.CutPrefix(k, binaryPrefix)
		if ext && reservedAttribute(name) {
			return
		}
		if e.Headers == nil {
			e.Headers = make(map[string]string, n)
		}
		e.Headers[name] = val
	}
}

// binaryFinish checks the attributes binaryField set and parses the time tm.
func binaryFinish(e *Event, tm string) error {
	missing := ""
	switch {
	case e.ID == "":
		missing = "ce_id"
	case e.Source == "":
		missing = "ce_source"
	case e.Type == "":
		missing = "ce_type"
	}
	if missing != "" {
		return fmt.Errorf("%w: binary-mode CloudEvent without %s header", ErrDecode, missing)
	}
	if e.ContentType == "" {
		e.ContentType = "application/json"
	}
	if tm != "" {
		var err error
		if e.Time, err = parseTime(tm); err != nil {
			return fmt.Errorf("%w: CloudEvent time %q: %w", ErrDecode, tm, err)
		}
	}
	return nil
}

// HeaderList is a message's broker headers as a list of entries: the
// same contents as a map, where a name in several entries has the last
// entry's value.
type HeaderList interface {
	NumHeaders() int
	HeaderAt(i int) (name, value string)
}

// DecodeList is DecodeInto reading the broker headers from h, without
// building a map of them unless the event gets headers of its own from
// them.
func DecodeList(e *Event, h HeaderList, value []byte) (isEnvelope bool, err error) {
	n := h.NumHeaders()
	spec, binary := "", false
	for i := range n {
		if k, v := h.HeaderAt(i); k == "ce_specversion" {
			spec, binary = v, true
		}
	}
	if binary {
		if spec != "1.0" {
			return true, badSpec(spec)
		}
		*e = Event{Data: value}
		var tm string
		for i := range n {
			k, v := h.HeaderAt(i)
			binaryField(e, &tm, n, k, v)
		}
		return true, binaryFinish(e, tm)
	}
	isEnvelope, err = decodeStructured(e, value)
	if err != nil || !isEnvelope || n == 0 {
		return isEnvelope, err
	}
	tp, ts, others := "", "", 0
	for i := range n {
		switch k, v := h.HeaderAt(i); k {
		case "content-type":
		case TraceParent:
			tp = v
		case TraceState:
			ts = v
		default:
			others++
		}
	}
	if tp != "" {
		e.TraceParent, e.TraceState = tp, ts
	}
	if others > 0 {
		e.Headers = MergeHeaders(ListMap(h), e.Headers)
	}
	return true, nil
}

// ListMap returns the entries of h as a map (the last entry of a name
// wins); nil when there are none.
func ListMap(h HeaderList) map[string]string {
	n := h.NumHeaders()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := range n {
		k, v := h.HeaderAt(i)
		m[k] = v
	}
	return m
}

// SameContentType reports whether two MIME types name the same encoding,
// ignoring parameters and case, and treating "+json" suffixes as JSON.
func SameContentType(a, b string) bool {
	if a == b {
		return true
	}
	a, b = BaseMediaType(a), BaseMediaType(b)
	if a == b {
		return true
	}
	return IsJSONType(a) && IsJSONType(b)
}

// BaseMediaType returns the media type of s without parameters, lowercased.
func BaseMediaType(s string) string {
	if plainMediaType(s) {
		return s // the common case, without the parameter map of mime.ParseMediaType
	}
	if mt, _, err := mime.ParseMediaType(s); err == nil {
		return mt
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// plainMediaType reports whether s is a lowercase type/subtype without
// parameters or spaces, which BaseMediaType returns unchanged.
func plainMediaType(s string) bool {
	slash := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '+', c == '_':
		case c == '/' && !slash && i > 0 && i < len(s)-1:
			slash = true
		default:
			return false
		}
	}
	return slash
}

// IsJSONType reports whether the media type mt is JSON.
func IsJSONType(mt string) bool {
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// DeadLetterHeaders returns orig plus the four dead-letter headers.
func DeadLetterHeaders(orig map[string]string, reason string, attempts int, topic, group string) map[string]string {
	h := make(map[string]string, len(orig)+4)
	for k, v := range orig {
		h[k] = v
	}
	h[HeaderError] = reason
	h[HeaderAttempts] = fmt.Sprint(attempts)
	h[HeaderTopic] = topic
	h[HeaderGroup] = group
	return h
}
