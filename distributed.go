package eventstream

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/eventstream-go/eventstream/internal/wire"
)

// mqTransport is the transport of distributed mode: events are encoded by
// package wire and written through the MQAdapter; each subscription has a
// reader goroutine that decodes the adapter's messages into its queue.
type mqTransport struct {
	b   *bus
	ad  MQAdapter
	rp  RecordPublisher // ad as a RecordPublisher, or nil
	ser Serializer
	sys string
	// binary publishes in CloudEvents binary content mode.
	binary bool
	// jsonOut says the Serializer is encoding/json, whose output needs no
	// validation before it is embedded in an envelope.
	jsonOut bool
	// bare: the adapter takes structured envelopes bare (see BareEnvelope):
	// no content-type header, no record time.
	bare bool
	// hdr are the broker headers of a structured envelope without user
	// headers (nil when bare); read-only.
	hdr map[string]string
}

func newMQTransport(b *bus, cfg DistributedConfig) *mqTransport {
	t := &mqTransport{b: b, ad: cfg.MQAdapter, ser: cfg.Serializer, binary: cfg.BinaryMode,
		hdr: map[string]string{"content-type": CloudEventsContentType}}
	t.rp, _ = t.ad.(RecordPublisher)
	if be, ok := t.ad.(BareEnvelope); ok && t.rp != nil && be.BareEnvelope() {
		t.bare, t.hdr = true, nil
	}
	_, t.jsonOut = t.ser.(JSONSerializer)
	if n, ok := t.ad.(SystemNamer); ok {
		t.sys = n.MessagingSystem()
	}
	if t.rp == nil {
		if inner := unwrapRecordPublisher(t.ad); inner != nil {
			b.log.Warn("eventstream: the MQAdapter wraps a RecordPublisher but does not implement PublishRecord itself: "+
				"events are published without broker keys, so a partitioned broker does not keep per-key order; "+
				"implement PublishRecord in the wrapper (see Unwrapper)",
				"adapter", fmt.Sprintf("%T", t.ad), "wrapped", fmt.Sprintf("%T", inner))
		}
	}
	return t
}

// unwrapRecordPublisher follows the Unwrap chain of ad and returns the first
// adapter that implements RecordPublisher, or nil.
func unwrapRecordPublisher(ad MQAdapter) MQAdapter {
	for i := 0; i < 100; i++ {
		u, ok := ad.(Unwrapper)
		if !ok {
			return nil
		}
		if ad = u.Unwrap(); ad == nil {
			return nil
		}
		if _, ok := ad.(RecordPublisher); ok {
			return ad
		}
	}
	return nil
}

func (t *mqTransport) system() string         { return t.sys }
func (t *mqTransport) serializer() Serializer { return t.ser }

// wireEvent encodes the payload of e into w, which the caller keeps on its
// stack (one allocation less per Emit than returning a new wire.Event).
// validJSON reports that the data came from encoding/json.
func (t *mqTransport) wireEvent(e *Event, w *wire.Event) (validJSON bool, err error) {
	var data []byte
	ct := t.ser.ContentType()
	if b, ok := e.Data.([]byte); ok && e.ContentType != "" { // already encoded (a dead letter, a forwarded event)
		data, ct = b, e.ContentType
	} else {
		validJSON = t.jsonOut
		var err error
		if data, err = t.ser.Marshal(e.Data); err != nil {
			return false, fmt.Errorf("eventstream: encoding %T payload with %s: %w", e.Data, ct, err)
		}
	}
	*w = wire.Event{ID: e.ID, Source: e.Source, Type: e.Type, Time: e.Time, Key: e.Key,
		Headers: e.Headers, ContentType: ct, Data: data}
	w.TraceParent, w.TraceState = e.trace.traceFields()
	return validJSON, nil
}

// publish encodes e and writes it.
func (t *mqTransport) publish(ctx context.Context, e *Event) error {
	var w wire.Event
	validJSON, err := t.wireEvent(e, &w)
	if err != nil {
		return err
	}
	if err := t.write(ctx, e.Topic, &w, validJSON); err != nil {
		return fmt.Errorf("eventstream: publishing to %q: %w", e.Topic, err)
	}
	return nil
}

// write writes w to topic: binary mode, or a structured envelope with the
// key, headers and trace fields also as broker headers when the adapter
// publishes records.
func (t *mqTransport) write(ctx context.Context, topic string, w *wire.Event, validJSON bool) error {
	var key []byte
	if w.Key != "" {
		key = []byte(w.Key)
	}
	if t.binary {
		return t.rp.PublishRecord(ctx, topic, Record{Key: key, Value: w.Data, Headers: wire.BinaryHeaders(w), Time: w.Time})
	}
	env := wire.AppendStructured(make([]byte, 0, 256+len(w.Data)), w, validJSON)
	if t.rp == nil {
		return t.ad.Publish(ctx, topic, env)
	}
	hdr, tm := t.hdr, w.Time
	if t.bare {
		tm = time.Time{} // the envelope has it
	}
	if len(w.Headers) > 0 || w.TraceParent != "" { // also as broker headers, for consumers that do not read the envelope
		hdr = make(map[string]string, len(w.Headers)+3)
		for k, v := range w.Headers {
			hdr[k] = v
		}
		if !t.bare {
			hdr["content-type"] = CloudEventsContentType
		}
		wire.AddTrace(hdr, w)
	}
	return t.rp.PublishRecord(ctx, topic, Record{Key: key, Value: env, Headers: hdr, Time: tm})
}

// attach joins the adapter subscription and starts the reader.
func (t *mqTransport) attach(s *subscription) error {
	msgs, cancel, err := t.ad.Subscribe(context.Background(), s.topic, s.group)
	if err != nil {
		return fmt.Errorf("eventstream: subscribing to %q as %q: %w", s.topic, s.group, err)
	}
	if msgs == nil || cancel == nil {
		if cancel != nil {
			cancel()
		}
		return fmt.Errorf("%w: %T.Subscribe returned a nil channel or a nil cancel func without an error", ErrAdapterContract, t.ad)
	}
	s.unsubscribe = cancel
	s.p.decode = t.decode
	if s.cfg.Concurrency == 1 {
		// One worker keeps the adapter's order by itself: it reads and
		// decodes the messages, without a reader goroutine in between.
		s.p.src = msgs
		return nil
	}
	s.readDone = make(chan struct{})
	go t.read(s, msgs)
	return nil
}

// read moves messages from the adapter into s's queue, undecoded when its
// queue is known without decoding, so that decoding runs in parallel in the
// workers: one that cannot carry a key (see keyless) goes to the shared
// queue, one whose event key is certainly its broker key (see
// brokerKeyIsEventKey: every keyed event the bus writes) to that key's
// worker. Any other message is decoded first, to route it to its key's
// worker. (With one worker there is no reader: see pool.src.)
func (t *mqTransport) read(s *subscription, msgs <-chan Message) {
	defer close(s.readDone)
	for {
		var m Message
		var ok bool
		select { // without a message waiting this is a cheap poll, the blocking select follows
		case m, ok = <-msgs:
		default:
			select {
			case m, ok = <-msgs:
			case <-s.stopping:
				return
			}
		}
		if !ok {
			select {
			case <-s.stopping:
			default:
				go s.endedByAdapter() // it waits for this reader
			}
			return
		}
		if isClosed(s.stopping) {
			return // stopping: m stays unacknowledged and is redelivered
		}
		d := delivery{msg: m}
		key, bkey := "", []byte(nil)
		switch {
		case keyless(m):
		case brokerKeyIsEventKey(m):
			bkey = m.Key() // its lane is known: the worker decodes it
		default:
			if d = t.decode(m); d.ev != nil {
				key = d.ev.Key
			}
		}
		if ok, _ := s.enqueue(context.Background(), d, key, bkey); !ok {
			return // stopping; the message stays unacknowledged
		}
	}
}

// brokerKeyIsEventKey reports whether m's event certainly has m's broker key
// as its key, as every event the bus publishes with a key does: m has a
// broker key, and its binary-mode key header is that key, or its value
// names no other (it holds the member name "partitionkey" at most once, as
// "partitionkey":"<key>", and no escape that could spell it).
func brokerKeyIsEventKey(m Message) (ok bool) {
	defer func() { // the adapter's bug; decode reports it
		if recover() != nil {
			ok = false
		}
	}()
	k := m.Key()
	if len(k) == 0 {
		return false
	}
	if pk, has := header(m, "ce_partitionkey"); has {
		return pk == string(k)
	}
	v := m.Value()
	if scanFor(v, `\u`) >= 0 {
		return false
	}
	switch countFor(v, `"partitionkey"`) {
	case 0:
		return true // the event's key is the broker key (see decodeEvent)
	case 1:
		if bytes.ContainsAny(k, "\"\\") {
			return false // in the envelope it is escaped: decode to compare
		}
		i := bytes.Index(v, []byte(`"partitionkey":"`))
		if i < 0 {
			return false
		}
		rest := v[i+len(`"partitionkey":"`):]
		return len(rest) > len(k) && bytes.HasPrefix(rest, k) && rest[len(k)] == '"'
	}
	return false
}

// keyless reports whether m's event certainly has no key: m is not nil and
// has no broker key, no binary-mode key header, and its value does not
// contain the text "partitionkey" in quotes (a member name) nor an escape
// that could spell it in an envelope. A message for which it reports false is decoded to find out.
func keyless(m Message) (ok bool) {
	defer func() { // the adapter's bug; decode reports it
		if recover() != nil {
			ok = false
		}
	}()
	if isNil(m) || len(m.Key()) > 0 {
		return false
	}
	if _, has := header(m, "ce_partitionkey"); has {
		return false
	}
	// A member name token is "partitionkey" in quotes unless an escape
	// spells it, and only \u escapes can spell letters.
	v := m.Value()
	return scanFor(v, `\u`) < 0 && scanFor(v, `"partitionkey"`) < 0
}

// scanFor is bytes.Index for a needle whose first byte is rare in the text
// ('"' or '\\' in an envelope's payload): it jumps from one occurrence of
// that byte to the next, where bytes.Index falls back to a brute-force scan
// of the whole value once a few candidates failed.
func scanFor(v []byte, needle string) int {
	at := 0
	for {
		i := bytes.IndexByte(v[at:], needle[0])
		if i < 0 {
			return -1
		}
		at += i
		if bytes.HasPrefix(v[at:], []byte(needle)) {
			return at
		}
		at++
	}
}

// countFor counts the non-overlapping occurrences of needle in v, as scanFor
// finds them.
func countFor(v []byte, needle string) (n int) {
	for {
		i := scanFor(v, needle)
		if i < 0 {
			return n
		}
		n++
		v = v[i+len(needle):]
	}
}

// header returns m's broker header name, from its HeaderLister entries
// (the last of the name) or else its Headers map.
func header(m Message, name string) (v string, ok bool) {
	switch hc := m.(type) {
	case HeaderLister:
		for i, n := 0, hc.NumHeaders(); i < n; i++ {
			if k, hv := hc.HeaderAt(i); k == name {
				v, ok = hv, true
			}
		}
		return v, ok
	case HeaderCarrier:
		v, ok = hc.Headers()[name]
		return v, ok
	}
	return "", false
}

// decode turns a message into a delivery: the event its handler sees, or an
// error wrapping ErrDecode (or ErrAdapterContract for a nil message).
func (t *mqTransport) decode(m Message) (d delivery) {
	if isNil(m) {
		return delivery{msg: &undecodable{err: fmt.Errorf("%w: %T sent a nil Message", ErrAdapterContract, t.ad)}}
	}
	defer func() { // a Message implementation that panics is the adapter's bug, not ours to crash on
		if r := recover(); r != nil {
			d = delivery{msg: &undecodable{Message: m, err: fmt.Errorf("%w: reading the %T message panicked: %v", ErrAdapterContract, m, r)}}
		}
	}()
	if u, ok := m.(Undecodable); ok {
		if err := u.DecodeError(); err != nil {
			return delivery{msg: &undecodable{Message: m, err: fmt.Errorf("%w: %w", ErrDecode, err)}}
		}
	}
	ev, err := t.decodeEvent(m)
	if err != nil {
		return delivery{msg: &undecodable{Message: m, err: err}}
	}
	return delivery{ev: ev, msg: m}
}

// decodeEvent returns the event of m.
func (t *mqTransport) decodeEvent(m Message) (*Event, error) {
	v := m.Value()
	var native map[string]string
	var w wire.Event
	var isEnvelope bool
	var err error
	switch hc := m.(type) {
	case HeaderLister: // no map of the broker headers unless the event gets some
		isEnvelope, err = wire.DecodeList(&w, hc, v)
	case HeaderCarrier:
		native = hc.Headers()
		isEnvelope, err = wire.DecodeInto(&w, native, v)
	default:
		isEnvelope, err = wire.DecodeInto(&w, nil, v)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if isEnvelope {
		if !wire.SameContentType(w.ContentType, t.ser.ContentType()) {
			return nil, fmt.Errorf("%w: %w: publisher wrote %q, this subscriber's Serializer reads %q",
				ErrDecode, ErrContentType, w.ContentType, t.ser.ContentType())
		}
		e := newDecodedEvent(w.Data)
		e.ID, e.Source, e.Type, e.Time, e.Key, e.Headers = w.ID, w.Source, w.Type, w.Time, w.Key, w.Headers
		e.ContentType, e.Topic, e.ser, e.trace = w.ContentType, m.Topic(), t.ser, fieldsOf(w.TraceParent, w.TraceState)
		if e.Key == "" {
			if k := m.Key(); len(k) > 0 {
				e.Key = string(k)
			}
		}
		if e.Time.IsZero() {
			e.Time = m.Timestamp()
		}
		return e, nil
	}
	// A bare payload written by another producer.
	if hc, ok := m.(HeaderCarrier); ok && native == nil {
		native = hc.Headers()
	}
	if vd, ok := t.ser.(Validator); ok && !vd.Valid(v) {
		return nil, fmt.Errorf("%w: message is neither a CloudEvent nor a valid %s payload", ErrDecode, t.ser.ContentType())
	}
	e := newDecodedEvent(v)
	e.Topic, e.Time, e.Key, e.ContentType = m.Topic(), m.Timestamp(), string(m.Key()), t.ser.ContentType()
	e.ser, e.Headers, e.trace = t.ser, wire.MergeHeaders(native, nil), fieldsOf(native[wire.TraceParent], native[wire.TraceState])
	if p, ok := m.(Positioned); ok {
		e.ID = m.Topic() + "/" + strconv.Itoa(p.Partition()) + "/" + strconv.FormatInt(p.Offset(), 10)
	} else {
		e.ID = t.b.ids.newID(time.Now())
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return e, nil
}

// newDecodedEvent returns a zero Event whose Data is the []byte data: two
// allocations, the Event and the slice header the Data interface points to
// (a decoded event used to be built in one, with the interface assembled by
// hand through unsafe; one allocation per message was not worth depending
// on the runtime's interface layout).
func newDecodedEvent(data []byte) *Event { return &Event{Data: data} }

// detach stops the reader and waits for it.
func (t *mqTransport) detach(s *subscription) {
	if s.readDone != nil {
		<-s.readDone
	}
}

// release ends the adapter subscription; messages not acknowledged are
// delivered again.
func (t *mqTransport) release(s *subscription) {
	if s.unsubscribe != nil {
		s.unsubscribe()
	}
}

func (t *mqTransport) ack(s *subscription, d delivery) {
	m := d.message()
	if m == nil {
		return
	}
	if err := t.ad.Ack(context.Background(), s.group, m); err != nil {
		t.b.log.Warn("eventstream: ack failed; the message will be delivered again",
			"topic", s.topic, "group", s.group, "error", err)
	}
}

// requeue leaves the deliveries unacknowledged: the broker delivers them
// again once the subscription has ended.
func (t *mqTransport) requeue(*subscription, []delivery, int, error) {}

// deadLetter writes the dead letter of d (see the dead-letter shape in
// deadletter.go): the original bytes with the dead-letter headers where the
// adapter publishes records, a structured CloudEvent otherwise.
func (t *mqTransport) deadLetter(ctx context.Context, s *subscription, topic string, d delivery, f *Failure) error {
	tf := dlTrace(ctx)
	if m := d.message(); t.rp != nil && m != nil {
		var native map[string]string
		if hc, ok := m.(HeaderCarrier); ok {
			native = hc.Headers()
		}
		h := deadLetterHeaders(native, f)
		if tf != nil {
			p, st := tf.traceFields()
			wire.AddTrace(h, &wire.Event{TraceParent: p, TraceState: st})
		}
		return t.rp.PublishRecord(ctx, topic, Record{Key: m.Key(), Value: m.Value(), Headers: h, Time: time.Now()})
	}
	dl := deadLetterEvent(t.b, topic, d.ev, f.Raw, f)
	dl.trace = tf
	var w wire.Event
	validJSON, err := t.wireEvent(dl, &w)
	if err != nil {
		return err
	}
	return t.write(ctx, topic, &w, validJSON)
}
