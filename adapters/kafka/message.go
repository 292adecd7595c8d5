package kafka

import (
	"time"

	eventstream "github.com/eventstream-go/eventstream"
)

// Message is a record delivered by an Adapter subscription. It implements
// eventstream.Message and eventstream.HeaderCarrier. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads.
type Message struct {
	topic     string
	partition int
	offset    int64
	key       []byte
	value     []byte
	headers   map[string]string
	ts        time.Time

	group   string
	tracker *partTracker
	// bad is set on the stand-in for a record batch that cannot be
	// decoded; nil on every ordinary message.
	bad *badBatch
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
	_ eventstream.Undecodable   = (*Message)(nil)
)

// Topic returns the topic the message was read from.
func (m *Message) Topic() string { return m.topic }

// Value returns the message body; empty (never nil) for an empty or null
// record.
func (m *Message) Value() []byte { return m.value }

// Key returns the record key, or nil when the record has none.
func (m *Message) Key() []byte { return m.key }

// Timestamp returns the record timestamp (producer or broker time); the zero
// time when the record has none.
func (m *Message) Timestamp() time.Time { return m.ts }

// Headers returns the record headers, nil when there are none. When a header
// key occurs several times the last value wins.
func (m *Message) Headers() map[string]string { return m.headers }

// Headers of the stand-in for an undecodable record batch (see
// Message.DecodeError).
const (
	// HeaderStandInOffsets holds the offsets the stand-in covers, "first-last".
	HeaderStandInOffsets = "es-kafka-offsets"
	// HeaderStandInBytes holds the size of the batch as fetched, decimal.
	HeaderStandInBytes = "es-kafka-batch-bytes"
)

// DecodeError is nil for a record. It is not nil for the stand-in the
// adapter delivers in place of a record batch that passed its CRC but
// cannot be decoded — it does not decompress, decompresses past
// Config.MaxDecompressedBatchBytes, or its records are malformed — which
// every fetch would return unchanged. The stand-in's Value is the batch as
// fetched (header included, still compressed) when it is at most 64 KiB,
// otherwise empty (the batch stays in the log until retention removes it);
// its Key is nil, its Headers are HeaderStandInOffsets and
// HeaderStandInBytes, and its Offset is the batch's last offset:
// acknowledging it moves the partition past the whole batch. The bus
// dead-letters it (eventstream.Undecodable).
func (m *Message) DecodeError() error {
	if m.bad == nil {
		return nil
	}
	return m.bad
}

// Partition returns the partition the record was read from.
func (m *Message) Partition() int { return m.partition }

// Offset returns the record's offset within its partition.
func (m *Message) Offset() int64 { return m.offset }

// headerCache remembers the previous record's header map, so that a record
// with the same headers shares it (records written by one producer usually
// carry the same few headers, such as the content-type of a structured
// CloudEvent). The maps are never modified once built. It belongs to one
// goroutine.
type headerCache struct {
	last map[string]string
}

// reusable reports whether hs are exactly the headers of c.last.
func (c *headerCache) reusable(hs []rawHeader) bool {
	m := c.last
	if len(hs) == 0 || len(m) != len(hs) || len(hs) > 16 {
		return false
	}
	for i, h := range hs {
		if v, ok := m[string(h.key)]; !ok || v != string(h.value) {
			return false
		}
		// With a key repeated, len(hs) distinct keys of m cannot all be
		// among hs: [a a] must not reuse {a, b}.
		for _, prev := range hs[:i] {
			if string(prev.key) == string(h.key) {
				return false
			}
		}
	}
	return true
}

// outBuffer is the capacity of a subscription's channel. A buffer lets a
// partition's fetch goroutine hand over a fetched batch without a goroutine
// switch per message; the messages in it count as in flight, so it does not
// raise the read-ahead bound (Config.MaxInFlightPerPartition).
const outBuffer = 128
