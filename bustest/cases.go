package bustest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

type testCase struct {
	name string
	run  func(h *harness)
}

var cases = []testCase{
	{"KeyOrder", keyOrder},
	{"Retries", retries},
	{"PermanentNotRetried", permanentNotRetried},
	{"PanicIsAFailedAttempt", panicIsAFailedAttempt},
	{"DeadLetterShape", deadLetterShape},
	{"Stats", stats},
	{"OffDrainsInFlight", offDrainsInFlight},
	{"OffCancelsAfterDrainTimeout", offCancelsAfterDrainTimeout},
	{"ConcurrentOffWaits", concurrentOffWaits},
	{"OffFromHandler", offFromHandler},
	{"CloseFromHandler", closeFromHandler},
	{"CloseDeadline", closeDeadline},
	{"ZeroDelayRetriesStopOnOff", zeroDelayRetriesStopOnOff},
	{"GoexitIsAFailedAttempt", goexitIsAFailedAttempt},
	{"OnFailurePanicContained", onFailurePanicContained},
	{"CancelledEmitRefused", cancelledEmitRefused},
	{"NilHandler", nilHandler},
	{"BadOptions", badOptions},
	{"RetryPolicyCopied", retryPolicyCopied},
	{"GarbageOnTheWire", garbageOnTheWire},
}

// keyOrder: with Concurrency 4, events of one key reach the handler in emit
// order.
func keyOrder(h *harness) {
	b := h.bus(nil)
	topic := h.name("t")
	const keys, per = 4, 25
	seen := testutil.NewCollector[string]()
	last := make([]atomic.Int64, keys)
	problems := testutil.NewProblems()
	h.on(b, topic, h.name("g"), func(_ context.Context, e *eventstream.Event) error {
		var n [2]int
		if err := e.Unmarshal(&n); err != nil {
			problems.Addf("Unmarshal: %v", err)
			return nil
		}
		if prev := last[n[0]].Swap(int64(n[1])); prev >= int64(n[1]) {
			problems.Addf("key %d: event %d after %d", n[0], n[1], prev)
		}
		seen.Add(e.Key)
		return nil
	}, eventstream.WithConcurrency(4))
	for i := 1; i <= per; i++ {
		for k := range keys {
			h.emit(b, topic, [2]int{k, i}, eventstream.WithKey("k"+strconv.Itoa(k)))
		}
	}
	seen.Wait(h.t, keys*per, h.o.timeout, "events")
	problems.Check(h.t)
}

// retries: a handler failing twice is called three times and the event is
// delivered; Stats count two retries.
func retries(h *harness) {
	b := h.bus(nil)
	topic := h.name("t")
	var calls atomic.Int64
	done := make(chan struct{})
	h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		close(done)
		return nil
	}, eventstream.WithRetryPolicy(fast(5)))
	h.emit(b, topic, 1)
	testutil.Done(h.t, done, h.o.timeout, "third call")
	h.eventually(func() bool { return b.Stats().Delivered == 1 }, func() string { return fmt.Sprintf("%+v", b.Stats()) })
	if st := b.Stats(); st.Retried != 2 || st.Failed != 0 || calls.Load() != 3 {
		h.t.Fatalf("after 2 failures and a success: %d calls, %+v", calls.Load(), st)
	}
}

// permanentNotRetried: a Permanent error is not retried and the failure is
// reported once with the attempt count.
func permanentNotRetried(h *harness) {
	failures := testutil.NewCollector[*eventstream.Failure]()
	b := h.bus(func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures.Add(f) }
	})
	topic, group := h.name("t"), h.name("g")
	var calls atomic.Int64
	h.on(b, topic, group, func(context.Context, *eventstream.Event) error {
		calls.Add(1)
		return eventstream.Permanent(errors.New("bad order"))
	}, eventstream.WithRetryPolicy(fast(5)))
	h.emit(b, topic, 1)
	f := failures.Wait(h.t, 1, h.o.timeout, "failures")[0]
	if calls.Load() != 1 || f.Attempts != 1 || f.Topic != topic || f.Group != group || f.Event == nil || !eventstream.IsPermanent(f.Err) {
		h.t.Fatalf("permanent error: %d calls, failure %+v", calls.Load(), f)
	}
}

// panicIsAFailedAttempt: a panic is recovered, retried like an error, and
// reported with ErrPanic after the last attempt.
func panicIsAFailedAttempt(h *harness) {
	failures := testutil.NewCollector[*eventstream.Failure]()
	b := h.bus(func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures.Add(f) }
	})
	topic := h.name("t")
	var calls atomic.Int64
	h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		calls.Add(1)
		panic("boom")
	}, eventstream.WithRetryPolicy(fast(2)))
	h.emit(b, topic, 1)
	f := failures.Wait(h.t, 1, h.o.timeout, "failures")[0]
	if !errors.Is(f.Err, eventstream.ErrPanic) || f.Attempts != 3 || calls.Load() != 3 {
		h.t.Fatalf("panicking handler: %d calls, failure %+v", calls.Load(), f)
	}
}

// deadLetterShape: the dead letter is the original event plus the four
// dead-letter headers, and Stats count it.
func deadLetterShape(h *harness) {
	b := h.bus(nil)
	topic, group := h.name("t"), h.name("g")
	dead := make(chan *eventstream.Event, 1)
	h.on(b, eventstream.DeadLetterTopicName(topic, group), h.name("ops"), func(_ context.Context, e *eventstream.Event) error {
		dead <- e
		return nil
	})
	ids := make(chan string, 1)
	h.on(b, topic, group, func(_ context.Context, e *eventstream.Event) error {
		ids <- e.ID
		return eventstream.Permanent(errors.New("rejected"))
	})
	h.emit(b, topic, map[string]int{"n": 7}, eventstream.WithKey("k7"), eventstream.WithType("order.created"), eventstream.WithHeader("trace", "abc"))
	id := testutil.Recv(h.t, ids, h.o.timeout, "handler call")
	d := testutil.Recv(h.t, dead, h.o.timeout, "dead letter")
	var payload map[string]int
	if err := d.Unmarshal(&payload); err != nil {
		h.t.Fatalf("dead letter Unmarshal: %v", err)
	}
	hd := d.Headers
	if d.ID != id || d.Type != "order.created" || d.Key != "k7" || payload["n"] != 7 || hd["trace"] != "abc" ||
		hd[eventstream.HeaderDeadLetterTopic] != topic || hd[eventstream.HeaderDeadLetterGroup] != group ||
		hd[eventstream.HeaderDeadLetterAttempts] != "1" || hd[eventstream.HeaderDeadLetterError] != "rejected" {
		h.t.Fatalf("dead letter of event %s: %+v (payload %v)", id, d, payload)
	}
	h.eventually(func() bool { return b.Stats().DeadLettered == 1 }, func() string { return fmt.Sprintf("%+v", b.Stats()) })
}

// stats: the counters mean the same in both modes.
func stats(h *harness) {
	b := h.bus(nil)
	topic := h.name("t")
	var calls atomic.Int64
	h.on(b, topic, h.name("g"), func(_ context.Context, e *eventstream.Event) error {
		if calls.Add(1) == 1 {
			return errors.New("first call fails")
		}
		return nil
	}, eventstream.WithRetryPolicy(fast(1)))
	for i := range 3 {
		h.emit(b, topic, i)
	}
	h.eventually(func() bool { return b.Stats().Delivered == 3 }, func() string { return fmt.Sprintf("%+v", b.Stats()) })
	want := eventstream.Stats{Emitted: 3, Delivered: 3, Retried: 1, Subscriptions: 1}
	if st := b.Stats(); st != want {
		h.t.Fatalf("Stats = %+v, want %+v", st, want)
	}
	if err := b.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	if st := b.Stats(); st.Subscriptions != 0 || st.InFlight != 0 {
		h.t.Fatalf("after Close: %+v", st)
	}
}

// offDrainsInFlight: Off waits for a running handler, which finishes with
// its context not cancelled.
func offDrainsInFlight(h *harness) {
	b := h.bus(func(c *eventstream.Config) { c.DrainTimeout = h.o.timeout })
	topic := h.name("t")
	started, release := make(chan struct{}), make(chan struct{})
	var finished, cancelled atomic.Bool
	sub := h.on(b, topic, h.name("g"), func(ctx context.Context, _ *eventstream.Event) error {
		close(started)
		<-release
		cancelled.Store(ctx.Err() != nil)
		finished.Store(true)
		return nil
	})
	h.emit(b, topic, 1)
	testutil.Done(h.t, started, h.o.timeout, "handler start")
	offDone := make(chan error, 1)
	go func() { offDone <- b.Off(sub) }()
	select {
	case err := <-offDone:
		h.t.Fatalf("Off returned %v while the handler was running", err)
	case <-time.After(20 * time.Millisecond): // Off must still be waiting; a wrong early return shows here
	}
	close(release)
	if err := testutil.Recv(h.t, offDone, h.o.timeout, "Off"); err != nil {
		h.t.Fatalf("Off: %v", err)
	}
	if !finished.Load() || cancelled.Load() {
		h.t.Fatalf("Off returned with handler finished=%v cancelled=%v", finished.Load(), cancelled.Load())
	}
}

// offCancelsAfterDrainTimeout: a handler that waits on its context is
// cancelled after DrainTimeout and Off returns nil.
func offCancelsAfterDrainTimeout(h *harness) {
	b := h.bus(nil)
	topic := h.name("t")
	started := make(chan struct{})
	sub := h.on(b, topic, h.name("g"), func(ctx context.Context, _ *eventstream.Event) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	h.emit(b, topic, 1)
	testutil.Done(h.t, started, h.o.timeout, "handler start")
	var err error
	took := testutil.Within(h.t, h.o.timeout, "Off", func() { err = b.Off(sub) })
	if err != nil || took < h.o.drain {
		h.t.Fatalf("Off took %v (DrainTimeout %v) and returned %v; want nil after the drain timeout", took, h.o.drain, err)
	}
}

// concurrentOffWaits: every concurrent Off returns only once the
// subscription has drained.
func concurrentOffWaits(h *harness) {
	b := h.bus(func(c *eventstream.Config) { c.DrainTimeout = h.o.timeout })
	topic := h.name("t")
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	sub := h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	h.emit(b, topic, 1)
	testutil.Done(h.t, started, h.o.timeout, "handler start")
	early := make(chan bool, 2)
	for range 2 {
		go func() {
			_ = b.Off(sub)
			early <- !finished.Load()
		}()
	}
	select {
	case <-early:
		h.t.Fatal("an Off returned while the handler was still running")
	case <-time.After(20 * time.Millisecond): // both must still be waiting
	}
	close(release)
	for range 2 {
		if testutil.Recv(h.t, early, h.o.timeout, "Off") {
			h.t.Fatal("an Off returned before the handler finished")
		}
	}
}

// offFromHandler: Off called by the subscription's own handler returns at
// once, stops delivery and the subscription is gone from Stats.
func offFromHandler(h *harness) {
	b := h.bus(func(c *eventstream.Config) { c.DrainTimeout = h.o.timeout })
	topic := h.name("t")
	var sub eventstream.Subscription
	ready := make(chan struct{})
	offErr := make(chan error, 1)
	var calls atomic.Int64
	sub = h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		<-ready
		if calls.Add(1) == 1 {
			start := time.Now()
			err := b.Off(sub)
			if d := time.Since(start); d > h.o.timeout/2 {
				err = fmt.Errorf("off from the handler took %v", d)
			}
			offErr <- err
		}
		return nil
	})
	close(ready)
	h.emit(b, topic, 1)
	if err := testutil.Recv(h.t, offErr, h.o.timeout, "Off from the handler"); err != nil {
		h.t.Fatal(err)
	}
	h.eventually(func() bool { return b.Stats().Subscriptions == 0 }, func() string { return fmt.Sprintf("%+v", b.Stats()) })
	if err := b.Close(); err != nil { // waits for the background finish
		h.t.Fatalf("Close: %v", err)
	}
	if calls.Load() != 1 {
		h.t.Fatalf("handler called %d times", calls.Load())
	}
}

// closeFromHandler: Close called from a handler returns promptly with nil,
// and a later Close returns nil once everything ended.
func closeFromHandler(h *harness) {
	b := h.bus(func(c *eventstream.Config) { c.DrainTimeout = h.o.timeout })
	topic := h.name("t")
	closeErr := make(chan error, 1)
	h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		start := time.Now()
		err := b.Close()
		if d := time.Since(start); d > h.o.timeout/2 {
			err = fmt.Errorf("close from the handler took %v", d)
		}
		closeErr <- err
		return nil
	})
	h.emit(b, topic, 1)
	if err := testutil.Recv(h.t, closeErr, h.o.timeout, "Close from the handler"); err != nil {
		h.t.Fatal(err)
	}
	var err error
	took := testutil.Within(h.t, h.o.timeout, "second Close", func() { err = b.Close() })
	if err != nil || took > h.o.timeout/2 {
		h.t.Fatalf("second Close took %v and returned %v", took, err)
	}
	if !errors.Is(b.Emit(context.Background(), topic, 2), eventstream.ErrClosed) {
		h.t.Fatal("Emit after Close from a handler was accepted")
	}
}

// closeDeadline: Close with five subscriptions whose handlers wait for
// their context and then ignore the cancellation for DrainTimeout/2 takes
// about 1.5×DrainTimeout (at most about 2×), not a DrainTimeout or more per
// subscription, and reports nothing (they all returned within the second
// DrainTimeout).
func closeDeadline(h *harness) {
	b := h.bus(nil)
	const n = 5
	started := testutil.NewCollector[int]()
	for i := range n {
		topic := h.name("t" + strconv.Itoa(i))
		h.on(b, topic, h.name("g"+strconv.Itoa(i)), func(ctx context.Context, _ *eventstream.Event) error {
			started.Add(i)
			<-ctx.Done()
			<-time.After(h.o.drain / 2) // ignores the cancellation for a while
			return nil
		})
		h.emit(b, topic, i)
	}
	started.Wait(h.t, n, h.o.timeout, "handler starts")
	var err error
	took := testutil.Within(h.t, h.o.timeout, "Close", func() { err = b.Close() })
	if err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	// Their handlers return at 1.5×DrainTimeout; the bound is 2×DrainTimeout
	// plus one DrainTimeout of slack for loaded machines, far below the
	// per-subscription deadlines this catches (8.5×DrainTimeout for five).
	if limit := 3 * h.o.drain; took > limit {
		h.t.Fatalf("Close with %d stubborn handlers took %v; want at most about 2×DrainTimeout (%v)", n, took, limit)
	}
}

// zeroDelayRetriesStopOnOff: a failing handler under a retry policy without
// delay does not keep Off waiting.
func zeroDelayRetriesStopOnOff(h *harness) {
	b := h.bus(func(c *eventstream.Config) { c.DrainTimeout = h.o.timeout })
	topic := h.name("t")
	var calls atomic.Int64
	sub := h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		calls.Add(1)
		return errors.New("down")
	}, eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: 1 << 30}))
	h.emit(b, topic, 1)
	h.eventually(func() bool { return calls.Load() > 100 }, func() string { return "retries not spinning" })
	var err error
	took := testutil.Within(h.t, h.o.timeout, "Off", func() { err = b.Off(sub) })
	if err != nil || took > h.o.timeout/4 {
		h.t.Fatalf("Off took %v (DrainTimeout %v) and returned %v; want it to stop the retry loop at once", took, h.o.timeout, err)
	}
}

// goexitIsAFailedAttempt: a handler calling runtime.Goexit (as t.Fatal
// does) counts as a failed attempt; the worker goes on and no later event
// is lost (Concurrency 1, BufferSize 4).
func goexitIsAFailedAttempt(h *harness) {
	failures := testutil.NewCollector[*eventstream.Failure]()
	b := h.bus(func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures.Add(f) }
	})
	topic := h.name("t")
	handled := testutil.NewCollector[int]()
	var calls atomic.Int64
	h.on(b, topic, h.name("g"), func(_ context.Context, e *eventstream.Event) error {
		if calls.Add(1) == 1 {
			runtime.Goexit()
		}
		var n int
		_ = e.Unmarshal(&n)
		handled.Add(n)
		return nil
	}, eventstream.WithRetryPolicy(fast(0)), eventstream.WithBufferSize(4))
	for i := range 10 {
		h.emit(b, topic, i)
	}
	handled.Wait(h.t, 9, h.o.timeout, "events after the Goexit")
	f := failures.Wait(h.t, 1, h.o.timeout, "failures")[0]
	if !errors.Is(f.Err, eventstream.ErrPanic) || f.Attempts != 1 {
		h.t.Fatalf("Goexit failure: %+v", f)
	}
	// The last handler has returned its event to the test before the bus
	// counted it as done: wait for the counters.
	h.eventually(func() bool {
		st := b.Stats()
		return st.Subscriptions == 1 && st.InFlight == 0
	}, func() string { return fmt.Sprintf("after a Goexit: %+v", b.Stats()) })
}

// onFailurePanicContained: a panicking OnFailure does not crash the process
// and the subscription goes on.
func onFailurePanicContained(h *harness) {
	b := h.bus(func(c *eventstream.Config) {
		c.OnFailure = func(context.Context, *eventstream.Failure) { panic("OnFailure bug") }
	})
	topic := h.name("t")
	ok := make(chan struct{}, 1)
	var calls atomic.Int64
	h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error {
		if calls.Add(1) == 1 {
			return eventstream.Permanent(errors.New("first fails"))
		}
		ok <- struct{}{}
		return nil
	})
	h.emit(b, topic, 1)
	h.emit(b, topic, 2)
	testutil.Recv(h.t, ok, h.o.timeout, "second event")
	h.eventually(func() bool { return b.Stats().Failed == 1 }, func() string { return fmt.Sprintf("%+v", b.Stats()) })
}

// cancelledEmitRefused: Emit with a done ctx is refused in both modes.
func cancelledEmitRefused(h *harness) {
	b := h.bus(nil)
	topic := h.name("t")
	h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Emit(ctx, topic, 1); !errors.Is(err, context.Canceled) {
		h.t.Fatalf("Emit with a cancelled ctx = %v, want context.Canceled", err)
	}
	if st := b.Stats(); st.Emitted != 0 {
		h.t.Fatalf("refused Emit counted: %+v", st)
	}
}

// nilHandler: On rejects a nil handler.
func nilHandler(h *harness) {
	b := h.bus(nil)
	if _, err := b.On(h.name("t"), nil, eventstream.WithConsumerGroup(h.name("g"))); !errors.Is(err, eventstream.ErrNilHandler) {
		h.t.Fatalf("On(nil handler) = %v, want ErrNilHandler", err)
	}
}

// badOptions: On rejects bad option values, including values beyond the
// documented limits, with ErrInvalidOption.
func badOptions(h *harness) {
	b := h.bus(nil)
	noop := func(context.Context, *eventstream.Event) error { return nil }
	for name, opt := range map[string]eventstream.SubscribeOption{
		"concurrency 0":         eventstream.WithConcurrency(0),
		"concurrency over max":  eventstream.WithConcurrency(eventstream.MaxConcurrency + 1),
		"buffer 0":              eventstream.WithBufferSize(0),
		"buffer over max":       eventstream.WithBufferSize(eventstream.MaxBufferSize + 1),
		"nil retry policy":      eventstream.WithRetryPolicy(nil),
		"negative retries":      eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: -1}),
		"nil option":            nil,
		"buffer not over conc.": func(s *eventstream.SubscribeConfig) { s.Concurrency, s.BufferSize = 8, 8 },
	} {
		if _, err := b.On(h.name("t"), noop, eventstream.WithConsumerGroup(h.name("g")), opt); !errors.Is(err, eventstream.ErrInvalidOption) {
			h.t.Errorf("%s: On = %v, want ErrInvalidOption", name, err)
		}
	}
	if err := b.Emit(context.Background(), h.name("t"), 1, eventstream.WithHeader("Bad-Name", "x")); !errors.Is(err, eventstream.ErrInvalidOption) {
		h.t.Errorf("Emit with a bad header name = %v, want ErrInvalidOption", err)
	}
	if st := b.Stats(); st.Subscriptions != 0 {
		h.t.Errorf("rejected On calls left subscriptions: %+v", st)
	}
}

// retryPolicyCopied: changing a RetryPolicy after On has no effect.
func retryPolicyCopied(h *harness) {
	failures := testutil.NewCollector[*eventstream.Failure]()
	p := fast(1)
	b := h.bus(func(c *eventstream.Config) {
		c.Subscribe.RetryPolicy = p
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures.Add(f) }
	})
	topic := h.name("t")
	h.on(b, topic, h.name("g"), func(context.Context, *eventstream.Event) error { return errors.New("down") })
	p.MaxRetries = 50
	h.emit(b, topic, 1)
	if f := failures.Wait(h.t, 1, h.o.timeout, "failures")[0]; f.Attempts != 2 {
		h.t.Fatalf("attempts %d after changing the policy; want the 2 of the policy given to New", f.Attempts)
	}
}

// garbageOnTheWire: bytes that are a broken envelope are reported with
// ErrDecode without calling the handler, dead-lettered (the original record
// plus the dead-letter headers where the adapter publishes records, an
// eventstream.deadletter event otherwise), and do not stop the subscription.
func garbageOnTheWire(h *harness) {
	if !h.distributed() {
		h.t.Skip("memory mode has no wire")
	}
	failures := testutil.NewCollector[*eventstream.Failure]()
	b := h.bus(func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures.Add(f) }
	})
	topic, group := h.name("t"), h.name("g")
	dlq := eventstream.DeadLetterTopicName(topic, group)
	_, records := h.ad.(eventstream.RecordPublisher)
	dead := make(chan *eventstream.Event, 1)
	var raw <-chan eventstream.Message
	if records {
		// The dead letter is the original record plus the dead-letter
		// headers; read it with the adapter, since the bus cannot decode it
		// either.
		msgs, stop, err := h.ad.Subscribe(context.Background(), dlq, h.name("inspect"))
		if err != nil {
			h.t.Fatalf("Subscribe to the dead-letter topic: %v", err)
		}
		defer stop()
		raw = msgs
	} else {
		h.on(b, dlq, h.name("ops"), func(_ context.Context, e *eventstream.Event) error {
			dead <- e
			return nil
		})
	}
	good := make(chan int, 1)
	h.on(b, topic, group, func(_ context.Context, e *eventstream.Event) error {
		var n int
		if err := e.Unmarshal(&n); err != nil {
			return err
		}
		good <- n
		return nil
	})
	garbage := []byte(`{"specversion":"1.0","id":"x"`) // truncated envelope: invalid JSON is a bare payload the JSON Serializer rejects
	ctx, cancel := context.WithTimeout(context.Background(), h.o.timeout)
	defer cancel()
	if err := h.ad.Publish(ctx, topic, garbage); err != nil {
		h.t.Fatalf("Publish: %v", err)
	}
	h.emit(b, topic, 42)
	if n := testutil.Recv(h.t, good, h.o.timeout, "the good event"); n != 42 {
		h.t.Fatalf("handler got %d", n)
	}
	f := failures.Wait(h.t, 1, h.o.timeout, "failures")[0]
	if !errors.Is(f.Err, eventstream.ErrDecode) || f.Event != nil || string(f.Raw) != string(garbage) || f.Attempts != 0 {
		h.t.Fatalf("garbage failure: %+v", f)
	}
	if records {
		m := testutil.Recv(h.t, raw, h.o.timeout, "dead-letter record")
		if string(m.Value()) != string(garbage) {
			h.t.Fatalf("dead-letter record %q, want the original bytes %q", m.Value(), garbage)
		}
		if hc, ok := m.(eventstream.HeaderCarrier); ok && hc.Headers()[eventstream.HeaderDeadLetterTopic] != topic {
			h.t.Fatalf("dead-letter record headers %v", hc.Headers())
		}
		return
	}
	d := testutil.Recv(h.t, dead, h.o.timeout, "dead letter")
	data, _ := d.Data.([]byte)
	if d.Type != eventstream.DeadLetterEventType || string(data) != string(garbage) || d.Headers[eventstream.HeaderDeadLetterTopic] != topic {
		h.t.Fatalf("garbage dead letter: %+v", d)
	}
}
