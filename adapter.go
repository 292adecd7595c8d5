package eventstream

import (
	"context"
	"reflect"
	"time"
)

// Message is one record delivered by an MQAdapter subscription.
//
// Implementations must be safe to read from several goroutines: the bus reads
// a Message from its worker goroutines and hands the same value back to
// MQAdapter.Ack. The byte slices returned by Value and Key belong to the
// message and must not change after the message was sent on the channel.
type Message interface {
	// Topic is the topic the message was read from.
	Topic() string
	// Value is the message body exactly as it was published.
	Value() []byte
	// Timestamp is the broker or producer time of the message; the zero
	// time if the broker has none.
	Timestamp() time.Time
	// Key is the partitioning key, or nil when the message has none.
	Key() []byte
}

// MQAdapter connects the distributed bus to a message broker.
//
// The contract every adapter must honour (package adaptertest checks it):
//
//   - Publish stores message on topic and returns nil only once the broker
//     accepted it; it honours ctx. After Close it returns an error wrapping
//     ErrAdapterClosed. A nil or empty message is a valid message.
//   - Subscribe joins consumer group groupID on topic and returns a channel of
//     messages and a cancel function. Every group receives every message
//     published to the topic; subscriptions that share a group compete, so each
//     message goes to one of them. The channel is closed, and every goroutine the
//     subscription started has returned, once the subscription ends, which
//     happens when cancel is called, when ctx is done, or when the adapter is
//     closed; cancel waits for that, is idempotent and may be called at any
//     time. Subscribe on a closed adapter returns an error wrapping
//     ErrAdapterClosed.
//   - Delivery is at least once: a message that the group has not acknowledged
//     with Ack is delivered again to the group once the subscription that
//     received it has ended: at once, or after a broker-specific timeout
//     (a session timeout, an ack wait) when the adapter cannot hand it back
//     itself, e.g. after a crash. Messages are delivered in
//     publish order per key (per partition, for partitioned brokers), though a
//     redelivered message may arrive after later ones.
//   - Ack(ctx, groupID, msg) records that groupID has processed msg. It is
//     idempotent: acknowledging a message twice, or after its subscription
//     ended, is harmless and must not acknowledge any other message. An
//     adapter may ignore Ack for messages it cannot acknowledge any more
//     (for example after a rebalance), in which case they are redelivered.
//   - Close releases every resource, ends every subscription (closing its
//     channel) and is idempotent.
//   - All methods are safe for concurrent use, and Ack may be called for
//     messages in any order.
//
// Optional capabilities, each an exported interface the bus detects with a
// type assertion (the way io.Copy detects io.WriterTo): the adapter may
// implement RecordPublisher (keys, headers, timestamps; needed for per-key
// order on partitioned brokers), BareEnvelope and SystemNamer; its messages
// may implement HeaderCarrier (and HeaderLister), Positioned and
// Undecodable. A wrapper (middleware) around an adapter hides the
// capabilities of what it wraps unless it implements them too (forwarding
// each to the wrapped adapter); it should implement Unwrapper, and New logs
// a warning when the wrapped adapter publishes records but the wrapper does
// not, since events would then lose their broker keys and with them per-key
// order.
type MQAdapter interface {
	Publish(ctx context.Context, topic string, message []byte) error
	Subscribe(ctx context.Context, topic, groupID string) (<-chan Message, func(), error)
	Ack(ctx context.Context, groupID string, msg Message) error
	Close() error
}

// Record is a message to publish with its key, headers and timestamp.
type Record struct {
	// Key selects the partition (per-key order) on partitioned brokers; nil
	// means no key.
	Key []byte
	// Value is the message body.
	Value []byte
	// Headers are carried natively by the broker. Nil means none.
	Headers map[string]string
	// Time is the message timestamp; the zero time lets the adapter choose.
	Time time.Time
}

// RecordPublisher is implemented by adapters that can publish a key, headers
// and a timestamp together with the value. When the configured MQAdapter
// implements it the distributed bus publishes through PublishRecord, so that
// keyed events keep their order; otherwise it calls Publish and the key
// travels only inside the envelope.
type RecordPublisher interface {
	PublishRecord(ctx context.Context, topic string, r Record) error
}

// BareEnvelope is implemented by record publishers whose protocol binding
// carries a structured-mode CloudEvent as the bare payload, the way the
// CloudEvents NATS binding does, and whose brokers or clients pay for every
// header. New calls BareEnvelope once, so its answer must not change over
// the adapter's life, and only an adapter that also implements
// RecordPublisher is asked. When it reports true, the bus publishes its
// structured events without the content-type header and with a zero
// Record.Time: the envelope holds both, and the messages' Timestamp is
// then whatever time the broker gives them. The key, and the event's headers
// and trace context (as broker headers, for consumers that do not read the
// envelope), travel as before. Receivers need no header either: the bus
// recognises an envelope by its payload. Binary mode and dead letters are
// not affected.
type BareEnvelope interface {
	BareEnvelope() bool
}

// HeaderCarrier is implemented by messages that carry broker headers.
type HeaderCarrier interface {
	// Headers returns the message headers; nil when there are none. The
	// caller must not modify the map.
	Headers() map[string]string
}

// HeaderLister is implemented by messages that can list their broker
// headers one entry at a time, so that the bus reads them without the map
// Headers returns (the adapter may then build that map only when Headers is
// called). The entries hold exactly what Headers holds: every name of the
// map, and for a name that occurs in several entries the last entry's value
// is the map's. Like Headers, the entries must not change once the message
// was sent on the channel. The bus prefers the list to Headers when it
// decodes an envelope, so a message wrapper that embeds a HeaderLister and
// changes what Headers returns must also list what it returns (or hide
// the embedded NumHeaders and HeaderAt).
type HeaderLister interface {
	HeaderCarrier
	// NumHeaders returns the number of entries.
	NumHeaders() int
	// HeaderAt returns entry i, 0 <= i < NumHeaders().
	HeaderAt(i int) (name, value string)
}

// Undecodable is implemented by messages that may stand for broker data the
// adapter could not read into a record: a Kafka record batch that does not
// decompress, say, which would come back unchanged on every fetch. When
// DecodeError returns a non-nil error the message is such a stand-in: its
// Value is whatever raw bytes the adapter has (the undecodable data, for
// inspection) and acknowledging it moves the subscription past all the data
// it stands for. The bus does not decode it, call a handler or retry it: it
// dead-letters it with an error wrapping ErrDecode and DecodeError's error
// (as for any undecodable message), and acknowledges it once the dead letter
// was written, so that poison data neither blocks a partition nor vanishes
// without a trace. For an ordinary message DecodeError returns nil.
type Undecodable interface {
	DecodeError() error
}

// Unwrapper is implemented by MQAdapter wrappers (logging, metrics, fault
// injection): Unwrap returns the wrapped adapter. The bus follows the chain
// only to warn when a wrapper hides RecordPublisher; it always calls the
// outermost adapter.
type Unwrapper interface {
	Unwrap() MQAdapter
}

// isNil reports whether m is nil or a nil pointer in an interface.
func isNil(m Message) bool {
	if m == nil {
		return true
	}
	v := reflect.ValueOf(m)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}
