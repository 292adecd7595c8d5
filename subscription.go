package eventstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstream-go/eventstream/internal/backoff"
)

// The subscription engine, the same for both modes:
//
//	On → transport.attach → (Emit or the adapter reader) → s.enqueue → pool
//	   → worker → s.process: handler with retries → settle:
//	        success            → transport.ack
//	        failed for good    → s.fail: OnFailure, dead letter, then ack
//	        stopped (Off/Close) → transport.requeue
//	Off/Close → s.stop (no more input) → s.finish (drain under a deadline,
//	        cancel, set aside what is queued → transport.requeue, release)

// delivery is one event on its way through a subscription: the event and,
// in distributed mode, the message it came from. It travels through the
// queues by value, so it is kept to two words plus an interface.
type delivery struct {
	ev  *Event  // nil when the message could not be decoded (msg is then an *undecodable) or is not decoded yet
	msg Message // nil in memory mode
}

// undecodable stands for a message that could not be decoded, with the
// reason. Its Message is nil when the adapter sent a nil message.
type undecodable struct {
	Message
	err error
}

// message returns the adapter's message of d, or nil.
func (d delivery) message() Message {
	if u, ok := d.msg.(*undecodable); ok {
		return u.Message
	}
	return d.msg
}

// decodeErr returns why d's message could not be decoded, or nil.
func (d delivery) decodeErr() error {
	if d.ev != nil {
		return nil
	}
	if u, ok := d.msg.(*undecodable); ok {
		return u.err
	}
	return nil
}

// subscription is one On call's subscription, in either mode.
type subscription struct {
	b            *bus
	topic, group string
	dlq          string
	cfg          SubscribeConfig
	retry        backoff.Policy
	h            Handler
	p            *pool

	ctx    context.Context // the handlers' base context; cancelled by finish
	cancel context.CancelFunc

	stopping chan struct{} // closed by stop: no more input, retry waits end
	stopOnce sync.Once
	drain    atomic.Bool // memory-mode Close: handle what is queued before the deadline

	// mu guards sending into the pool in memory mode: senders hold it for
	// reading, stop takes it for writing once, so that after stop nothing is
	// sent and the queues can be closed.
	mu     sync.RWMutex
	closed bool

	// distributed mode: what attach started.
	unsubscribe func()
	readDone    chan struct{}

	ended error         // set before the adapter-ended finish starts
	err   error         // the result of Off; valid once done is closed
	done  chan struct{} // closed when every goroutine of the subscription has ended
}

func (s *subscription) Topic() string { return s.topic }
func (s *subscription) Group() string { return s.group }

var subSeq atomic.Uint64 // names memory-mode subscriptions without a group; never reset, only unique

func newSubscription(b *bus, topic string, cfg SubscribeConfig, h Handler) *subscription {
	group := cfg.ConsumerGroup
	if group == "" {
		group = "_sub" + strconv.FormatUint(subSeq.Add(1), 10)
	}
	s := &subscription{
		b: b, topic: topic, group: group, cfg: cfg, h: h,
		retry:    cfg.RetryPolicy.backoff(),
		dlq:      cfg.DeadLetterTopic,
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.dlq == "" {
		s.dlq = DeadLetterTopicName(topic, group)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.p = newPool(s, cfg.Concurrency, cfg.BufferSize)
	return s
}

// abandon ends a subscription whose attach failed.
func (s *subscription) abandon() {
	s.p.start()
	s.stop(false)
	s.p.close()
	<-s.p.done
	s.cancel()
	close(s.done)
}

// enqueue queues d for the workers, waiting while the queue is full. It
// reports false when the subscription stopped accepting events.
func (s *subscription) enqueue(ctx context.Context, d delivery, key string, bkey []byte) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, nil
	}
	q := s.p.queue(key, bkey)
	select {
	case q <- d:
		return true, nil
	default:
	}
	select {
	case q <- d:
		return true, nil
	case <-s.stopping:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// stop ends the input of s: the transport stops feeding it, senders give up,
// retry waits end. With drain the workers still handle what is queued
// (memory-mode Close); otherwise queued deliveries are set aside for finish.
func (s *subscription) stop(drain bool) {
	s.stopOnce.Do(func() {
		s.drain.Store(drain)
		if !drain {
			s.p.setAside()
		}
		close(s.stopping)
		s.b.tr.detach(s)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.p.close()
	})
}

// finish waits for the workers of a stopped subscription: until deadline,
// then with their context cancelled and queued deliveries set aside for one
// more DrainTimeout. It then settles the leftovers with reason, releases the
// transport and records the result. A subscription whose handlers do not
// return finishes in the background when they do.
func (s *subscription) finish(deadline time.Time, reason error) {
	b := s.b
	if !s.p.waitUntil(deadline) {
		s.p.setAside()
		s.cancel()
		if !s.p.waitUntil(time.Now().Add(b.cfg.DrainTimeout)) {
			s.err = fmt.Errorf("%w: subscription %s/%s: handlers still running", ErrDrainTimeout, s.topic, s.group)
			b.log.Error("eventstream: handlers ignore cancellation", "topic", s.topic, "group", s.group)
			go s.settle(reason) // once the handlers return; the goroutine is left behind until then
			close(s.done)
			return
		}
	}
	s.settle(reason)
	if s.ended != nil && s.err == nil {
		s.err = s.ended
	}
	close(s.done)
}

// settle hands the leftovers of the stopped pool to the transport and
// releases it, once every worker has exited.
func (s *subscription) settle(reason error) {
	<-s.p.done
	s.cancel()
	if left := s.p.leftovers(); len(left) > 0 {
		s.b.tr.requeue(s, left, 0, reason)
	}
	s.b.tr.release(s)
}

// endedByAdapter is called by the reader when the adapter closed the
// subscription's channel on its own: the subscription is dead, so it is
// removed like Off would, logged, and Off reports it.
func (s *subscription) endedByAdapter() {
	b := s.b
	if !b.remove(s) {
		return // Off or Close is already stopping it
	}
	b.log.Error("eventstream: the adapter ended the subscription; it is removed", "topic", s.topic, "group", s.group)
	s.ended = fmt.Errorf("%w: %s/%s", ErrSubscriptionEnded, s.topic, s.group)
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		s.stop(false)
		s.finish(time.Now().Add(b.cfg.DrainTimeout), ErrUnsubscribed)
	}()
}

// stoppedErr is the reason a handler run ended without success or failure
// for good: the subscription was stopping.
type stoppedErr struct{ err error }

func (e stoppedErr) Error() string { return "eventstream: delivery stopped: " + e.err.Error() }
func (e stoppedErr) Unwrap() error { return e.err }

// processOne runs the handler for d with retries, starting at attempt (a
// worker replacing one whose handler called runtime.Goexit resumes after
// the attempt that exited, whose error is last), and settles d.
func (s *subscription) processOne(w *worker, d delivery, attempt int, last error) {
	if d.ev == nil && d.msg != nil && s.p.decode != nil {
		if _, bad := d.msg.(*undecodable); !bad {
			d = s.p.decode(d.msg) // queued undecoded by the reader
		}
	}
	if err := d.decodeErr(); err != nil {
		s.fail(s.ctx, d, 0, err)
		return
	}
	attempts, err := s.handle(w, d, attempt, last)
	actx := w.actx
	w.actx = nil
	if err == nil {
		s.b.tr.ack(s, d)
		return
	}
	if reason, ok := stoppedReason(err); ok {
		s.b.tr.requeue(s, []delivery{d}, attempts, reason)
		return
	}
	if actx == nil {
		actx = s.ctx
	}
	s.fail(actx, d, attempts, err)
}

// stoppedReason reports whether err is a stoppedErr and its reason. It is a
// function of its own so that the error path's allocation stays off the
// success path.
func stoppedReason(err error) (error, bool) {
	var st stoppedErr
	if errors.As(err, &st) {
		return st.err, true
	}
	return nil, false
}

// handle calls the handler for d until it succeeds, fails for good, or the
// subscription stops. It returns the number of attempts made and nil, the
// last handler error, or a stoppedErr.
func (s *subscription) handle(w *worker, d delivery, attempt int, last error) (int, error) {
	if attempt > 1 {
		if n, err, done := s.afterFailure(d, attempt-1, last); done {
			return n, err
		}
	}
	w.cur = d
	for ; ; attempt++ {
		w.attempt = attempt
		actx, err := s.invoke(d, attempt)
		w.actx = actx
		if err == nil {
			s.b.delivered.Add(1)
			return attempt, nil
		}
		if n, err, done := s.afterFailure(d, attempt, err); done {
			return n, err
		}
	}
}

// afterFailure decides what follows failed attempt number attempt: done with
// the error to report, or (done false) a retry after the policy's delay.
func (s *subscription) afterFailure(d delivery, attempt int, err error) (int, error, bool) {
	if s.ctx.Err() != nil {
		return attempt, stoppedErr{fmt.Errorf("%w (last handler error: %w)", s.ctx.Err(), err)}, true
	}
	if attempt > s.cfg.RetryPolicy.MaxRetries || IsPermanent(err) {
		return attempt, err, true
	}
	if !backoff.Sleep(s.ctx, s.stopping, s.retry.Jittered(attempt)) {
		reason := ErrUnsubscribed
		if s.b.closed.Load() {
			reason = ErrClosed
		}
		return attempt, stoppedErr{fmt.Errorf("%w (last handler error: %w)", reason, err)}, true
	}
	s.b.retried.Add(1)
	return 0, nil, false
}

// errGoexit is the outcome of a handler call that called runtime.Goexit (as
// t.Fatal does): it counts as a failed attempt, like a panic.
var errGoexit = fmt.Errorf("%w: handler called runtime.Goexit", ErrPanic)

// invoke runs one handler attempt inside the Observer's process hook,
// turning a panic into an error wrapping ErrPanic. It returns the context
// the handler ran with (holding the Observer's span, if any) so that what
// is logged about the attempt correlates with its trace. If the handler
// calls runtime.Goexit the deferred function still reports the attempt;
// the worker's own defer then replaces the goroutine.
func (s *subscription) invoke(d delivery, attempt int) (_ context.Context, err error) {
	b := s.b
	ctx := s.ctx
	var end func(error)
	if b.obs != nil {
		ctx, end = b.obs.StartProcess(ctx, s.processInfo(d, attempt), d.ev.carrier())
	}
	b.inFlight.Add(1)
	returned := false
	defer func() {
		if !returned {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
			} else {
				err = errGoexit
			}
			b.log.LogAttrs(ctx, slog.LevelWarn, "eventstream: handler did not return normally",
				slog.String("topic", s.topic), slog.String("group", s.group),
				slog.String("event_id", d.ev.ID), slog.Int("attempt", attempt), slog.Any("error", err))
		}
		b.inFlight.Add(-1)
		if end != nil {
			end(err)
		}
	}()
	err = callHandler(ctx, s.h, d.ev)
	returned = true
	return ctx, err
}

// callHandler is the one frame through which every handler runs; inHandler
// looks for it.
//
//go:noinline
func callHandler(ctx context.Context, h Handler, e *Event) error {
	return h(ctx, e)
}

var callHandlerPC = reflect.ValueOf(callHandler).Pointer()

// inHandler reports whether the caller runs inside a handler call of any
// bus. Off and Close use it so that they never wait for their own caller;
// it reads the program counters of the call stack (no goroutine IDs) and
// costs about a microsecond, on Off and Close only.
func inHandler() bool {
	var pcs [64]uintptr
	for skip := 3; ; skip += len(pcs) {
		n := runtime.Callers(skip, pcs[:])
		frames := runtime.CallersFrames(pcs[:n])
		for {
			f, more := frames.Next()
			if f.Entry == callHandlerPC {
				return true
			}
			if !more {
				break
			}
		}
		if n < len(pcs) {
			return false
		}
	}
}

func (s *subscription) processInfo(d delivery, attempt int) ProcessInfo {
	info := ProcessInfo{System: s.b.system, Topic: s.topic, Group: s.group, Event: d.ev, Attempt: attempt}
	if p, ok := d.message().(Positioned); ok {
		info.Partition, info.Offset, info.HasOffset = p.Partition(), p.Offset(), true
	}
	return info
}

// fail reports a delivery that failed for good, writes its dead letter and,
// once that succeeded, acknowledges it. A failed dead-letter write is logged
// and retried with backoff until it succeeds or the subscription stops; the
// delivery is never acknowledged before, so in distributed mode the broker
// delivers it again. actx is the context of the last handler attempt: the
// failure log records and Config.OnFailure get it, so that they carry the
// attempt's span.
func (s *subscription) fail(actx context.Context, d delivery, attempts int, err error) {
	b := s.b
	f := &Failure{Event: d.ev, Topic: s.topic, Group: s.group, Attempts: attempts, Err: err}
	m := d.message()
	if m != nil {
		f.Raw = m.Value()
	}
	logCtx := context.WithoutCancel(actx)
	b.fail(logCtx, f)
	ctx := context.WithoutCancel(s.ctx)
	if d.ev == nil && m == nil {
		return // nothing to dead-letter (an adapter sent a nil message)
	}
	for try := 1; ; try++ {
		derr := s.writeDeadLetter(ctx, d, f)
		if derr == nil {
			b.deadLettered.Add(1)
			b.tr.ack(s, d)
			return
		}
		b.log.LogAttrs(logCtx, slog.LevelError, "eventstream: dead-letter write failed; the event stays unacknowledged and the write is retried",
			slog.String("topic", s.topic), slog.String("group", s.group), slog.String("dead_letter_topic", s.dlq),
			slog.Int("try", try), slog.Any("error", derr))
		if !backoff.Sleep(ctx, s.stopping, deadLetterBackoff.Jittered(try)) {
			return
		}
	}
}

// deadLetterBackoff paces dead-letter write retries: exponential from 100ms
// to 30s, with jitter.
var deadLetterBackoff = backoff.Policy{Initial: 100 * time.Millisecond, Max: 30 * time.Second, Exponential: true, Jitter: 0.2}

// writeDeadLetter writes one dead letter inside the Observer's publish hook.
func (s *subscription) writeDeadLetter(ctx context.Context, d delivery, f *Failure) error {
	ctx, cancel := context.WithTimeout(ctx, s.b.cfg.DrainTimeout)
	defer cancel()
	if s.b.obs == nil {
		return s.b.tr.deadLetter(ctx, s, s.dlq, d, f)
	}
	info := PublishInfo{System: s.b.system, Topic: s.dlq, Event: d.ev, DeadLetter: f}
	if d.ev != nil && d.ev.trace != nil {
		info.Origin = d.ev.trace
	}
	c := &fields{}
	ctx, end := s.b.obs.StartPublish(ctx, info, c)
	ctx = context.WithValue(ctx, dlTraceKey{}, c)
	err := s.b.tr.deadLetter(ctx, s, s.dlq, d, f)
	end(err)
	return err
}

// dlTraceKey carries the propagation fields of a dead-letter write from
// writeDeadLetter to the transport.
type dlTraceKey struct{}

func dlTrace(ctx context.Context) *fields {
	f, _ := ctx.Value(dlTraceKey{}).(*fields)
	if f != nil && len(f.kv) == 0 {
		return nil
	}
	return f
}
