package eventstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
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

var reservedAttributes = map[string]bool{
	"specversion": true, "id": true, "source": true, "type": true, "time": true,
	"datacontenttype": true, "dataschema": true, "subject": true, "data": true,
	"data_base64": true, "partitionkey": true,
}

// checkHeaderName reports whether name can travel as an extension attribute.
func checkHeaderName(name string) error {
	if name == "" || reservedAttributes[name] {
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
// encodes to data with content type ct, to buf.
func appendEnvelope(buf []byte, e *Event, ct string, data []byte) ([]byte, error) {
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
		buf = append(buf, ',', '"')
		buf = append(buf, k...)
		buf = append(buf, '"', ':')
		buf = appendString(buf, v)
	}
	if isJSONType(baseMediaType(ct)) && json.Valid(data) {
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
func decodeEnvelope(b []byte) (e *Event, isEnvelope bool, err error) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(`"specversion"`)) {
		return nil, false, nil // cheap rejection of most bare payloads
	}
	var attrs map[string]json.RawMessage
	if json.Unmarshal(b, &attrs) != nil {
		return nil, false, nil
	}
	if _, ok := attrs["specversion"]; !ok {
		return nil, false, nil
	}
	e, err = envelopeEvent(attrs)
	return e, true, err
}

// envelopeEvent builds the event of a CloudEvent's attributes.
func envelopeEvent(attrs map[string]json.RawMessage) (*Event, error) {
	str := func(name string, required bool) (string, error) {
		raw, ok := attrs[name]
		delete(attrs, name)
		if !ok {
			if required {
				return "", fmt.Errorf("%w: CloudEvent without %q", ErrDecode, name)
			}
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || (required && s == "") {
			return "", fmt.Errorf("%w: CloudEvent attribute %q must be a non-empty string", ErrDecode, name)
		}
		return s, nil
	}
	e := &Event{}
	var err error
	var spec, tm string
	if spec, err = str("specversion", true); err != nil {
		return nil, err
	}
	if spec != "1.0" {
		return nil, fmt.Errorf("%w: CloudEvents specversion %q, want 1.0", ErrDecode, spec)
	}
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
	data, hasData := attrs["data"]
	b64, hasB64 := attrs["data_base64"]
	delete(attrs, "data")
	delete(attrs, "data_base64")
	switch {
	case hasData && hasB64:
		return nil, fmt.Errorf("%w: CloudEvent has both data and data_base64", ErrDecode)
	case hasB64:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return nil, fmt.Errorf("%w: CloudEvent data_base64 is not a string", ErrDecode)
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: CloudEvent data_base64: %w", ErrDecode, err)
		}
		e.Data = raw
	case hasData && isJSONType(baseMediaType(e.ContentType)):
		e.Data = []byte(data)
	case hasData: // non-JSON content in "data" is a JSON string
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("%w: CloudEvent data for %q must be a string", ErrDecode, e.ContentType)
		}
		e.Data = []byte(s)
	default:
		e.Data = []byte(nil)
	}
	delete(attrs, "dataschema")
	delete(attrs, "subject")
	for k, raw := range attrs {
		if e.Headers == nil {
			e.Headers = make(map[string]string, len(attrs))
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			e.Headers[k] = s
		} else {
			e.Headers[k] = string(raw)
		}
	}
	return e, nil
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
