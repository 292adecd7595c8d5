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

	ser   Serializer // decodes Data for Unmarshal; nil means JSON
	trace *fields    // propagation fields (see Carrier); nil when none
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

// idGen, the clock cache of now and eventBox stay because they pay:
// BenchmarkNewEvent measures idGen at ~120 ns and 1 allocation per event
// against ~230 ns and 2 allocations for time.Now plus uuid.NewV7().String(),
// and Emit's one allocation per event is the memory-mode budget.
//
// Tried and left out because they did not pay: handing out eventBoxes from
// slabs of 16 kept in a sync.Pool (no change in BenchmarkMemoryFloor's CPU
// per event: the allocation's cost follows the bytes, which stay the same,
// and an event a handler keeps would pin its whole slab); giving the
// counter a cache line of its own (no measurable change with parallel
// emitters); taking the counter before the allocation; formatting the
// counter two hex digits a step from a 512-byte table (format 11.0 -> 9.4
// ns, about 1.6 ns of an Emit: not worth the table; see
// BenchmarkNewEventParts for the split).
//
// idGen makes time-ordered, unique UUIDv7 identifiers: 48 bits of Unix
// milliseconds, the version, 12 + 14 random bits fixed per generator, the
// variant, and a 48-bit counter, so IDs from one bus sort in creation order
// and IDs from different buses collide only if their 26 random bits and
// counters do.
//
// In the canonical 8-4-4-4-12 form the first 13 characters depend only on the
// millisecond, the next 11 only on the generator and the last 12 on the
// counter; the first two parts are formatted once and copied.
type idGen struct {
	counter atomic.Uint64
	clock   atomic.Pointer[time.Time] // see now
	msPart  atomic.Pointer[msPrefix]  // ID characters [0, 13) of the latest millisecond
	mid     [11]byte                  // ID characters [13, 24)
}

type msPrefix struct {
	ms int64
	s  [13]byte
}

const hexDigits = "0123456789abcdef"

func newIDGen() *idGen {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	g := &idGen{}
	g.counter.Store(binary.BigEndian.Uint64(b[8:]) & (1<<40 - 1))
	r := binary.BigEndian.Uint32(b[:4])
	// bytes 6-7: version 7 and 12 random bits; bytes 8-9: variant and 14
	// random bits.
	u := [4]byte{0x70 | byte(r>>28)&0x0f, byte(r >> 20), 0x80 | byte(r>>14)&0x3f, byte(r >> 6)}
	g.mid[0], g.mid[5], g.mid[10] = '-', '-', '-'
	for i, c := range u {
		j := 1 + 2*i + i/2 // 1, 3, 6, 8
		g.mid[j], g.mid[j+1] = hexDigits[c>>4], hexDigits[c&0x0f]
	}
	return g
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

// format writes the next ID for time t into dst.
func (g *idGen) format(dst *[36]byte, t time.Time) {
	ms := t.UnixMilli()
	p := g.msPart.Load()
	if p == nil || p.ms != ms {
		p = &msPrefix{ms: ms}
		var u [8]byte
		binary.BigEndian.PutUint64(u[:], uint64(ms)<<16)
		for i, c := range u[:6] {
			j := 2*i + i/4 // 0, 2, 4, 6, 9, 11
			p.s[j], p.s[j+1] = hexDigits[c>>4], hexDigits[c&0x0f]
		}
		p.s[8] = '-'
		g.msPart.Store(p)
	}
	copy(dst[0:13], p.s[:])
	copy(dst[13:24], g.mid[:])
	n := g.counter.Add(1)
	for i := 35; i >= 24; i-- {
		dst[i] = hexDigits[n&0x0f]
		n >>= 4
	}
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
