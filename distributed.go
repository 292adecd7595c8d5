package eventstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// distributedBus passes events through an MQAdapter.
type distributedBus struct {
	*core
	ad  MQAdapter
	rp  RecordPublisher   // ad as a RecordPublisher, or nil
	hdr map[string]string // native headers of every published envelope; read-only
	// jsonOut says the Serializer is encoding/json, whose output needs no
	// validation before it is embedded in an envelope.
	jsonOut bool

	mu   sync.Mutex
	live map[*distSub]struct{}
}

// job is one message on its way through a subscription's pool, decoded by
// the reader or by the worker (see distSub.read).
type job struct {
	msg     Message
	ev      *Event
	err     error
	decoded bool
}

// distSub is one distributed subscription.
type distSub struct {
	bus          *distributedBus
	topic, group string
	dlq          string
	cfg          SubscribeConfig
	h            Handler
	pool         *pool[job]
	ctx          context.Context // handler context
	cancel       context.CancelFunc
	unsubscribe  func() // ends the adapter subscription
	stopRead     chan struct{}
	readDone     chan struct{}
	off          sync.Once
}

func (s *distSub) Topic() string { return s.topic }
func (s *distSub) Group() string { return s.group }

func newDistributedBus(c *core) *distributedBus {
	b := &distributedBus{
		core: c,
		ad:   c.cfg.Distributed.MQAdapter,
		hdr:  map[string]string{"content-type": CloudEventsContentType},
		live: make(map[*distSub]struct{}),
	}
	b.rp, _ = b.ad.(RecordPublisher)
	c.ser = c.cfg.Distributed.Serializer
	_, b.jsonOut = c.ser.(JSONSerializer)
	c.deliver = b.send
	return b
}

// send encodes e into its envelope and publishes it.
func (b *distributedBus) send(ctx context.Context, e *Event) error {
	data, err := b.ser.Marshal(e.Data)
	if err != nil {
		return fmt.Errorf("eventstream: encoding %T payload with %s: %w", e.Data, b.ser.ContentType(), err)
	}
	if b.cfg.Distributed.BinaryMode {
		r, err := binaryRecord(e, b.ser.ContentType(), data)
		if err != nil {
			return err
		}
		if err := b.rp.PublishRecord(ctx, e.Topic, r); err != nil {
			return fmt.Errorf("eventstream: publishing to %q: %w", e.Topic, err)
		}
		b.emitted.Add(1)
		return nil
	}
	env, err := appendEnvelope(make([]byte, 0, 256+len(data)), e, b.ser.ContentType(), data, b.jsonOut)
	if err != nil {
		return err
	}
	if b.rp != nil {
		var key []byte
		if e.Key != "" {
			key = []byte(e.Key)
		}
		hdr := b.hdr
		if len(e.Headers) > 0 { // also as broker headers, for consumers that do not read the envelope
			hdr = make(map[string]string, len(e.Headers)+1)
			for k, v := range e.Headers {
				hdr[k] = v
			}
			hdr["content-type"] = CloudEventsContentType
		}
		err = b.rp.PublishRecord(ctx, e.Topic, Record{Key: key, Value: env, Headers: hdr, Time: e.Time})
	} else {
		err = b.ad.Publish(ctx, e.Topic, env)
	}
	if err != nil {
		return fmt.Errorf("eventstream: publishing to %q: %w", e.Topic, err)
	}
	b.emitted.Add(1)
	return nil
}

// decode turns a message into the event its handler sees. The error wraps
// ErrDecode.
func (b *distributedBus) decode(m Message) (*Event, error) {
	v := m.Value()
	var native map[string]string
	if hc, ok := m.(HeaderCarrier); ok {
		native = hc.Headers()
	}
	e, binary, err := decodeBinary(native, v)
	isEnvelope := binary
	if !binary && err == nil {
		e, isEnvelope, err = decodeEnvelope(v)
	}
	if err != nil {
		return nil, err
	}
	if isEnvelope {
		if !sameContentType(e.ContentType, b.ser.ContentType()) {
			return nil, fmt.Errorf("%w: %w: publisher wrote %q, this subscriber's Serializer reads %q",
				ErrDecode, ErrContentType, e.ContentType, b.ser.ContentType())
		}
		e.Topic = m.Topic()
		if !binary { // decodeBinary already took the broker headers
			e.Headers = mergeHeaders(native, e.Headers)
		}
		if e.Key == "" && len(m.Key()) > 0 {
			e.Key = string(m.Key())
		}
		if e.Time.IsZero() {
			e.Time = m.Timestamp()
		}
		e.ser = b.ser
		return e, nil
	}
	// A bare payload written by another producer.
	if vd, ok := b.ser.(Validator); ok && !vd.Valid(v) {
		return nil, fmt.Errorf("%w: message is neither a CloudEvent nor a valid %s payload", ErrDecode, b.ser.ContentType())
	}
	e = &Event{
		Topic:       m.Topic(),
		Time:        m.Timestamp(),
		Key:         string(m.Key()),
		ContentType: b.ser.ContentType(),
		Data:        v,
		ser:         b.ser,
	}
	e.Headers = mergeHeaders(native, nil)
	if po, ok := m.(interface {
		Partition() int
		Offset() int64
	}); ok {
		e.ID = m.Topic() + "/" + strconv.Itoa(po.Partition()) + "/" + strconv.FormatInt(po.Offset(), 10)
	} else {
		e.ID = b.ids.newID(time.Now())
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	return e, nil
}

// mergeHeaders returns the broker headers of a message (less the envelope's
// content-type) overlaid with the envelope's extension attributes.
func mergeHeaders(native, ext map[string]string) map[string]string {
	n := len(native)
	if _, ok := native["content-type"]; ok {
		n--
	}
	if n == 0 {
		return ext
	}
	h := make(map[string]string, n+len(ext))
	for k, v := range native {
		if k != "content-type" {
			h[k] = v
		}
	}
	for k, v := range ext {
		h[k] = v
	}
	return h
}

// On implements Bus.
func (b *distributedBus) On(topic string, h Handler, opts ...SubscribeOption) (Subscription, error) {
	cfg, err := subscribeConfig(b.cfg.Subscribe, topic, h, opts)
	if err != nil {
		return nil, err
	}
	if cfg.ConsumerGroup == "" {
		return nil, ErrNoConsumerGroup
	}
	if b.closed.Load() {
		return nil, ErrClosed
	}
	s := &distSub{
		bus: b, topic: topic, group: cfg.ConsumerGroup, cfg: cfg, h: h,
		dlq:      cfg.DeadLetterTopic,
		stopRead: make(chan struct{}),
		readDone: make(chan struct{}),
	}
	if s.dlq == "" {
		s.dlq = DeadLetterTopicName(topic, s.group)
	}
	msgs, unsubscribe, err := b.ad.Subscribe(context.Background(), topic, s.group)
	if err != nil {
		return nil, fmt.Errorf("eventstream: subscribing to %q as %q: %w", topic, s.group, err)
	}
	s.unsubscribe = unsubscribe
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.pool = newPool(cfg.Concurrency, cfg.BufferSize, s.work)
	go s.read(msgs)

	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		s.stop()
		_ = s.finish(time.Now().Add(b.cfg.DrainTimeout))
		return nil, ErrClosed
	}
	b.live[s] = struct{}{}
	b.subs.Add(1)
	b.mu.Unlock()
	return s, nil
}

// read moves messages from the adapter into the worker pool.
func (s *distSub) read(msgs <-chan Message) {
	defer close(s.readDone)
	// The reader decodes when the key is only known after decoding (the
	// adapter carries no keys) and when there is a single worker, which then
	// handles one message while the reader decodes the next. With several
	// workers and native keys the workers decode in parallel.
	decodeHere := s.bus.rp == nil || s.cfg.Concurrency == 1
	for {
		var m Message
		var ok bool
		select {
		case m, ok = <-msgs:
		case <-s.stopRead:
			return
		}
		if !ok {
			select {
			case <-s.stopRead:
			default:
				s.bus.log.Warn("eventstream: adapter ended the subscription", "topic", s.topic, "group", s.group)
			}
			return
		}
		j := job{msg: m}
		var q chan job
		if !decodeHere {
			q = s.pool.queueBytes(m.Key())
		} else {
			j.ev, j.err = s.bus.decode(m)
			j.decoded = true
			key := ""
			if j.ev != nil {
				key = j.ev.Key
			}
			q = s.pool.queue(key)
		}
		select {
		case q <- j:
		case <-s.stopRead:
			return
		}
	}
}

// work handles one message on a worker goroutine: decode, handler with
// retries, then Ack — or dead-letter, then Ack.
func (s *distSub) work(j job) {
	b := s.bus
	if !j.decoded {
		j.ev, j.err = b.decode(j.msg)
	}
	if j.err != nil {
		s.failed(j.msg, nil, 0, j.err)
		return
	}
	attempts, err := b.handle(s.ctx, s.pool.stopCh, s.h, j.ev, s.cfg.RetryPolicy)
	if err == nil {
		s.ack(j.msg)
		return
	}
	var st stopped
	if errors.As(err, &st) {
		return // not acknowledged: the broker delivers it again
	}
	s.failed(j.msg, j.ev, attempts, err)
}

func (s *distSub) ack(m Message) {
	if err := s.bus.ad.Ack(context.Background(), s.group, m); err != nil {
		s.bus.log.Warn("eventstream: ack failed; the message will be delivered again",
			"topic", s.topic, "group", s.group, "error", err)
	}
}

// failed reports a message that failed for good, writes it to the
// dead-letter topic and, once that succeeded, acknowledges it. A failed
// dead-letter write is logged and retried with backoff until it succeeds or
// the subscription stops; the message is never acknowledged before, so if
// the subscription stops first the broker delivers it again.
func (s *distSub) failed(m Message, e *Event, attempts int, err error) {
	b := s.bus
	f := &Failure{Event: e, Raw: m.Value(), Topic: s.topic, Group: s.group, Attempts: attempts, Err: err}
	ctx := context.WithoutCancel(s.ctx)
	b.fail(ctx, f)
	for try := 1; ; try++ {
		derr := s.writeDeadLetter(ctx, m, e, f)
		if derr == nil {
			b.deadLettered.Add(1)
			s.ack(m)
			return
		}
		b.log.Error("eventstream: dead-letter write failed; the message stays unacknowledged and the write is retried",
			"topic", s.topic, "group", s.group, "dead_letter_topic", s.dlq, "try", try, "error", derr)
		t := time.NewTimer(deadLetterBackoff(try))
		select {
		case <-t.C:
		case <-s.pool.stopCh:
			t.Stop()
			return
		}
	}
}

// deadLetterBackoff is the pause before dead-letter write number try+1:
// exponential from 100ms to 30s, with jitter.
func deadLetterBackoff(try int) time.Duration {
	p := RetryPolicy{
		BackoffStrategy: BackoffExponential, InitialDelay: 100 * time.Millisecond,
		MaxDelay: 30 * time.Second, Multiplier: 2, Jitter: 0.2,
	}
	return p.jittered(p.Delay(try))
}

// writeDeadLetter writes one dead-letter record for m.
func (s *distSub) writeDeadLetter(ctx context.Context, m Message, e *Event, f *Failure) error {
	b := s.bus
	ctx, cancel := context.WithTimeout(ctx, b.cfg.DrainTimeout)
	defer cancel()
	if b.rp == nil {
		return s.publishDeadLetterEvent(ctx, m, e, f)
	}
	var native map[string]string
	if hc, ok := m.(HeaderCarrier); ok {
		native = hc.Headers()
	}
	return b.rp.PublishRecord(ctx, s.dlq, Record{
		Key: m.Key(), Value: m.Value(), Headers: deadLetterHeaders(native, f), Time: time.Now(),
	})
}

// publishDeadLetterEvent writes a DeadLetter CloudEvent for adapters
// without headers.
func (s *distSub) publishDeadLetterEvent(ctx context.Context, m Message, e *Event, f *Failure) error {
	b := s.bus
	now := time.Now()
	dl := &Event{ID: b.ids.newID(now), Source: b.cfg.Source, Type: DeadLetterEventType, Time: now}
	if e != nil {
		dl.Key = e.Key
	}
	data, err := JSONSerializer{}.Marshal(DeadLetter{
		Error: f.Err.Error(), Attempts: f.Attempts, Topic: f.Topic, Group: f.Group, Value: m.Value(),
	})
	if err != nil {
		return err
	}
	env, err := appendEnvelope(nil, dl, JSONSerializer{}.ContentType(), data, true)
	if err != nil {
		return err
	}
	return b.ad.Publish(ctx, s.dlq, env)
}

// stop ends reading and makes workers exit after their current message;
// queued messages stay unacknowledged.
func (s *distSub) stop() {
	close(s.stopRead)
	<-s.readDone
	s.pool.stop()
}

// finish waits for the workers until deadline, cancels the handlers'
// context, ends the adapter subscription (messages not acknowledged are
// delivered again) and waits for the reader.
func (s *distSub) finish(deadline time.Time) error {
	var err error
	if !s.pool.wait(time.Until(deadline)) {
		s.cancel()
		if !s.pool.wait(s.bus.cfg.DrainTimeout) {
			err = fmt.Errorf("%w: subscription %s/%s: handlers still running", ErrDrainTimeout, s.topic, s.group)
			s.bus.log.Error("eventstream: handlers ignore cancellation", "topic", s.topic, "group", s.group)
		}
	}
	s.cancel()
	s.pool.leftovers() // not acknowledged: the broker delivers them again
	s.unsubscribe()
	return err
}

// Off implements Bus.
func (b *distributedBus) Off(sub Subscription) error {
	s, ok := sub.(*distSub)
	if !ok || s == nil || s.bus != b {
		return ErrUnknownSubscription
	}
	first := false
	s.off.Do(func() { first = true })
	if !first {
		return nil
	}
	b.mu.Lock()
	_, live := b.live[s]
	delete(b.live, s)
	b.mu.Unlock()
	if !live {
		return nil
	}
	defer b.subs.Add(-1)
	s.stop()
	return b.finishOff(s.pool.isWorker(), func() error { return s.finish(time.Now().Add(b.cfg.DrainTimeout)) })
}

// Close implements Bus.
func (b *distributedBus) Close() error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	subs := make([]*distSub, 0, len(b.live))
	for s := range b.live {
		subs = append(subs, s)
		s.off.Do(func() {})
	}
	clear(b.live)
	b.mu.Unlock()
	for _, s := range subs {
		s.stop()
	}
	deadline := time.Now().Add(b.cfg.DrainTimeout)
	var errs []error
	for _, s := range subs {
		if err := s.finish(deadline); err != nil {
			errs = append(errs, err)
		}
		b.subs.Add(-1)
	}
	b.bg.Wait()
	return errors.Join(errs...)
}
