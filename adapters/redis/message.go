package redis

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
)

// Stream entry fields written by the adapter. An entry is
//
//	XADD <stream> * v <value> [k <key>] [t <unix ms>] [h:<name> <value>]...
//
// so plain Redis clients can produce and consume the same entries.
const (
	fieldValue   = "v"
	fieldKey     = "k"
	fieldTime    = "t"
	headerPrefix = "h:"
)

// Message is an entry delivered by an Adapter subscription. It implements
// eventstream.Message and eventstream.HeaderCarrier. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads.
type Message struct {
	topic       string
	id          string
	key         []byte
	value       []byte
	headers     map[string]string
	ts          time.Time
	redelivered bool

	sub *subscription
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
)

// Topic returns the topic the entry was read from.
func (m *Message) Topic() string { return m.topic }

// Value returns the entry's "v" field; empty (never nil) when it is empty.
// An entry without a "v" field (written by another producer) has as value a
// JSON object of all its fields, names sorted.
func (m *Message) Value() []byte { return m.value }

// Key returns the entry's "k" field, or nil when it has none.
func (m *Message) Key() []byte { return m.key }

// Timestamp returns the entry's "t" field (unix milliseconds) when it has
// one, else the time part of its stream ID (the server's clock when the
// entry was added).
func (m *Message) Timestamp() time.Time { return m.ts }

// Headers returns the entry's "h:<name>" fields by name, nil when there are
// none.
func (m *Message) Headers() map[string]string { return m.headers }

// ID returns the entry's stream ID ("<ms>-<seq>").
func (m *Message) ID() string { return m.id }

// Redelivered reports whether the entry was taken over from another
// consumer (or handed back by one) rather than read as a new entry; it may
// have been handled before.
func (m *Message) Redelivered() bool { return m.redelivered }

// encodeFields appends the XADD field/value pairs of r to args.
func encodeFields(args []any, r *eventstream.Record) []any {
	v := r.Value
	if v == nil {
		v = []byte{}
	}
	args = append(args, fieldValue, v)
	if len(r.Key) > 0 {
		args = append(args, fieldKey, r.Key)
	}
	if !r.Time.IsZero() {
		args = append(args, fieldTime, strconv.FormatInt(r.Time.UnixMilli(), 10))
	}
	for k, hv := range r.Headers {
		args = append(args, headerPrefix+k, hv)
	}
	return args
}

// decodeEntry turns a stream entry into a Message.
func decodeEntry(topic, id string, fields map[string]any) *Message {
	m := &Message{topic: topic, id: id}
	str := func(x any) (string, bool) {
		switch s := x.(type) {
		case string:
			return s, true
		case []byte:
			return string(s), true
		default:
			return "", false
		}
	}
	hasValue := false
	foreign := false
	for k, x := range fields {
		s, ok := str(x)
		if !ok {
			foreign = true
			continue
		}
		switch {
		case k == fieldValue:
			m.value = []byte(s)
			hasValue = true
		case k == fieldKey:
			if s != "" {
				m.key = []byte(s)
			}
		case k == fieldTime:
			if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
				m.ts = time.UnixMilli(ms)
			}
		case strings.HasPrefix(k, headerPrefix):
			if m.headers == nil {
				m.headers = make(map[string]string)
			}
			m.headers[k[len(headerPrefix):]] = s
		default:
			foreign = true
		}
	}
	if !hasValue {
		m.key, m.headers = nil, nil
		if foreign || len(fields) > 0 {
			obj := make(map[string]string, len(fields))
			for k, x := range fields {
				s, _ := str(x)
				obj[k] = s
			}
			b, err := json.Marshal(obj)
			if err == nil {
				m.value = b
			}
		}
		if m.value == nil {
			m.value = []byte{}
		}
	}
	if m.ts.IsZero() {
		if ms, _, ok := parseID(id); ok {
			m.ts = time.UnixMilli(int64(ms))
		}
	}
	return m
}

// parseID splits a stream ID "<ms>-<seq>".
func parseID(id string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}
