package nats

import (
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/headerset"
	natsgo "github.com/nats-io/nats.go"
)

// Message states.
const (
	msgPending  int32 = iota // held by its subscription, not acknowledged
	msgAcked                 // acknowledged
	msgReleased              // handed back with a Nak when its subscription ended
)

// Message is a message delivered by an Adapter subscription. It implements
// eventstream.Message, eventstream.HeaderCarrier and
// eventstream.HeaderLister. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads.
type Message struct {
	topic   string
	value   []byte
	key     []byte
	headers *headerset.Set // nil: none; may be shared with other messages
	ts      time.Time      // from HeaderTime; zero: the store time, from the metadata

	metaOnce  sync.Once // the reply subject is parsed on first use
	storeTime time.Time
	seq       uint64
	delivered uint64

	group string
	sub   *subscription
	ackTo string // the reply subject: $JS.ACK.<...>
	size  int    // its size as the server counts it against a pull's max_bytes
	state atomic.Int32
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
	_ eventstream.HeaderLister  = (*Message)(nil)
)

func newMessage(s *subscription, raw *natsgo.Msg) *Message {
	m := &Message{topic: s.topic, value: raw.Data, group: s.group, sub: s, ackTo: raw.Reply, size: serverSize(raw, s.a != nil && s.a.cfg.Exclusive)}
	// The key and the time are read here; the user headers are compared
	// with the previous message's, whose set is shared when they are the
	// same (consecutive messages with the same headers, such as the bus's
	// structured events with EnvelopeHeaders): no allocation for them.
	users, same := 0, true
	for k, vs := range raw.Header {
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
			users, same = users+1, false
			continue
		}
		if reservedHeader(k) {
			continue // server (Nats-*) or adapter (es-*) metadata
		}
		users++
		if same && !hasHeader(s.lastHeaders, k, v) {
			same = false
		}
	}
	switch {
	case users == 0:
	case same && s.lastHeaders != nil && users == s.lastHeaders.Len():
		m.headers = s.lastHeaders
	default:
		m.headers = userHeaders(raw.Header, users)
		s.lastHeaders = m.headers
	}
	return m
}

// serverSize is the size of raw as the server counted it against its pull
// request's max_bytes: subject, reply subject, headers and payload; from a
// pinned consumer (pinned) without the Nats-Pin-Id header it adds, last,
// after counting (and without the header block's framing when that is the
// block's only header).
func serverSize(raw *natsgo.Msg, pinned bool) int {
	n := raw.Size()
	if ids := raw.Header[pinIDHdr]; pinned && len(ids) > 0 {
		n -= len(pinIDHdr) + len(": ") + len(ids[len(ids)-1]) + len("\r\n")
		if len(raw.Header) == 1 && len(ids) == 1 {
			n -= len("NATS/1.0\r\n") + len("\r\n")
		}
	}
	return n
}

// pinIDHdr is the header in which a pinned consumer names the pin.
const pinIDHdr = "Nats-Pin-Id"

// headerSet is a headerset.Set of a message's user headers, one entry per
// name but for an encoded name that decodes to another header's (see
// HeaderAt), whose list is backed, for the usual few headers, by the same
// allocation.
type headerSet struct {
	headerset.Set
	inline [8]headerset.Header
}

// hasHeader reports whether s (nil: no headers) holds the header name: value.
func hasHeader(s *headerset.Set, name, value string) bool {
	for i := range s.Len() {
		if n, v := s.At(i); n == name {
			return v == value
		}
	}
	return false
}

// userHeaders returns the user headers of h, n of them at most: the
// reserved ones left out, the encoded ones (HeaderEncodedPrefix) decoded.
func userHeaders(h natsgo.Header, n int) *headerset.Set {
	out := new(headerSet)
	out.List = out.inline[:0]
	if n > len(out.inline) {
		out.List = make([]headerset.Header, 0, n)
	}
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if strings.HasPrefix(k, HeaderEncodedPrefix) {
			name, err1 := base64.RawURLEncoding.DecodeString(k[len(HeaderEncodedPrefix):])
			val, err2 := base64.StdEncoding.DecodeString(v)
			if err1 == nil && err2 == nil {
				k, v = string(name), string(val)
			}
		} else if reservedHeader(k) {
			continue
		}
		out.List = append(out.List, headerset.Header{Name: k, Value: v})
	}
	return &out.Set
}

func (m *Message) meta() {
	m.metaOnce.Do(func() {
		if md, ok := parseAckSubject(m.ackTo); ok {
			m.seq, m.delivered, m.storeTime = md.seq, md.delivered, md.stored
		}
	})
}

// Acknowledgement bodies.
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

// reply sends an acknowledgement of kind body (ackAck, ackNak,
// ackProgress) for m, without waiting for the server's answer.
func (m *Message) reply(body []byte) error {
	return m.sub.a.nc.Publish(m.ackTo, body)
}

// ackMeta is what the reply subject of a JetStream message tells.
type ackMeta struct {
	seq, delivered uint64
	stored         time.Time
}

// parseAckSubject reads the reply subject of a JetStream message:
// $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
// or, from newer servers, the same with <domain>.<account hash> before the
// stream and possibly more tokens after the pending count.
func parseAckSubject(s string) (ackMeta, bool) {
	const prefix = "$JS.ACK."
	if !strings.HasPrefix(s, prefix) {
		return ackMeta{}, false
	}
	var tok [12]string
	n := 0
	for rest := s[len(prefix):]; n < len(tok); n++ {
		var ok bool
		tok[n], rest, ok = strings.Cut(rest, ".")
		if !ok {
			n++
			break
		}
	}
	var t []string // <stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>
	switch {
	case n == 7:
		t = tok[:7]
	case n >= 9:
		t = tok[2:9]
	default:
		return ackMeta{}, false
	}
	delivered, err1 := strconv.ParseUint(t[2], 10, 64)
	seq, err2 := strconv.ParseUint(t[3], 10, 64)
	ns, err3 := strconv.ParseInt(t[5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return ackMeta{}, false
	}
	return ackMeta{seq: seq, delivered: delivered, stored: time.Unix(0, ns)}, true
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
// several times the first value wins. Consecutive messages of a
// subscription with the same headers share one map: it must not be
// modified.
func (m *Message) Headers() map[string]string { return m.headers.Map() }

// NumHeaders returns the number of the message's headers (see HeaderAt).
func (m *Message) NumHeaders() int { return m.headers.Len() }

// HeaderAt returns the name and value of header i, 0 <= i < NumHeaders(),
// the entries of the map Headers returns (the bus reads them so, without
// the map). An encoded name that decodes to the name of another header
// makes two entries of one name: the last is the map's.
func (m *Message) HeaderAt(i int) (name, value string) { return m.headers.At(i) }

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
