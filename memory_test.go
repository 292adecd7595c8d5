package eventstream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/eventstream-go/eventstream"
)

// collector records the event IDs each subscription receives.
type collector struct {
	mu   sync.Mutex
	seen map[string][]int
	n    atomic.Int64
	all  chan struct{}
	want int64
}

func newCollector(want int) *collector {
	return &collector{seen: map[string][]int{}, all: make(chan struct{}), want: int64(want)}
}

func (c *collector) handler(name string) eventstream.Handler {
	return func(_ context.Context, e *eventstream.Event) error {
		var n int
		if err := e.Unmarshal(&n); err != nil {
			return err
		}
		c.mu.Lock()
		c.seen[name] = append(c.seen[name], n)
		c.mu.Unlock()
		if c.n.Add(1) == c.want {
			close(c.all)
		}
		return nil
	}
}

func (c *collector) wait(t *testing.T) {
	t.Helper()
	select {
	case <-c.all:
	case <-time.After(10 * time.Second):
		t.Fatalf("received %d of %d events", c.n.Load(), c.want)
	}
}

func TestMemoryConsumerGroups(t *testing.T) {
	bus := newMemoryBus(t, nil)
	const events = 200
	// Group a has two competing members, group b one, plus one subscription
	// without a group: 3 receivers of every event.
	c := newCollector(3 * events)
	for _, s := range []struct{ name, group string }{{"a1", "a"}, {"a2", "a"}, {"b", "b"}, {"solo", ""}} {
		_, err := bus.On("orders", c.handler(s.name), eventstream.WithConsumerGroup(s.group), eventstream.WithConcurrency(3))
		require.NoError(t, err)
	}
	for i := range events {
		require.NoError(t, bus.Emit(context.Background(), "orders", i))
	}
	c.wait(t)
	count := func(names ...string) map[int]int {
		m := map[int]int{}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, n := range names {
			for _, v := range c.seen[n] {
				m[v]++
			}
		}
		return m
	}
	for _, g := range [][]string{{"a1", "a2"}, {"b"}, {"solo"}} {
		got := count(g...)
		require.Len(t, got, events, "group %v", g)
		for v, k := range got {
			require.Equal(t, 1, k, "group %v got event %d %d times", g, v, k)
		}
	}
	assert.NotEmpty(t, c.seen["a1"], "competing members share the work")
	assert.NotEmpty(t, c.seen["a2"], "competing members share the work")
	require.NoError(t, bus.Close()) // the last handler calls have returned
	st := bus.Stats()
	assert.Equal(t, uint64(events), st.Emitted)
	assert.Equal(t, uint64(3*events), st.Delivered)
}

func TestMemoryEmitBackpressure(t *testing.T) {
	bus := newMemoryBus(t, nil)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var handled atomic.Int64
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		handled.Add(1)
		return nil
	}, eventstream.WithBufferSize(2))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, bus.Emit(ctx, "t", 0))
	<-started // the worker holds event 0; the queue has room for 2 more
	require.NoError(t, bus.Emit(ctx, "t", 1))
	require.NoError(t, bus.Emit(ctx, "t", 2))
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err = bus.Emit(short, "t", 3)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a full queue makes Emit wait, not drop")
	done := make(chan error)
	go func() { done <- bus.Emit(ctx, "t", 4) }()
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, bus.Close())
	assert.Equal(t, int64(4), handled.Load(), "events 0,1,2,4 handled; 3 was refused to its caller")
}

func TestMemoryOrder(t *testing.T) {
	t.Run("concurrency 1 keeps emit order", func(t *testing.T) {
		bus := newMemoryBus(t, nil)
		c := newCollector(500)
		_, err := bus.On("t", c.handler("s"))
		require.NoError(t, err)
		for i := range 500 {
			opt := eventstream.WithKey("")
			if i%3 == 0 {
				opt = eventstream.WithKey("k")
			}
			require.NoError(t, bus.Emit(context.Background(), "t", i, opt))
		}
		c.wait(t)
		for i, v := range c.seen["s"] {
			require.Equal(t, i, v)
		}
	})
	t.Run("same key keeps order at concurrency 8", func(t *testing.T) {
		bus := newMemoryBus(t, nil)
		const keys, per = 16, 100
		c := newCollector(keys * per)
		var mu sync.Mutex
		last := map[string]int{}
		var bad atomic.Int64
		_, err := bus.On("t", func(ctx context.Context, e *eventstream.Event) error {
			var n int
			if err := e.Unmarshal(&n); err != nil {
				return eventstream.Permanent(err) // reported as a failure; never FailNow on a handler goroutine
			}
			mu.Lock()
			if prev, ok := last[e.Key]; ok && n <= prev {
				bad.Add(1)
			}
			last[e.Key] = n
			mu.Unlock()
			return c.handler("s")(ctx, e)
		}, eventstream.WithConcurrency(8))
		require.NoError(t, err)
		for i := range per {
			for k := range keys {
				require.NoError(t, bus.Emit(context.Background(), "t", i, eventstream.WithKey(fmt.Sprint("key", k))))
			}
		}
		c.wait(t)
		assert.Zero(t, bad.Load(), "events of one key handled out of order")
	})
}

func TestMemoryRetryAndFailure(t *testing.T) {
	var failures []*eventstream.Failure
	var fmu sync.Mutex
	failed := make(chan struct{}, 10)
	bus := newMemoryBus(t, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) {
			fmu.Lock()
			failures = append(failures, f)
			fmu.Unlock()
			failed <- struct{}{}
		}
	})
	var calls atomic.Int64
	succeeded := make(chan struct{})
	_, err := bus.On("flaky", func(context.Context, *eventstream.Event) error {
		if calls.Add(1) < 3 {
			return errors.New("not yet")
		}
		close(succeeded)
		return nil
	}, eventstream.WithRetryPolicy(fastRetry(5)))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "flaky", 1))
	recv(t, succeeded)
	assert.Equal(t, int64(3), calls.Load())

	dead := make(chan *eventstream.Event, 1)
	_, err = bus.On("dlq", func(_ context.Context, e *eventstream.Event) error { dead <- e; return nil })
	require.NoError(t, err)
	var permCalls, panicCalls atomic.Int64
	_, err = bus.On("perm", func(context.Context, *eventstream.Event) error {
		permCalls.Add(1)
		return eventstream.Permanent(errors.New("bad order"))
	}, eventstream.WithRetryPolicy(fastRetry(5)), eventstream.WithDeadLetterTopic("dlq"))
	require.NoError(t, err)
	_, err = bus.On("panics", func(context.Context, *eventstream.Event) error {
		panicCalls.Add(1)
		panic("boom")
	}, eventstream.WithRetryPolicy(fastRetry(2)), eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)

	require.NoError(t, bus.Emit(context.Background(), "perm", 7, eventstream.WithKey("k7")))
	recv(t, failed)
	d := recv(t, dead)
	assert.Equal(t, "int", d.Type, "the dead letter is the original event")
	assert.Equal(t, 7, d.Data)
	assert.Equal(t, "perm", d.Headers[eventstream.HeaderDeadLetterTopic])
	assert.Equal(t, "1", d.Headers[eventstream.HeaderDeadLetterAttempts], "permanent errors are not retried")
	assert.Equal(t, "k7", d.Key)
	assert.Equal(t, int64(1), permCalls.Load())

	require.NoError(t, bus.Emit(context.Background(), "panics", 8))
	recv(t, failed)
	assert.Equal(t, int64(3), panicCalls.Load(), "a panic is retried like an error")
	fmu.Lock()
	last := failures[len(failures)-1]
	fmu.Unlock()
	assert.ErrorIs(t, last.Err, eventstream.ErrPanic)
	assert.Contains(t, last.Err.Error(), "boom")
	assert.Equal(t, "g", last.Group)
	assert.Equal(t, 3, last.Attempts)
	require.NoError(t, bus.Close())
	st := bus.Stats()
	assert.Equal(t, uint64(2), st.Failed)
	assert.Equal(t, uint64(2), st.DeadLettered, "both failures have a dead-letter topic (by default DeadLetterTopicName)")
	assert.Equal(t, uint64(2+2), st.Retried)
}

func TestMemoryOff(t *testing.T) {
	t.Run("idempotent and stops delivery", func(t *testing.T) {
		bus := newMemoryBus(t, nil)
		c := newCollector(1)
		sub, err := bus.On("t", c.handler("s"))
		require.NoError(t, err)
		require.NoError(t, bus.Emit(context.Background(), "t", 1))
		c.wait(t)
		require.NoError(t, bus.Off(sub))
		require.NoError(t, bus.Off(sub))
		require.NoError(t, bus.Emit(context.Background(), "t", 2))
		assert.Equal(t, int64(1), c.n.Load())
		assert.Equal(t, int64(0), bus.Stats().Subscriptions)
		require.ErrorIs(t, bus.Off(nil), eventstream.ErrUnknownSubscription)
	})
	t.Run("from inside the handler", func(t *testing.T) {
		bus := newMemoryBus(t, nil)
		var sub eventstream.Subscription
		ready := make(chan struct{})
		returned := make(chan error, 1)
		var err error
		sub, err = bus.On("t", func(context.Context, *eventstream.Event) error {
			<-ready
			returned <- bus.Off(sub)
			return nil
		})
		require.NoError(t, err)
		close(ready)
		require.NoError(t, bus.Emit(context.Background(), "t", 1))
		require.NoError(t, <-returned)
	})
	t.Run("in-flight handler finishes; cancelled after drain timeout", func(t *testing.T) {
		bus := newMemoryBus(t, func(c *eventstream.Config) { c.DrainTimeout = 50 * time.Millisecond })
		inside := make(chan struct{})
		cancelled := make(chan struct{})
		sub, err := bus.On("t", func(ctx context.Context, _ *eventstream.Event) error {
			close(inside)
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		})
		require.NoError(t, err)
		require.NoError(t, bus.Emit(context.Background(), "t", 1))
		recv(t, inside)
		require.NoError(t, bus.Off(sub))
		recv(t, cancelled)
	})
	t.Run("queued events move to the rest of the group", func(t *testing.T) {
		bus := newMemoryBus(t, nil)
		release := make(chan struct{})
		var first, second atomic.Int64
		got := make(chan struct{}, 100)
		s1, err := bus.On("t", func(context.Context, *eventstream.Event) error {
			<-release
			first.Add(1)
			got <- struct{}{}
			return nil
		}, eventstream.WithConsumerGroup("g"))
		require.NoError(t, err)
		_, err = bus.On("t", func(context.Context, *eventstream.Event) error {
			second.Add(1)
			got <- struct{}{}
			return nil
		}, eventstream.WithConsumerGroup("g"))
		require.NoError(t, err)
		for i := range 20 {
			require.NoError(t, bus.Emit(context.Background(), "t", i))
		}
		offDone := make(chan error)
		go func() { offDone <- bus.Off(s1) }()
		close(release)
		require.NoError(t, <-offDone)
		for range 20 {
			recv(t, got)
		}
		assert.Equal(t, int64(20), first.Load()+second.Load())
		assert.Zero(t, bus.Stats().Failed)
	})
}

func TestMemoryClose(t *testing.T) {
	bus := newMemoryBus(t, nil)
	var handled atomic.Int64
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		handled.Add(1)
		return nil
	}, eventstream.WithConcurrency(2))
	require.NoError(t, err)
	for i := range 1000 {
		require.NoError(t, bus.Emit(context.Background(), "t", i))
	}
	require.NoError(t, bus.Close())
	assert.Equal(t, int64(1000), handled.Load(), "Close handles queued events")
	require.NoError(t, bus.Close())
	require.ErrorIs(t, bus.Emit(context.Background(), "t", 1), eventstream.ErrClosed)
	_, err = bus.On("t", func(context.Context, *eventstream.Event) error { return nil })
	require.ErrorIs(t, err, eventstream.ErrClosed)
}

func TestBadInput(t *testing.T) {
	bus := newMemoryBus(t, nil)
	h := func(context.Context, *eventstream.Event) error { return nil }
	cases := []struct {
		name string
		err  error
		call func() error
	}{
		{"nil handler", eventstream.ErrNilHandler, func() error { _, err := bus.On("t", nil); return err }},
		{"empty topic", eventstream.ErrEmptyTopic, func() error { _, err := bus.On("", h); return err }},
		{"zero concurrency", eventstream.ErrInvalidOption, func() error { _, err := bus.On("t", h, eventstream.WithConcurrency(0)); return err }},
		{"negative buffer", eventstream.ErrInvalidOption, func() error { _, err := bus.On("t", h, eventstream.WithBufferSize(-1)); return err }},
		{"nil policy", eventstream.ErrInvalidOption, func() error { _, err := bus.On("t", h, eventstream.WithRetryPolicy(nil)); return err }},
		{"bad policy", eventstream.ErrInvalidRetryPolicy, func() error {
			_, err := bus.On("t", h, eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: -1}))
			return err
		}},
		{"nil option", eventstream.ErrInvalidOption, func() error { _, err := bus.On("t", h, nil); return err }},
		{"emit empty topic", eventstream.ErrEmptyTopic, func() error { return bus.Emit(context.Background(), "", 1) }},
		{"publish nil", eventstream.ErrInvalidOption, func() error { return bus.Publish(context.Background(), nil) }},
		{"distributed without adapter", eventstream.ErrInvalidConfig, func() error {
			_, err := eventstream.New(eventstream.DefaultDistributedConfig())
			return err
		}},
		{"negative drain timeout", eventstream.ErrInvalidConfig, func() error {
			cfg := eventstream.DefaultConfig()
			cfg.DrainTimeout = -1
			_, err := eventstream.New(cfg)
			return err
		}},
		{"bad default concurrency", eventstream.ErrInvalidConfig, func() error {
			cfg := eventstream.DefaultConfig()
			cfg.Subscribe.Concurrency = -3
			_, err := eventstream.New(cfg)
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			require.ErrorIs(t, err, c.err)
		})
	}
}

type point struct{ X, Y int }

func TestUnmarshalMemory(t *testing.T) {
	bus := newMemoryBus(t, nil)
	events := make(chan *eventstream.Event, 4)
	_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error { events <- e; return nil })
	require.NoError(t, err)
	p := &point{1, 2}
	require.NoError(t, bus.Emit(context.Background(), "t", p))
	e := recv(t, events)
	assert.Same(t, p, e.Data, "memory mode hands over the payload itself")
	var byValue point
	require.NoError(t, e.Unmarshal(&byValue))
	assert.Equal(t, *p, byValue)
	var byPtr *point
	require.NoError(t, e.Unmarshal(&byPtr))
	assert.Same(t, p, byPtr)

	require.NoError(t, bus.Emit(context.Background(), "t", map[string]int{"X": 3, "Y": 4}))
	e = recv(t, events)
	var converted point
	require.NoError(t, e.Unmarshal(&converted), "a map payload goes through the Serializer")
	assert.Equal(t, point{3, 4}, converted)
	var wrong []int
	require.ErrorIs(t, e.Unmarshal(&wrong), eventstream.ErrDecode)
	require.ErrorIs(t, e.Unmarshal(nil), eventstream.ErrDecode)
	assert.NotEmpty(t, e.ID)
	assert.Equal(t, "map[string]int", e.Type)
	assert.Equal(t, "eventstream", e.Source)
}

func TestEventIDsAreTimeOrderedAndUnique(t *testing.T) {
	bus := newMemoryBus(t, nil)
	ids := make(chan string, 1000)
	_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error {
		ms, err := strconv.ParseInt(strings.ReplaceAll(e.ID[:13], "-", ""), 16, 64)
		if err != nil || ms != e.Time.UnixMilli() {
			return fmt.Errorf("ID %s does not start with the event time %v", e.ID, e.Time)
		}
		ids <- e.ID
		return nil
	})
	require.NoError(t, err)
	for i := range 1000 {
		require.NoError(t, bus.Emit(context.Background(), "t", i))
	}
	prev := ""
	seen := map[string]bool{}
	for range 1000 {
		id := recv(t, ids)
		require.Len(t, id, 36)
		require.Equal(t, byte('7'), id[14], "UUID version 7: %s", id)
		require.Contains(t, "89ab", string(id[19]), "RFC 9562 variant: %s", id)
		require.False(t, seen[id])
		seen[id] = true
		require.Greater(t, id, prev)
		prev = id
	}
}

func TestTyped(t *testing.T) {
	bus := newMemoryBus(t, nil)
	got := make(chan point, 1)
	_, err := bus.On("t", eventstream.Typed(func(_ context.Context, _ *eventstream.Event, p point) error {
		got <- p
		return nil
	}))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", point{5, 6}))
	assert.Equal(t, point{5, 6}, <-got)
	_, err = bus.On("t", eventstream.Typed[point](nil))
	require.ErrorIs(t, err, eventstream.ErrNilHandler)
}

func TestRetryWaitEndsOnOffAndClose(t *testing.T) {
	slow := &eventstream.RetryPolicy{MaxRetries: 5, BackoffStrategy: eventstream.BackoffFixed, InitialDelay: time.Hour}
	t.Run("memory Off", func(t *testing.T) {
		failed := make(chan *eventstream.Failure, 1)
		bus := newMemoryBus(t, func(c *eventstream.Config) {
			c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failed <- f }
		})
		tried := make(chan struct{}, 1)
		sub, err := bus.On("t", func(context.Context, *eventstream.Event) error {
			tried <- struct{}{}
			return errors.New("down")
		}, eventstream.WithRetryPolicy(slow))
		require.NoError(t, err)
		require.NoError(t, bus.Emit(context.Background(), "t", 1))
		recv(t, tried)
		require.NoError(t, bus.Off(sub)) // returns without waiting an hour
		f := recv(t, failed)
		require.ErrorIs(t, f.Err, eventstream.ErrUnsubscribed, "the event is reported, not dropped")
		assert.Equal(t, 1, f.Attempts)
	})
	t.Run("distributed Close", func(t *testing.T) {
		sp := &spy{MQAdapter: newAdapter(t)}
		bus := newDistBus(t, sp, nil)
		tried := make(chan struct{}, 1)
		_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
			tried <- struct{}{}
			return errors.New("down")
		}, eventstream.WithRetryPolicy(slow), eventstream.WithConsumerGroup("g"))
		require.NoError(t, err)
		require.NoError(t, bus.Emit(context.Background(), "t", 1))
		recv(t, tried)
		require.NoError(t, bus.Close())
		assert.Zero(t, sp.ackCount(), "a message given up while waiting to retry stays unacknowledged")
		assert.Zero(t, bus.Stats().DeadLettered)
	})
}

func TestMemoryOffReportsQueuedEventsWithNoGroupLeft(t *testing.T) {
	var mu sync.Mutex
	var reasons []error
	bus := newMemoryBus(t, func(c *eventstream.Config) {
		c.DrainTimeout = 50 * time.Millisecond
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) {
			mu.Lock()
			reasons = append(reasons, f.Err)
			mu.Unlock()
		}
	})
	inside := make(chan struct{})
	sub, err := bus.On("t", func(ctx context.Context, e *eventstream.Event) error {
		var n int
		if err := e.Unmarshal(&n); err != nil {
			return eventstream.Permanent(err) // reported as a failure; never FailNow on a handler goroutine
		}
		if n == 0 {
			close(inside)
			<-ctx.Done() // held until Off cancels it after the drain timeout
		}
		return nil
	}, eventstream.WithConsumerGroup("only"))
	require.NoError(t, err)
	for i := range 6 {
		require.NoError(t, bus.Emit(context.Background(), "t", i))
	}
	recv(t, inside)
	require.NoError(t, bus.Off(sub))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reasons, 5, "the five queued events are reported, not dropped silently")
	for _, r := range reasons {
		require.ErrorIs(t, r, eventstream.ErrUnsubscribed)
	}
	assert.Equal(t, uint64(5), bus.Stats().Failed)
}

func TestOffReportsHandlersThatIgnoreCancellation(t *testing.T) {
	bus := newMemoryBus(t, func(c *eventstream.Config) { c.DrainTimeout = 20 * time.Millisecond })
	inside := make(chan struct{})
	release := make(chan struct{})
	sub, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		close(inside)
		<-release // ignores its context
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", 1))
	recv(t, inside)
	err = bus.Off(sub)
	require.ErrorIs(t, err, eventstream.ErrDrainTimeout, "Off returns instead of hanging, and says why")
	close(release)
	require.Eventually(t, func() bool { return bus.Stats().InFlight == 0 }, 10*time.Second, time.Millisecond)
}
