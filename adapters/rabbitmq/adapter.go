package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Adapter is an eventstream.MQAdapter backed by RabbitMQ (AMQP 0-9-1). It
// also implements eventstream.RecordPublisher, and the messages it delivers
// implement eventstream.HeaderCarrier.
//
// All methods are safe for concurrent use. Create one with NewAdapter and
// release it with Close.
type Adapter struct {
	cfg Config
	log *slog.Logger

	pubConn *connector // publishing and declarations
	subConn *connector // consumers

	sem chan struct{} // MaxPending publish slots

	pmu sync.Mutex
	pc  *pubChannel

	rr atomic.Uint64 // round-robin partition of unkeyed records

	slotMu sync.Mutex
	slots  map[slotKey]bool // member slots held by this adapter's subscriptions

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
	once   sync.Once
	wg     sync.WaitGroup // subscriptions
	late   sync.WaitGroup // settling publishes whose caller gave up (goLate)
}

var (
	_ eventstream.MQAdapter       = (*Adapter)(nil)
	_ eventstream.RecordPublisher = (*Adapter)(nil)
)

// NewAdapter validates cfg and returns an Adapter. It does not contact the
// broker: the connections are dialed on first use, and connection problems
// surface from Publish, Subscribe and DeclareGroup (which wait for the
// broker, bounded by their context). Invalid configuration is reported with
// an error wrapping eventstream.ErrInvalidConfig.
func NewAdapter(cfg Config) (*Adapter, error) {
	c, uri, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Adapter{
		cfg:   c,
		log:   c.Logger,
		sem:   make(chan struct{}, c.MaxPending),
		subs:  make(map[*subscription]struct{}),
		slots: make(map[slotKey]bool),
	}
	a.pubConn = newConnector("publish", &a.cfg, uri, true, a.declareConfigured)
	a.subConn = newConnector("consume", &a.cfg, uri, false, nil)
	return a, nil
}

// MessagingSystem returns "rabbitmq", the OpenTelemetry messaging.system
// value of this adapter.
func (a *Adapter) MessagingSystem() string { return "rabbitmq" }

// Close ends every subscription (closing its channel after its goroutines
// returned; unacknowledged messages go back to their queues), fails
// publishes that are still waiting with an error wrapping
// eventstream.ErrAdapterClosed, and closes the connections. It is idempotent
// and returns nil.
func (a *Adapter) Close() error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		subs := make([]*subscription, 0, len(a.subs))
		for s := range a.subs {
			subs = append(subs, s)
		}
		a.mu.Unlock()
		for _, s := range subs {
			s.stop()
		}
		a.wg.Wait()
		a.subConn.close()
		a.pubConn.close()
		a.late.Wait() // the closed connection confirmed everything (negatively)
	})
	return nil
}

func (a *Adapter) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// Publish publishes message on topic (without a key) and returns nil once the
// broker confirmed it; see PublishRecord.
func (a *Adapter) Publish(ctx context.Context, topic string, message []byte) error {
	return a.PublishRecord(ctx, topic, eventstream.Record{Value: message})
}

// PublishRecord publishes r to the exchange of topic as a persistent,
// mandatory message and returns nil only once the broker confirmed it
// (publisher confirms; concurrent calls are pipelined on one channel). The
// key travels in the "es-key" header (and selects the partition in
// partitioned mode), the time in "es-time" (nanoseconds) and the AMQP
// timestamp property (seconds); headers travel as string headers, except
// a non-empty "content-type", which travels as the AMQP content-type
// property (when it fits its 255 bytes).
//
// Errors: ErrUnroutable when no group queue is bound (the message was not
// stored), ErrNacked on a broker nack, ErrReservedHeader for invalid header
// names, eventstream.ErrEmptyTopic or ErrInvalidName for unusable names, the
// context's error when ctx ends first (while disconnected, Publish waits
// for the reconnect), and eventstream.ErrAdapterClosed after Close. When the
// connection is lost before the confirm arrives the message is published
// again, so it may be stored twice (at-least-once).
func (a *Adapter) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	if a.isClosed() {
		return fmt.Errorf("rabbitmq: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	if err := checkExchangeName(topic); err != nil {
		return fmt.Errorf("rabbitmq: publish: %w", err)
	}
	headers := make(amqp.Table, len(r.Headers)+2)
	contentType := ""
	for k, v := range r.Headers {
		if k == "" || len(k) > 128 || len(k) >= len(reservedPrefix) && k[:len(reservedPrefix)] == reservedPrefix {
			return fmt.Errorf("rabbitmq: publish to %q: %w %q", topic, ErrReservedHeader, k)
		}
		if k == contentTypeHeader && v != "" && len(v) <= 255 {
			contentType = v // the AMQP property, which the broker does not parse as a table entry
			continue
		}
		headers[k] = v
	}
	ts := r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	headers[timeHeader] = ts.UnixNano()
	if r.Key != nil {
		headers[keyHeader] = r.Key
	}
	key := ""
	if n := a.cfg.Partitions; n > 1 {
		var p uint64
		if r.Key != nil {
			h := fnv.New32a()
			_, _ = h.Write(r.Key)
			p = uint64(h.Sum32()) % uint64(n)
		} else {
			p = a.rr.Add(1) % uint64(n)
		}
		key = strconv.FormatUint(p, 10)
	}
	msg := amqp.Publishing{
		Headers:      headers,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		Timestamp:    ts,
		Body:         r.Value,
	}

	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("rabbitmq: publish to %q: %w", topic, ctx.Err())
	}
	// The slot is held until the publish is settled, also when the caller
	// gives up waiting for its confirm (then the goroutine settling it frees
	// the slot): MaxPending bounds the outstanding publishes, and so the
	// returns the library may queue.
	held := true
	defer func() {
		if held {
			<-a.sem
		}
	}()

	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := sleepCtx(ctx, backoff(&a.cfg, attempt-1)); err != nil {
				return fmt.Errorf("rabbitmq: publish to %q: %w", topic, err)
			}
		}
		pc, err := a.pubChannel(ctx)
		if err != nil {
			return fmt.Errorf("rabbitmq: publish to %q: %w", topic, err)
		}
		ex, err := a.declareExchange(ctx, pc, topic)
		if err != nil {
			if errors.Is(err, errChannelLost) {
				continue
			}
			return fmt.Errorf("rabbitmq: publish to %q: %w", topic, err)
		}
		p, err := pc.publish(ctx, ex, key, msg)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("rabbitmq: publish to %q: %w", topic, ctx.Err())
			}
			if a.isClosed() {
				return fmt.Errorf("rabbitmq: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
			}
			a.log.Debug("rabbitmq: publish failed, retrying", "topic", topic, "error", err)
			continue
		}
		res, err := pc.wait(ctx, p)
		if err != nil {
			// Settled in the background once its confirm comes, so that its
			// return is charged to it and not to another publish; that frees
			// the slot.
			held = false
			a.goLate(func() {
				defer func() { <-a.sem }()
				pc.settleLate(p)
			}, func() { <-a.sem })
			return fmt.Errorf("rabbitmq: publish to %q: waiting for the confirm: %w", topic, err)
		}
		switch res {
		case resAcked:
			return nil
		case resNacked:
			return fmt.Errorf("rabbitmq: publish to %q: %w", topic, ErrNacked)
		case resReturned:
			if n := a.cfg.Partitions; n > 1 {
				return fmt.Errorf("rabbitmq: publish to %q (partition %s of %d): %w", topic, key, n, ErrUnroutable)
			}
			return fmt.Errorf("rabbitmq: publish to %q: %w", topic, ErrUnroutable)
		default: // lost: publish again
			if a.isClosed() {
				return fmt.Errorf("rabbitmq: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
			}
			a.log.Debug("rabbitmq: channel lost before the confirm, publishing again", "topic", topic)
		}
	}
}

// goLate runs f in a goroutine that Close waits for, unless the adapter is
// closed (then the connection and every outstanding publish go with it, and
// instead runs at once).
func (a *Adapter) goLate(f, instead func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.closed {
		a.late.Go(f)
		return
	}
	instead()
}

// pubChannel returns the current confirm channel, opening one (waiting for
// the connection, bounded by ctx) when there is none.
func (a *Adapter) pubChannel(ctx context.Context) (*pubChannel, error) {
	for {
		a.pmu.Lock()
		pc := a.pc
		a.pmu.Unlock()
		if pc != nil && !pc.isDead() {
			return pc, nil
		}
		conn, gen, err := a.pubConn.get(ctx)
		if err != nil {
			return nil, err
		}
		a.pmu.Lock()
		if a.pc != pc { // another caller replaced it meanwhile
			a.pmu.Unlock()
			continue
		}
		npc, err := openPubChannel(conn, gen, a.cfg.MaxPending)
		if err != nil {
			a.pmu.Unlock()
			if conn.IsClosed() {
				continue
			}
			return nil, fmt.Errorf("open channel: %w", err)
		}
		a.pc = npc
		a.pmu.Unlock()
		return npc, nil
	}
}

// declareExchange declares topic's exchange once per connection and
// returns its name.
func (a *Adapter) declareExchange(ctx context.Context, pc *pubChannel, topic string) (string, error) {
	if ex, ok := pc.known.Load(topic); ok {
		return ex.(string), nil
	}
	pc.dmu.Lock()
	defer pc.dmu.Unlock()
	if ex, ok := pc.known.Load(topic); ok {
		return ex.(string), nil
	}
	conn, gen, err := a.pubConn.get(ctx)
	if err != nil {
		return "", err
	}
	if gen != pc.gen {
		return "", errChannelLost
	}
	if err := withChannel(conn, func(ch *amqp.Channel) error { return a.declareExchangeOn(ch, topic) }); err != nil {
		if conn.IsClosed() {
			return "", errChannelLost
		}
		return "", err
	}
	ex := exchangePrefix + topic
	pc.known.Store(topic, ex)
	return ex, nil
}

// withChannel runs fn on a new channel of conn and closes it.
func withChannel(conn *amqp.Connection, fn func(ch *amqp.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	err = fn(ch)
	if cerr := ch.Close(); err == nil && cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
		err = cerr
	}
	return err
}

func (a *Adapter) exchangeKind() string {
	if a.cfg.Partitions > 1 {
		return amqp.ExchangeDirect
	}
	return amqp.ExchangeFanout
}

func (a *Adapter) declareExchangeOn(ch *amqp.Channel, topic string) error {
	ex, err := exchangeName(topic)
	if err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(ex, a.exchangeKind(), true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", ex, err)
	}
	return nil
}

// queues returns the queue names of group on topic and their binding keys.
func (a *Adapter) queues(topic, group string) (names, keys []string, err error) {
	if n := a.cfg.Partitions; n > 1 {
		for i := range n {
			q, err := queueName(topic, group, i)
			if err != nil {
				return nil, nil, err
			}
			names = append(names, q)
			keys = append(keys, strconv.Itoa(i))
		}
		return names, keys, nil
	}
	q, err := queueName(topic, group, -1)
	if err != nil {
		return nil, nil, err
	}
	return []string{q}, []string{""}, nil
}

// declareGroupOn declares topic's exchange and group's queues and bindings.
func (a *Adapter) declareGroupOn(ch *amqp.Channel, topic, group string) error {
	names, keys, err := a.queues(topic, group)
	if err != nil {
		return err
	}
	if err := a.declareExchangeOn(ch, topic); err != nil {
		return err
	}
	ex, _ := exchangeName(topic)
	for i, q := range names {
		args := amqp.Table{amqp.QueueTypeArg: string(a.cfg.QueueType)}
		if len(names) > 1 {
			args[amqp.SingleActiveConsumerArg] = true
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
			return fmt.Errorf("declare queue %q: %w", q, err)
		}
		if err := ch.QueueBind(q, keys[i], ex, false, nil); err != nil {
			return fmt.Errorf("bind queue %q to exchange %q: %w", q, ex, err)
		}
	}
	return nil
}

// declareConfigured declares Config.Groups on a new publishing connection.
func (a *Adapter) declareConfigured(_ context.Context, conn *amqp.Connection) error {
	if len(a.cfg.Groups) == 0 {
		return nil
	}
	return withChannel(conn, func(ch *amqp.Channel) error {
		for topic, groups := range a.cfg.Groups {
			for _, g := range groups {
				if err := a.declareGroupOn(ch, topic, g); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// DeclareGroup declares the durable queue (in partitioned mode, the queues)
// of group on topic and binds it to the topic's exchange, so that from then
// on the group keeps every message published to topic, whether or not a
// member is subscribed. It waits for the connection, bounded by ctx. It is
// idempotent; a queue that exists with other arguments (another queue type,
// say) is an error.
func (a *Adapter) DeclareGroup(ctx context.Context, topic, group string) error {
	if a.isClosed() {
		return fmt.Errorf("rabbitmq: declare group %q: %w", group, eventstream.ErrAdapterClosed)
	}
	if _, _, err := a.queues(topic, group); err != nil {
		return fmt.Errorf("rabbitmq: declare group: %w", err)
	}
	for {
		conn, _, err := a.pubConn.get(ctx)
		if err != nil {
			return fmt.Errorf("rabbitmq: declare group %q on %q: %w", group, topic, err)
		}
		err = withChannel(conn, func(ch *amqp.Channel) error { return a.declareGroupOn(ch, topic, group) })
		if err != nil && conn.IsClosed() && ctx.Err() == nil {
			continue // connection lost meanwhile: try on the next one
		}
		if err != nil {
			return fmt.Errorf("rabbitmq: declare group %q on %q: %w", group, topic, err)
		}
		return nil
	}
}

// Ack acknowledges msg, a message this adapter delivered to groupID. The
// acknowledgement is sent on the channel that received the message, at most
// once, by that channel's acker right after Ack returns, coalesced with the
// others recorded meanwhile into one basic.ack multiple (see the package
// documentation): acknowledging a message twice does nothing the second time, and an
// Ack for a message whose channel is gone (its subscription ended or the
// connection was lost, so the broker requeued it) is dropped and returns
// nil; such a message is delivered again. It returns an error wrapping
// ErrForeignMessage for messages of another adapter or group.
func (a *Adapter) Ack(_ context.Context, groupID string, msg eventstream.Message) error {
	m, ok := msg.(*Message)
	if !ok || m == nil || m.a != a {
		return fmt.Errorf("rabbitmq: ack: %w (%T)", ErrForeignMessage, msg)
	}
	if m.group != groupID {
		return fmt.Errorf("rabbitmq: ack for group %q of a message delivered to group %q: %w", groupID, m.group, ErrForeignMessage)
	}
	if !m.acked.CompareAndSwap(false, true) {
		return nil
	}
	if m.gen.dead.Load() {
		m.gen.drop()
		a.log.Debug("rabbitmq: ack dropped: its channel is gone, the message will be redelivered", "topic", m.topic, "group", m.group)
		return nil
	}
	m.gen.ack(m.tag)
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
