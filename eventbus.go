package eventstream

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Bus is an event bus. Both implementations, memory and distributed, share
// this contract; all methods are safe for concurrent use, including from
// inside a handler.
type Bus interface {
	// On subscribes handler to topic and starts the subscription's worker
	// pool. Errors wrap ErrEmptyTopic, ErrNilHandler, ErrInvalidOption,
	// ErrNoConsumerGroup or ErrClosed, or come from the MQAdapter.
	On(topic string, handler Handler, opts ...SubscribeOption) (Subscription, error)
	// Off removes a subscription: delivery stops, handlers already running
	// get Config.DrainTimeout to finish before their context is cancelled,
	// and Off returns once every goroutine of the subscription has ended —
	// or, if a handler still runs DrainTimeout after its context was
	// cancelled, with an error wrapping ErrDrainTimeout, leaving that
	// handler's goroutine behind.
	// Events queued but not started are handed to another member of the
	// consumer group (memory mode), reported as failures with ErrUnsubscribed
	// when there is none, or left un-acknowledged for the broker to redeliver
	// (distributed mode). Off is idempotent and may be called from a handler
	// of the subscription itself (it then does not wait for that handler).
	Off(sub Subscription) error
	// Emit creates an event with payload and delivers it. It returns nil once
	// the event is queued for every consumer group of topic (memory mode: it
	// waits while a queue is full) or accepted by the broker (distributed
	// mode), and ctx.Err() if ctx ends first (in memory mode the groups it
	// was already queued for still handle it); an event is never dropped
	// silently. Emitting to a topic nobody subscribes to is not an error.
	Emit(ctx context.Context, topic string, payload any, opts ...EmitOption) error
	// Publish delivers a fully built event, like Emit. e.Topic is required;
	// an empty ID, Time, Source or Type is filled in. The caller must not
	// change e afterwards.
	Publish(ctx context.Context, e *Event) error
	// Stats returns a snapshot of the bus counters.
	Stats() Stats
	// Close stops the bus: Emit, Publish and On then fail with ErrClosed,
	// queued events are handled within Config.DrainTimeout (memory mode),
	// running handlers get the same time before their context is cancelled,
	// and every goroutine of the bus ends (handlers that ignore their
	// cancelled context for another DrainTimeout are reported with
	// ErrDrainTimeout and left behind, as with Off). Close is idempotent. It
	// does not close the MQAdapter.
	Close() error
}

// Subscription is a handle returned by On, for Off.
type Subscription interface {
	// Topic is the subscribed topic.
	Topic() string
	// Group is the consumer group; in memory mode a subscription without a
	// group reports a generated group name of its own.
	Group() string
}

// Stats is a snapshot of a bus's counters since New.
type Stats struct {
	// Emitted counts events accepted by Emit and Publish.
	Emitted uint64
	// Delivered counts handler calls that succeeded.
	Delivered uint64
	// Retried counts handler retries.
	Retried uint64
	// Failed counts events that could not be handled: retries exhausted,
	// permanent errors, undecodable messages, events orphaned by Off or
	// Close. Each one was logged and passed to Config.OnFailure.
	Failed uint64
	// DeadLettered counts failed events written to a dead-letter topic.
	DeadLettered uint64
	// InFlight is the number of handler calls running now.
	InFlight int64
	// Subscriptions is the number of live subscriptions.
	Subscriptions int64
}

// Failure describes an event that could not be handled.
type Failure struct {
	// Event is the event, or nil when the message could not be decoded.
	Event *Event
	// Raw is the original message bytes in distributed mode; nil in memory
	// mode.
	Raw []byte
	// Topic and Group identify the subscription that failed.
	Topic, Group string
	// Attempts is the number of handler calls made (0 when the handler was
	// never called).
	Attempts int
	// Err is the last error.
	Err error
}

// New builds the bus that cfg describes. It returns an error wrapping
// ErrInvalidConfig when cfg is unusable, for example a distributed config
// without Distributed.MQAdapter.
func New(cfg Config) (Bus, error) {
	c, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	core := &core{cfg: c, log: c.Logger, ids: newIDGen()}
	if c.Mode == ModeDistributed {
		return newDistributedBus(core), nil
	}
	return newMemoryBus(core), nil
}

// core is what both bus implementations share: config, counters, IDs and
// the handler runner.
type core struct {
	cfg     Config
	log     *slog.Logger
	ids     *idGen
	ser     Serializer                          // decodes (and in distributed mode encodes) payloads
	deliver func(context.Context, *Event) error // queues (memory) or publishes (distributed) an event
	closed  atomic.Bool
	bg      sync.WaitGroup // Off finishers started from inside handlers; Close waits for them

	// Counters written by emitters and counters written by handler
	// goroutines sit on separate cache lines, so that an emitter and a worker
	// on two cores do not contend for one line on every event.
	_                                        [64]byte
	emitted                                  atomic.Uint64
	_                                        [56]byte
	delivered, retried, failed, deadLettered atomic.Uint64
	inFlight, subs                           atomic.Int64
	_                                        [64]byte
}

// Emit implements Bus.
func (c *core) Emit(ctx context.Context, topic string, payload any, opts ...EmitOption) error {
	if c.closed.Load() {
		return ErrClosed
	}
	e, err := c.buildEvent(topic, payload, opts, c.ser)
	if err != nil {
		return err
	}
	return c.deliver(ctx, e)
}

// Publish implements Bus.
func (c *core) Publish(ctx context.Context, e *Event) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := c.fillEvent(e, c.ser); err != nil {
		return err
	}
	return c.deliver(ctx, e)
}

// finishOff runs finish, the part of Off that waits for the subscription's
// workers. Called from one of those workers' handlers (fromHandler), Off
// cannot wait for itself: finish then runs in the background once the
// handler returns, and Close waits for it.
func (c *core) finishOff(fromHandler bool, finish func() error) error {
	if !fromHandler {
		return finish()
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		_ = finish() // it logs what goes wrong
	}()
	return nil
}

// Stats implements Bus.
func (c *core) Stats() Stats {
	return Stats{
		Emitted:       c.emitted.Load(),
		Delivered:     c.delivered.Load(),
		Retried:       c.retried.Load(),
		Failed:        c.failed.Load(),
		DeadLettered:  c.deadLettered.Load(),
		InFlight:      c.inFlight.Load(),
		Subscriptions: c.subs.Load(),
	}
}

// buildEvent makes the event Emit delivers.
func (c *core) buildEvent(topic string, payload any, opts []EmitOption, ser Serializer) (*Event, error) {
	if topic == "" {
		return nil, ErrEmptyTopic
	}
	e := c.ids.newEvent(topic, c.ids.now())
	e.Source = c.cfg.Source
	e.Data = payload
	e.ser = ser
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil EmitOption", ErrInvalidOption)
		}
		o(e)
	}
	if e.Type == "" {
		e.Type = typeName(payload)
	}
	return e, nil
}

// fillEvent completes an event given to Publish.
func (c *core) fillEvent(e *Event, ser Serializer) error {
	if e == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidOption)
	}
	if e.Topic == "" {
		return ErrEmptyTopic
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.ID == "" {
		e.ID = c.ids.newID(e.Time)
	}
	if e.Source == "" {
		e.Source = c.cfg.Source
	}
	if e.Type == "" {
		e.Type = typeName(e.Data)
	}
	if e.ser == nil {
		e.ser = ser
	}
	return nil
}

func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	return reflect.TypeOf(v).String()
}

// stopped is the reason a handler run ended without success or failure:
// the subscription or bus was stopping.
type stopped struct{ err error }

func (s stopped) Error() string { return "eventstream: delivery stopped: " + s.err.Error() }
func (s stopped) Unwrap() error { return s.err }

// handle runs h for e with retries per p. It returns the number of attempts
// and nil on success, the last handler error when the event failed for good,
// or a stopped error when stop closed (or ctx ended) before the event was
// handled or failed for good.
func (c *core) handle(ctx context.Context, stop <-chan struct{}, h Handler, e *Event, p *RetryPolicy) (int, error) {
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	var timer *time.Timer
	for attempt := 1; ; attempt++ {
		err := call(ctx, h, e)
		if err == nil {
			c.delivered.Add(1)
			return attempt, nil
		}
		if ctx.Err() != nil {
			return attempt, stopped{fmt.Errorf("%w (last handler error: %w)", ctx.Err(), err)}
		}
		if attempt > p.MaxRetries || IsPermanent(err) {
			return attempt, err
		}
		c.retried.Add(1)
		if d := p.jittered(p.Delay(attempt)); d > 0 {
			if timer == nil {
				timer = time.NewTimer(d)
				defer timer.Stop()
			} else {
				timer.Reset(d)
			}
			select {
			case <-timer.C:
			case <-stop:
				return attempt, stopped{fmt.Errorf("%w (last handler error: %w)", ErrUnsubscribed, err)}
			case <-ctx.Done():
				return attempt, stopped{fmt.Errorf("%w (last handler error: %w)", ctx.Err(), err)}
			}
		}
	}
}

// call runs h, turning a panic into an error wrapping ErrPanic.
func call(ctx context.Context, h Handler, e *Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
		}
	}()
	return h(ctx, e)
}

// fail counts, logs and reports a failure.
func (c *core) fail(ctx context.Context, f *Failure) {
	c.failed.Add(1)
	id := ""
	if f.Event != nil {
		id = f.Event.ID
	}
	c.log.LogAttrs(ctx, slog.LevelError, "eventstream: event failed",
		slog.String("topic", f.Topic), slog.String("group", f.Group),
		slog.String("event_id", id), slog.Int("attempts", f.Attempts),
		slog.Any("error", f.Err))
	if c.cfg.OnFailure != nil {
		c.cfg.OnFailure(ctx, f)
	}
}
