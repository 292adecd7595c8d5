package rabbitmq

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Reserved header names. Every header whose name starts with "es-" belongs
// to the adapter: PublishRecord refuses such user headers and Headers never
// returns them.
const (
	reservedPrefix = "es-"
	keyHeader      = "es-key"  // the record key, as a byte array
	timeHeader     = "es-time" // the record time in Unix nanoseconds (int64)

	// contentTypeHeader is the record header published as the AMQP
	// content-type property, and the header Headers reports that
	// property under.
	contentTypeHeader = "content-type"
)

// Message is a delivery of an Adapter subscription. It implements
// eventstream.Message and eventstream.HeaderCarrier. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads.
type Message struct {
	topic       string
	key         []byte
	value       []byte
	headers     map[string]string
	ts          time.Time
	redelivered bool
	partition   int

	a     *Adapter
	group string
	gen   *generation
	tag   uint64
	acked atomic.Bool
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
)

// Topic returns the topic the message was published on.
func (m *Message) Topic() string { return m.topic }

// Value returns the message body; empty (never nil) for an empty body.
func (m *Message) Value() []byte { return m.value }

// Key returns the record key, or nil when the message has none (messages
// published by Publish, or by other AMQP clients without an "es-key"
// header).
func (m *Message) Key() []byte { return m.key }

// Timestamp returns the record time with nanosecond precision when the
// message carries the adapter's "es-time" header, else the AMQP timestamp
// property (one-second resolution), else the zero time.
func (m *Message) Timestamp() time.Time { return m.ts }

// Headers returns the message headers, nil when there are none. Header
// values that are not strings (numbers, booleans, timestamps, byte arrays,
// and nested tables or arrays such as RabbitMQ's x-death) are converted to
// strings (nested values as JSON); the adapter's own "es-" headers are not
// included. The AMQP content-type property is reported as the header
// "content-type" (a "content-type" table entry, if the message has both,
// wins).
func (m *Message) Headers() map[string]string { return m.headers }

// Redelivered reports whether the broker delivered the message before
// (to this or another member of the group) without an acknowledgement.
func (m *Message) Redelivered() bool { return m.redelivered }

// Partition returns the partition queue the message was read from in
// partitioned mode (Config.Partitions > 1), else 0.
func (m *Message) Partition() int { return m.partition }

// newMessage converts a delivery. It never fails: headers that cannot be
// represented are converted or skipped.
func newMessage(a *Adapter, topic, group string, gen *generation, part int, d *amqp.Delivery) *Message {
	m := &Message{
		topic:       topic,
		value:       d.Body,
		redelivered: d.Redelivered,
		partition:   part,
		a:           a,
		group:       group,
		gen:         gen,
		tag:         d.DeliveryTag,
	}
	if m.value == nil {
		m.value = []byte{}
	}
	if !d.Timestamp.IsZero() {
		m.ts = d.Timestamp
	}
	for k, v := range d.Headers {
		switch k {
		case keyHeader:
			switch kv := v.(type) {
			case []byte:
				m.key = kv
			case string:
				m.key = []byte(kv)
			}
			continue
		case timeHeader:
			if ns, ok := v.(int64); ok {
				m.ts = time.Unix(0, ns)
			}
			continue
		}
		if strings.HasPrefix(k, reservedPrefix) {
			continue
		}
		s, ok := headerString(v)
		if !ok {
			a.log.Debug("rabbitmq: header skipped", "header", k, "type", fmt.Sprintf("%T", v))
			continue
		}
		if m.headers == nil {
			m.headers = make(map[string]string, len(d.Headers))
		}
		m.headers[k] = s
	}
	if d.ContentType != "" {
		if _, ok := m.headers[contentTypeHeader]; !ok {
			if m.headers == nil {
				m.headers = make(map[string]string, 1)
			}
			m.headers[contentTypeHeader] = d.ContentType
		}
	}
	return m
}

// headerString converts an AMQP table value to a string.
func headerString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	case int8:
		return strconv.FormatInt(int64(x), 10), true
	case int16:
		return strconv.FormatInt(int64(x), 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int:
		return strconv.Itoa(x), true
	case uint8:
		return strconv.FormatUint(uint64(x), 10), true
	case uint16:
		return strconv.FormatUint(uint64(x), 10), true
	case uint32:
		return strconv.FormatUint(uint64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), true
	case amqp.Decimal:
		return decimalString(x), true
	case nil:
		return "", true
	case amqp.Table, []any:
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return "", false
}

func decimalString(d amqp.Decimal) string {
	s := strconv.FormatInt(int64(d.Value), 10)
	if d.Scale == 0 {
		return s
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for len(s) <= int(d.Scale) {
		s = "0" + s
	}
	s = s[:len(s)-int(d.Scale)] + "." + s[len(s)-int(d.Scale):]
	if neg {
		s = "-" + s
	}
	return s
}

// jsonable turns nested AMQP values into values encoding/json renders
// readably (byte arrays as strings rather than base64).
func jsonable(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonable(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonable(e)
		}
		return out
	case []byte:
		return string(x)
	case amqp.Decimal:
		return decimalString(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return x
	}
}
