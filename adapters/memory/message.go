package memory

import (
	"time"

	"github.com/eventstream-go/eventstream"
)

// record is one message as stored in a partition log. Records are immutable
// once appended; deliveries hand out copies (see record.deliver).
type record struct {
	offset  int64
	key     []byte
	value   []byte
	headers map[string]string
	time    time.Time
}

// Message is a message delivered by a memory subscription. It implements
// eventstream.Message and eventstream.HeaderCarrier and also tells where the
// message is stored (Partition and Offset).
//
// Every delivery gets its own copy of the key, value and headers, the way a
// real broker would send bytes over the network, so a consumer that modifies
// them cannot affect other groups.
type Message struct {
	topic     string
	partition int
	rec       record

	// adapter and group identify who may acknowledge the message.
	adapter *Adapter
	group   string
}

var (
	_ eventstream.Message       = (*Message)(nil)
	_ eventstream.HeaderCarrier = (*Message)(nil)
)

// Topic returns the topic the message was read from.
func (m *Message) Topic() string { return m.topic }

// Value returns the message body exactly as it was published.
func (m *Message) Value() []byte { return m.rec.value }

// Key returns the key the message was published with, or nil.
func (m *Message) Key() []byte { return m.rec.key }

// Timestamp returns the Record.Time the message was published with, or the
// time Publish stored it when none was given.
func (m *Message) Timestamp() time.Time { return m.rec.time }

// Headers returns the headers the message was published with, or nil when it
// has none. The caller must not modify the map.
func (m *Message) Headers() map[string]string { return m.rec.headers }

// Partition returns the partition of the topic the message is stored in.
func (m *Message) Partition() int { return m.partition }

// Offset returns the position of the message in its partition. Offsets start
// at 0 and grow by one per message.
func (m *Message) Offset() int64 { return m.rec.offset }
