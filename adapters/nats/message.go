package nats

import (
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/nats-io/nats.go/jetstream"
)

// Message states.
const (
	msgPending  int32 = iota // held by its subscription, not acknowledged
	msgAcked                 // acknowledged
	msgReleased              // handed back with a Nak when its subscription ended
)

// Message is a message delivered by an Adapter subscription. It implements
// eventstream.Message and eventstream.HeaderCarrier. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads.
type Message struct {
	topic   string
	value   []byte
	key     []byte
	headers map[string]string
	ts      time.Time // from HeaderTime; zero: the store time, from the metadata

	metaOnce  sync.Once // the reply subject is parsed on first use
	storeTime time.Time
	seq       uint64
	delivered uint64

	group string
	sub   *subscription
	raw   jetstream.Msg
	state atomic.Int32
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
)

func newMessage(s *subscription, raw jetstream.Msg) *Message {
	m := &Message{topic: s.topic, value: raw.Data(), group: s.group, sub: s, raw: raw}
	for k, vs := range raw.Headers() {
		if len(vs) == 0 {
			continue
		}
		v := vs[0] // a repeated header: the first value wins
		switch k {
		case HeaderKey:
			if m.key == nil {
				m.key = []byte(v)
			}
			continue
		case HeaderKeyBase64:
			if b, err := base64.StdEncoding.DecodeString(v); err == nil {
				m.key = b
			}
			continue
		case HeaderTime:
			if ns, err := strconv.ParseInt(v, 10, 64); err == nil {
				m.ts = time.Unix(0, ns)
			}
			continue
		}
		if strings.HasPrefix(k, HeaderEncodedPrefix) {
			name, err1 := base64.RawURLEncoding.DecodeString(k[len(HeaderEncodedPrefix):])
			val, err2 := base64.StdEncoding.DecodeString(v)
			if err1 == nil && err2 == nil {
				k, v = string(name), string(val)
			}
		} else if reservedHeader(k) {
			continue // server (Nats-*) or adapter (es-*) metadata
		}
		if m.headers == nil {
			m.headers = make(map[string]string, len(raw.Headers()))
		}
		m.headers[k] = v
	}
	return m
}

func (m *Message) meta() {
	m.metaOnce.Do(func() {
		if md, err := m.raw.Metadata(); err == nil {
			m.seq = md.Sequence.Stream
			m.delivered = md.NumDelivered
			m.storeTime = md.Timestamp
		}
	})
}

// Topic returns the topic the message was read from.
func (m *Message) Topic() string { return m.topic }

// Value returns the message body.
func (m *Message) Value() []byte { return m.value }

// Key returns the record key, or nil when the message has none (for
// example when a plain NATS client published it).
func (m *Message) Key() []byte { return m.key }

// Timestamp returns the Record.Time the publisher set, or else the time the
// server stored the message.
func (m *Message) Timestamp() time.Time {
	if !m.ts.IsZero() {
		return m.ts
	}
	m.meta()
	return m.storeTime
}

// Headers returns the message headers without the adapter's (es-*) and the
// server's (Nats-*) own; nil when there are none. When a header occurs
// several times the first value wins.
func (m *Message) Headers() map[string]string { return m.headers }

// Sequence returns the message's sequence number in its topic's stream.
func (m *Message) Sequence() uint64 {
	m.meta()
	return m.seq
}

// NumDelivered returns how often the server has delivered this message to
// the group, this delivery included.
func (m *Message) NumDelivered() uint64 {
	m.meta()
	return m.delivered
}
