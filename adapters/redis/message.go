package redis

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/headerset"
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
// eventstream.Message, eventstream.HeaderCarrier and
// eventstream.HeaderLister. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads. The values, keys and (most) header values of
// the entries of one read share the read's reply buffer, which stays in
// memory while any of them is referenced.
type Message struct {
	topic       string
	id          string
	key         []byte
	value       []byte
	headers     *headerset.Set // nil: none; may be shared with other messages
	ts          time.Time
	redelivered bool

	sub *subscription
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
	_ eventstream.HeaderLister  = (*Message)(nil)
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
// none; a name in several fields has the last one's value. The map is
// built on the first call and shared by consecutive entries with the same
// headers.
func (m *Message) Headers() map[string]string { return m.headers.Map() }

// NumHeaders returns the number of the entry's "h:<name>" fields.
func (m *Message) NumHeaders() int { return m.headers.Len() }

// HeaderAt returns the name (without "h:") and value of the entry's header
// field i in the entry's order, 0 <= i < NumHeaders(): the bus reads the
// headers so, without the map.
func (m *Message) HeaderAt(i int) (name, value string) { return m.headers.At(i) }

// ID returns the entry's stream ID ("<ms>-<seq>").
func (m *Message) ID() string { return m.id }

// Redelivered reports whether the entry was taken over from another
// consumer (or handed back by one) rather than read as a new entry; it may
// have been handled before.
func (m *Message) Redelivered() bool { return m.redelivered }

// encodeFields appends the XADD field/value pairs of r to the arguments.
func (req *pubReq) encodeFields(r *eventstream.Record) {
	v := r.Value
	if v == nil {
		v = []byte{}
	}
	req.args = append(req.args, fieldValue)
	req.arg(v)
	if len(r.Key) > 0 {
		req.args = append(req.args, fieldKey)
		req.arg(r.Key)
	}
	if !r.Time.IsZero() {
		req.args = append(req.args, fieldTime)
		start := len(req.buf)
		req.buf = strconv.AppendInt(req.buf, r.Time.UnixMilli(), 10)
		req.built(start)
	}
	for k, hv := range r.Headers {
		start := len(req.buf)
		req.buf = append(append(req.buf, headerPrefix...), k...)
		req.built(start)
		start = len(req.buf)
		req.buf = append(req.buf, hv...)
		req.built(start)
	}
}

// decodeFields fills in m from the entry id and its fields. The value and
// the key alias the fields' bytes; the headers come from b.headerSet.
func decodeFields(m *Message, id []byte, fields []rawField, b *batch) {
	hasValue := false
	foreign := false
	headers := 0
	for _, f := range fields {
		switch {
		case string(f.name) == fieldValue:
			m.value = f.value
			hasValue = true
		case string(f.name) == fieldKey:
			if len(f.value) > 0 {
				m.key = f.value
			}
		case string(f.name) == fieldTime:
			if ms, ok := atoi(f.value); ok {
				m.ts = time.UnixMilli(int64(ms))
			}
		case isHeader(f.name):
			headers++
		default:
			foreign = true
		}
	}
	if hasValue && headers > 0 {
		m.headers = b.headerSet(fields, headers)
	}
	if !hasValue {
		m.key, m.headers = nil, nil
		if foreign || len(fields) > 0 {
			obj := make(map[string]string, len(fields))
			for _, f := range fields {
				obj[string(f.name)] = string(f.value)
			}
			if b, err := json.Marshal(obj); err == nil {
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
}

func isHeader(name []byte) bool { return bytes.HasPrefix(name, []byte(headerPrefix)) }

// parseID splits a stream ID "<ms>-<seq>".
func parseID(id []byte) (ms, seq uint64, ok bool) {
	a, b, found := bytes.Cut(id, []byte("-"))
	if !found {
		return 0, 0, false
	}
	ms, ok1 := atou(a)
	seq, ok2 := atou(b)
	return ms, seq, ok1 && ok2
}

func atou(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
