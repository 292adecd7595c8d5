package eventstream

import (
	"github.com/eventstream-go/eventstream/internal/wire"
)

// Dead letters.
//
// An event whose handling failed for good (retries exhausted, a Permanent
// error, a panic, an undecodable message, or — memory mode — an event left
// over by Off with no other group member) is reported (log, Stats.Failed,
// Config.OnFailure) and written to the subscription's dead-letter topic
// (SubscribeConfig.DeadLetterTopic, by default DeadLetterTopicName(topic,
// group)); in distributed mode the message is acknowledged only once that
// write succeeded. Both modes and every adapter write ONE shape:
//
//   - The dead letter is the failed event itself — same ID, Source, Type,
//     Key, Time, ContentType and Data (in distributed mode: the original
//     message bytes, so a binary-mode or bare-payload record stays as it
//     was) — with four entries added to its headers:
//     HeaderDeadLetterError (the error text), HeaderDeadLetterAttempts (the
//     number of handler calls, decimal), HeaderDeadLetterTopic and
//     HeaderDeadLetterGroup (the subscription that failed).
//   - Where the adapter publishes records (RecordPublisher) the four travel
//     as broker headers next to the original headers; otherwise the event is
//     written as a structured CloudEvent with the four as attributes.
//   - A message that could not be decoded has no event. Where the adapter
//     publishes records, its dead letter is likewise the original record
//     (bytes, key, headers) plus the four headers. Otherwise the bytes are
//     wrapped: an event of type DeadLetterEventType whose Data is the raw
//     message bytes, with the four headers as attributes; its content type
//     is the bus Serializer's, so that a subscriber with the same Serializer
//     receives it (read the bytes from Data; Unmarshal fails as it did for
//     the original).
//
// A bus subscribed to the dead-letter topic therefore sees the original
// event with the four names in Event.Headers, in both modes.

// Header names of the dead-letter headers (see above).
const (
	HeaderDeadLetterError    = wire.HeaderError
	HeaderDeadLetterAttempts = wire.HeaderAttempts
	HeaderDeadLetterTopic    = wire.HeaderTopic
	HeaderDeadLetterGroup    = wire.HeaderGroup
)

// DeadLetterEventType is the CloudEvents type of the dead letter of a
// message that could not be decoded; its Data is the raw message bytes.
const DeadLetterEventType = "eventstream.deadletter"

// CloudEventsContentType is the content type of the structured envelope;
// adapters that carry headers receive it as the "content-type" header,
// unless they take envelopes bare (see BareEnvelope).
const CloudEventsContentType = wire.CloudEventsContentType

// deadLetterEvent returns the dead letter of ev (or, when ev is nil, of the
// raw bytes) on topic.
func deadLetterEvent(b *bus, topic string, ev *Event, raw []byte, f *Failure) *Event {
	var dl Event
	if ev != nil {
		dl = *ev
	} else {
		now := b.ids.now()
		dl = Event{ID: b.ids.newID(now), Source: b.cfg.Source, Type: DeadLetterEventType, Time: now,
			ContentType: b.ser.ContentType(), Data: raw, ser: b.ser}
	}
	dl.Topic = topic
	dl.trace = nil
	dl.Headers = wire.DeadLetterHeaders(dl.Headers, f.Err.Error(), f.Attempts, f.Topic, f.Group)
	return &dl
}

// deadLetterHeaders returns the broker headers of a dead-lettered record.
func deadLetterHeaders(native map[string]string, f *Failure) map[string]string {
	return wire.DeadLetterHeaders(native, f.Err.Error(), f.Attempts, f.Topic, f.Group)
}
