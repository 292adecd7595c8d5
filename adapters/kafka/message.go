package kafka

import (
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/headerset"
)

// Message is a record delivered by an Adapter subscription. It implements
// eventstream.Message, eventstream.HeaderCarrier and
// eventstream.HeaderLister. Its accessors return
// values owned by the message that the caller must not modify. A Message is
// safe for concurrent reads.
type Message struct {
	topic     string
	partition int
	offset    int64
	key       []byte
	value     []byte
	headers   *headerset.Set // nil: none; may be shared with other messages
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
	_ eventstream.HeaderLister  = (*Message)(nil)
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
// key occurs several times the last value wins. The map is built on the
// first call and shared by the consecutive records with the same headers.
func (m *Message) Headers() map[string]string { return m.headers.Map() }

// NumHeaders returns the number of the record's headers, repeated keys
// included (see HeaderAt).
func (m *Message) NumHeaders() int { return m.headers.Len() }

// HeaderAt returns the record's header i in the record's order,
// 0 <= i < NumHeaders(): the bus reads the headers so, without the map.
func (m *Message) HeaderAt(i int) (key, value string) { return m.headers.At(i) }

// headerSet is a headerset.Set whose list is backed, for the usual few
// headers, by the same allocation.
type headerSet struct {
	headerset.Set
	inline [8]headerset.Header
}

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

// headerCache remembers the previous record's headers, so that a record
// with the same headers shares them (records written by one producer usually
// carry the same few headers, such as the content-type of a structured
// CloudEvent). The sets are never modified once built, but for their map,
// built once. It belongs to one goroutine.
type headerCache struct {
	last *headerset.Set
}

// reusable reports whether hs are the headers of c.last, in the same order.
func (c *headerCache) reusable(hs []rawHeader) bool {
	if len(hs) == 0 || c.last == nil || len(c.last.List) != len(hs) {
		return false
	}
	for i, h := range hs { // in order, so HeaderAt keeps the record's order
		if l := c.last.List[i]; l.Name != string(h.key) || l.Value != string(h.value) {
			return false
		}
	}
	return true
}

// outBuffer is the capacity of a subscription's channel. A buffer lets a
// partition's fetch goroutine hand over a fetched batch without a goroutine
// switch per message; the messages in it count as in flight, so it does not
// raise the read-ahead bound (Config.MaxInFlightPerPartition).
const outBuffer = 128
