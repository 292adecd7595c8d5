package eventstream

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"
)

// Event is one event as a handler sees it.
//
// What Data holds depends on the mode:
//
//   - Memory mode: Data is the payload value passed to Emit, unchanged and
//     not copied (a pointer payload reaches every handler as the same
//     pointer). ContentType is empty.
//   - Distributed mode: Data is a []byte holding the payload as the
//     publisher's Serializer encoded it, and ContentType names that encoding
//     (for example "application/json"). For a record that was not written by
//     an eventstream bus (a bare payload, see the distributed bus docs) Data is
//     the record value.
//
// In both modes Unmarshal is the way to read the payload. In memory mode the
// same *Event is shared by every subscription that receives it: handlers must
// treat it as read-only.
type Event struct {
	// ID is unique per event: a time-ordered UUIDv7 string for events
	// created by a bus.
	ID string
	// Topic is the topic the event was emitted on.
	Topic string
	// Type describes the kind of event (CloudEvents "type"). Emit sets it to
	// the Go type of the payload unless WithType says otherwise.
	Type string
	// Source identifies the producer (CloudEvents "source"); Config.Source.
	Source string
	// Time is when the event was created.
	Time time.Time
	// Key orders and partitions events: events with the same key reach
	// handlers of a subscription in emit order, whatever the concurrency.
	// Empty means no key.
	Key string
	// Headers are user metadata. Nil when there are none. In distributed
	// mode they are the envelope's extension attributes plus the broker
	// headers of the message (for example the eventstream-error header of a
	// dead-lettered record), except content-type.
	Headers map[string]string
	// ContentType is the encoding of Data in distributed mode; empty in
	// memory mode.
	ContentType string
	// Data is the payload; see the type documentation for what it holds in
	// each mode.
	Data any

	ser Serializer // decodes Data for Unmarshal; nil means JSON
}

// Unmarshal stores the event payload in dst, which must be a non-nil
// pointer.
//
// When Data already has dst's type (Data is a T, or a *T, and dst is a *T,
// or Data is assignable to *dst) it is assigned without any serialization:
// a shallow copy. Otherwise Data is decoded with the bus Serializer: the
// bytes themselves in distributed mode, or, in memory mode, the payload after
// a round trip through the Serializer (so a map payload can be read into a
// struct just as it would be across processes). Errors wrap ErrDecode, or
// ErrContentType when the event was encoded with another content type than
// the Serializer reads; both are not retried by the bus.
func (e *Event) Unmarshal(dst any) error {
	dv := reflect.ValueOf(dst)
	if dv.Kind() != reflect.Pointer || dv.IsNil() {
		return fmt.Errorf("%w: Unmarshal needs a non-nil pointer, got %T", ErrDecode, dst)
	}
	ser := e.ser
	if ser == nil {
		ser = JSONSerializer{}
	}
	if e.ContentType == "" { // memory mode: try direct assignment first
		if e.Data != nil {
			target := dv.Elem()
			sv := reflect.ValueOf(e.Data)
			switch {
			case sv.Type().AssignableTo(target.Type()):
				target.Set(sv)
				return nil
			case sv.Kind() == reflect.Pointer && !sv.IsNil() && sv.Elem().Type().AssignableTo(target.Type()):
				target.Set(sv.Elem())
				return nil
			}
		}
		b, err := ser.Marshal(e.Data)
		if err != nil {
			return fmt.Errorf("%w: encoding %T payload of event %s: %w", ErrDecode, e.Data, e.ID, err)
		}
		if err := ser.Unmarshal(b, dst); err != nil {
			return fmt.Errorf("%w: event %s into %T: %w", ErrDecode, e.ID, dst, err)
		}
		return nil
	}
	if !sameContentType(e.ContentType, ser.ContentType()) {
		return fmt.Errorf("%w: %w: event %s is %q but the Serializer reads %q", ErrDecode, ErrContentType, e.ID, e.ContentType, ser.ContentType())
	}
	b, ok := e.Data.([]byte)
	if !ok {
		return fmt.Errorf("%w: event %s has %T data, want []byte", ErrDecode, e.ID, e.Data)
	}
	if err := ser.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("%w: event %s (%s) into %T: %w", ErrDecode, e.ID, e.ContentType, dst, err)
	}
	return nil
}

// Handler handles one event. Returning nil acknowledges it; an error makes the
// bus retry it per the subscription's RetryPolicy (unless the error is
// Permanent). ctx is cancelled when the subscription is removed or the bus
// closes and the drain timeout has passed.
type Handler func(ctx context.Context, e *Event) error

// Typed adapts a handler that wants the payload as a T: the event is decoded
// with Event.Unmarshal before fn is called. A payload that does not decode is
// a permanent failure (not retried).
func Typed[T any](fn func(ctx context.Context, e *Event, payload T) error) Handler {
	if fn == nil {
		return nil
	}
	return func(ctx context.Context, e *Event) error {
		var v T
		if err := e.Unmarshal(&v); err != nil {
			return err
		}
		return fn(ctx, e, v)
	}
}

// idGen makes time-ordered, unique UUIDv7 identifiers: 48 bits of Unix
// milliseconds, then 74 bits made of a random per-bus prefix and a counter,
// so IDs from one bus sort in creation order and IDs from different buses
// collide only if their 26-bit random prefixes and counters do.
type idGen struct {
	prefix  uint64 // random, 26 bits
	counter atomic.Uint64
	clock   atomic.Pointer[time.Time] // see now
}

// now returns the current time, like time.Now, with one clock read instead
// of two: the wall time is derived from a recent time.Now reading plus the
// monotonic time elapsed since, and the reading is renewed every second so
// that wall-clock adjustments are picked up.
func (g *idGen) now() time.Time {
	base := g.clock.Load()
	if base != nil {
		if d := time.Since(*base); d >= 0 && d < time.Second {
			return base.Add(d)
		}
	}
	t := time.Now()
	g.clock.Store(&t)
	return t
}

func newIDGen() *idGen {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	g := &idGen{prefix: binary.BigEndian.Uint64(b[:8]) & (1<<26 - 1)}
	g.counter.Store(binary.BigEndian.Uint64(b[8:]) & (1<<40 - 1))
	return g
}

// format writes the next ID for time t into dst in the canonical 36-byte
// form.
func (g *idGen) format(dst *[36]byte, t time.Time) {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	n := g.counter.Add(1) & (1<<48 - 1)
	randA := g.prefix >> 14                    // 12 bits
	randB := (g.prefix&(1<<14-1))<<48 | n      // 62 bits
	binary.BigEndian.PutUint64(u[0:8], ms<<16) // 48-bit timestamp
	u[6] = 0x70 | byte(randA>>8)&0x0f          // version 7
	u[7] = byte(randA)
	binary.BigEndian.PutUint64(u[8:16], randB)
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	const digits = "0123456789abcdef"
	// where byte i of u goes in the 8-4-4-4-12 form
	const at = "\x00\x02\x04\x06\x09\x0b\x0e\x10\x13\x15\x18\x1a\x1c\x1e\x20\x22"
	for i, c := range u {
		j := int(at[i])
		dst[j], dst[j+1] = digits[c>>4], digits[c&0x0f]
	}
	dst[8], dst[13], dst[18], dst[23] = '-', '-', '-', '-'
}

// eventBox holds an Event together with the bytes of its ID so that a new
// event costs one allocation.
type eventBox struct {
	Event
	id [36]byte
}

// newEvent returns an event with a fresh ID and time.
func (g *idGen) newEvent(topic string, t time.Time) *Event {
	b := new(eventBox)
	g.format(&b.id, t)
	// b.id is never written again, so the string view is immutable.
	b.Event.ID = unsafe.String(&b.id[0], len(b.id))
	b.Event.Topic = topic
	b.Event.Time = t
	return &b.Event
}

// newID returns a fresh ID string.
func (g *idGen) newID(t time.Time) string {
	var b [36]byte
	g.format(&b, t)
	return string(b[:])
}
