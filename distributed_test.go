package eventstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/serializer/protobuf"
)

// newAdapter returns an in-process broker closed at the end of the test.
func newAdapter(t testing.TB) *memory.Adapter {
	t.Helper()
	a, err := memory.New(memory.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// newDistBus returns a distributed bus over ad, closed at the end of the test
// (before ad, since cleanups run last-in first-out).
func newDistBus(t testing.TB, ad eventstream.MQAdapter, change func(*eventstream.Config)) eventstream.Bus {
	t.Helper()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = ad
	cfg.Logger = quiet
	if change != nil {
		change(&cfg)
	}
	bus, err := eventstream.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

// spy wraps an adapter to record acks and published bytes, optionally
// failing publishes to a topic. Like any wrapper that embeds the
// MQAdapter interface it hides the RecordPublisher capability.
type spy struct {
	eventstream.MQAdapter
	mu        sync.Mutex
	acks      []eventstream.Message
	published map[string][][]byte
	failTopic string
	failures  int // publishes to failTopic that fail; negative: all
}

func (s *spy) Publish(ctx context.Context, topic string, msg []byte) error {
	s.mu.Lock()
	fail := topic == s.failTopic && s.failures != 0
	if fail {
		s.failures--
	}
	if s.published == nil {
		s.published = map[string][][]byte{}
	}
	s.published[topic] = append(s.published[topic], msg)
	s.mu.Unlock()
	if fail {
		return errors.New("injected publish failure")
	}
	return s.MQAdapter.Publish(ctx, topic, msg)
}

func (s *spy) Ack(ctx context.Context, group string, m eventstream.Message) error {
	s.mu.Lock()
	s.acks = append(s.acks, m)
	s.mu.Unlock()
	return s.MQAdapter.Ack(ctx, group, m)
}

func (s *spy) ackCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acks)
}

func (s *spy) last(topic string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.published[topic]
	if len(p) == 0 {
		return nil
	}
	return p[len(p)-1]
}

type order struct {
	ID    int       `json:"id"`
	Items []string  `json:"items"`
	At    time.Time `json:"at"`
}

func TestDistributedRoundTrip(t *testing.T) {
	bus := newDistBus(t, newAdapter(t), nil)
	got := make(chan *eventstream.Event, 1)
	sub, err := bus.On("orders", func(_ context.Context, e *eventstream.Event) error {
		got <- e
		return nil
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	want := order{ID: 7, Items: []string{"a", "b"}, At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	require.NoError(t, bus.Emit(context.Background(), "orders", want,
		eventstream.WithKey("order-7"), eventstream.WithHeader("traceid", "abc"), eventstream.WithType("order.created")))
	e := recv(t, got)
	var o order
	require.NoError(t, e.Unmarshal(&o))
	assert.Equal(t, want, o)
	assert.Equal(t, "orders", e.Topic)
	assert.Equal(t, "order-7", e.Key)
	assert.Equal(t, "order.created", e.Type)
	assert.Equal(t, "eventstream", e.Source)
	assert.Equal(t, "abc", e.Headers["traceid"])
	assert.Equal(t, "application/json", e.ContentType)
	assert.Len(t, e.ID, 36)
	assert.WithinDuration(t, time.Now(), e.Time, time.Minute)
	require.NoError(t, bus.Off(sub))
}

func TestEnvelopeIsCloudEvent(t *testing.T) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, nil)
	require.NoError(t, bus.Emit(context.Background(), "t", map[string]int{"n": 1},
		eventstream.WithKey("k"), eventstream.WithHeader("tenant", "x")))
	ch, cancel, err := ad.Subscribe(context.Background(), "t", "reader")
	require.NoError(t, err)
	defer cancel()
	m := recv(t, ch)
	var ce cloudevents.Event
	require.NoError(t, json.Unmarshal(m.Value(), &ce), "%s", m.Value())
	require.NoError(t, ce.Validate())
	assert.Equal(t, "1.0", ce.SpecVersion())
	assert.Equal(t, "application/json", ce.DataContentType())
	assert.Equal(t, "k", ce.Extensions()["partitionkey"])
	assert.Equal(t, "x", ce.Extensions()["tenant"])
	assert.JSONEq(t, `{"n":1}`, string(ce.Data()))
	assert.Equal(t, map[string]string{"content-type": eventstream.CloudEventsContentType, "tenant": "x"},
		m.(eventstream.HeaderCarrier).Headers(), "headers also travel as broker headers")
	assert.Equal(t, []byte("k"), m.Key())

	err = bus.Emit(context.Background(), "t", 1, eventstream.WithHeader("Bad-Name", "x"))
	require.ErrorIs(t, err, eventstream.ErrInvalidOption)
	err = bus.Emit(context.Background(), "t", 1, eventstream.WithHeader("id", "x"))
	require.ErrorIs(t, err, eventstream.ErrInvalidOption)
}

// bareAdapter is a record publisher that takes structured envelopes bare
// (eventstream.BareEnvelope).
type bareAdapter struct{ *memory.Adapter }

func (bareAdapter) BareEnvelope() bool { return true }

// TestBareEnvelope: over an adapter that takes envelopes bare, a structured
// event without headers is published with no broker header and no record
// time, one with headers mirrors them without content-type, and both read
// back with the envelope's attributes (the time is the envelope's, not the
// broker's).
func TestBareEnvelope(t *testing.T) {
	ad := newAdapter(t)
	var published []eventstream.Record
	var mu sync.Mutex
	rec := &recordingPublisher{bareAdapter: bareAdapter{ad}, onRecord: func(r eventstream.Record) {
		mu.Lock()
		published = append(published, r)
		mu.Unlock()
	}}
	bus := newDistBus(t, rec, nil)
	got := make(chan *eventstream.Event, 2)
	sub, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error { got <- e; return nil },
		eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	defer func() { _ = bus.Off(sub) }()

	require.NoError(t, bus.Emit(context.Background(), "t", map[string]int{"n": 1}))
	require.NoError(t, bus.Emit(context.Background(), "t", map[string]int{"n": 2},
		eventstream.WithKey("k"), eventstream.WithHeader("tenant", "x")))
	mu.Lock()
	require.Len(t, published, 2)
	plainRec, withHeaders := published[0], published[1]
	mu.Unlock()
	assert.Nil(t, plainRec.Headers, "no content-type header")
	assert.True(t, plainRec.Time.IsZero(), "no record time: the envelope has it")
	assert.Nil(t, plainRec.Key)
	assert.Equal(t, map[string]string{"tenant": "x"}, withHeaders.Headers, "headers mirrored, content-type not")
	assert.True(t, withHeaders.Time.IsZero())
	assert.Equal(t, []byte("k"), withHeaders.Key)

	for i, r := range []eventstream.Record{plainRec, withHeaders} {
		var ce cloudevents.Event
		require.NoError(t, json.Unmarshal(r.Value, &ce), "%s", r.Value)
		e := recv(t, got)
		var p map[string]int
		require.NoError(t, e.Unmarshal(&p))
		assert.Equal(t, i+1, p["n"])
		assert.Equal(t, ce.ID(), e.ID)
		assert.True(t, ce.Time().Equal(e.Time), "event time %v is the envelope's %v", e.Time, ce.Time())
		assert.Equal(t, "application/json", e.ContentType)
	}
}

// recordingPublisher passes records on to bareAdapter and reports them.
type recordingPublisher struct {
	bareAdapter
	onRecord func(eventstream.Record)
}

func (p *recordingPublisher) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	p.onRecord(r)
	return p.bareAdapter.PublishRecord(ctx, topic, r)
}

// TestRawPayloadIsReadByTheCloudEventsSDK: a RawSerializer payload that is
// plain text travels as a JSON string in "data", binary bytes in
// "data_base64"; the CloudEvents SDK reads both as the original bytes.
func TestRawPayloadIsReadByTheCloudEventsSDK(t *testing.T) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, func(c *eventstream.Config) { c.Distributed.Serializer = eventstream.RawSerializer{} })
	ch, cancel, err := ad.Subscribe(context.Background(), "t", "reader")
	require.NoError(t, err)
	defer cancel()
	for payload, member := range map[string]string{"hello <world>": `"data":"hello <world>"`, "\x00\xff\n": `"data_base64":"AP8K"`} {
		require.NoError(t, bus.Emit(context.Background(), "t", []byte(payload)))
		m := recv(t, ch)
		assert.Contains(t, string(m.Value()), member)
		var ce cloudevents.Event
		require.NoError(t, json.Unmarshal(m.Value(), &ce), "%s", m.Value())
		assert.Equal(t, "application/octet-stream", ce.DataContentType())
		assert.Equal(t, []byte(payload), ce.Data(), "%s", m.Value())
	}
}

// plain hides every optional capability of the adapter it wraps, like the
// four-method adapter of the user's documentation.
type plain struct{ eventstream.MQAdapter }

func TestDistributedPlainAdapterAndDeadLetterEvent(t *testing.T) {
	sp := &spy{MQAdapter: plain{newAdapter(t)}}
	bus := newDistBus(t, sp, nil)
	dead := make(chan *eventstream.Event, 1)
	_, err := bus.On("t.g.dlq", func(_ context.Context, e *eventstream.Event) error { dead <- e; return nil },
		eventstream.WithConsumerGroup("ops"))
	require.NoError(t, err)
	var calls atomic.Int64
	_, err = bus.On("t", func(context.Context, *eventstream.Event) error {
		calls.Add(1)
		return errors.New("always fails")
	}, eventstream.WithConsumerGroup("g"), eventstream.WithRetryPolicy(fastRetry(2)))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", "payload", eventstream.WithKey("k")))
	original := sp.last("t")
	require.NotNil(t, original)
	d := recv(t, dead)
	assert.Equal(t, "string", d.Type, "the dead letter is the original event")
	assert.Equal(t, "k", d.Key, "the key travels in the envelope when the adapter has no keys")
	var payload string
	require.NoError(t, d.Unmarshal(&payload))
	assert.Equal(t, "payload", payload)
	assert.Equal(t, "3", d.Headers[eventstream.HeaderDeadLetterAttempts])
	assert.Equal(t, "t", d.Headers[eventstream.HeaderDeadLetterTopic])
	assert.Equal(t, "g", d.Headers[eventstream.HeaderDeadLetterGroup])
	assert.Contains(t, d.Headers[eventstream.HeaderDeadLetterError], "always fails")
	assert.Equal(t, int64(3), calls.Load())
	require.Eventually(t, func() bool { return sp.ackCount() == 2 }, 10*time.Second, time.Millisecond,
		"the failed message is acked after its dead-letter write, the dead letter after its handler")
}

func TestDistributedDeadLetterWithHeaders(t *testing.T) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, nil)
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		return eventstream.Permanent(errors.New("rejected"))
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", 5, eventstream.WithKey("k")))
	ch, cancel, err := ad.Subscribe(context.Background(), eventstream.DeadLetterTopicName("t", "g"), "ops")
	require.NoError(t, err)
	defer cancel()
	m := recv(t, ch)
	h := m.(eventstream.HeaderCarrier).Headers()
	assert.Equal(t, "1", h[eventstream.HeaderDeadLetterAttempts])
	assert.Equal(t, "t", h[eventstream.HeaderDeadLetterTopic])
	assert.Equal(t, "g", h[eventstream.HeaderDeadLetterGroup])
	assert.Contains(t, h[eventstream.HeaderDeadLetterError], "rejected")
	assert.Equal(t, []byte("k"), m.Key())
	var ce cloudevents.Event
	require.NoError(t, json.Unmarshal(m.Value(), &ce), "the original envelope, unchanged")
	require.Eventually(t, func() bool { return bus.Stats().DeadLettered == 1 }, 10*time.Second, time.Millisecond)
}

func TestDistributedNoAckWhenDeadLetterFails(t *testing.T) {
	sp := &spy{MQAdapter: plain{newAdapter(t)}, failTopic: "t.g.dlq", failures: -1}
	failed := make(chan struct{}, 1)
	bus := newDistBus(t, sp, func(c *eventstream.Config) {
		c.OnFailure = func(context.Context, *eventstream.Failure) { failed <- struct{}{} }
	})
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		return eventstream.Permanent(errors.New("no"))
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", 1))
	recv(t, failed)
	require.NoError(t, bus.Close())
	assert.Zero(t, sp.ackCount(), "a message whose dead-letter write failed must stay unacknowledged")
	assert.Zero(t, bus.Stats().DeadLettered)
	// It is delivered again to the group.
	again := make(chan struct{})
	bus2 := newDistBus(t, sp, nil)
	_, err = bus2.On("t", func(context.Context, *eventstream.Event) error { close(again); return nil },
		eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	recv(t, again)
}

func TestDistributedDeadLetterWriteIsRetried(t *testing.T) {
	sp := &spy{MQAdapter: plain{newAdapter(t)}, failTopic: "t.g.dlq", failures: 2}
	var failures atomic.Int64
	bus := newDistBus(t, sp, func(c *eventstream.Config) {
		c.OnFailure = func(context.Context, *eventstream.Failure) { failures.Add(1) }
	})
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		return eventstream.Permanent(errors.New("no"))
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", 1))
	require.Eventually(t, func() bool { return bus.Stats().DeadLettered == 1 }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return sp.ackCount() == 1 }, 10*time.Second, time.Millisecond)
	sp.mu.Lock()
	writes := len(sp.published["t.g.dlq"])
	sp.mu.Unlock()
	assert.Equal(t, 3, writes, "two failed dead-letter writes, then one that succeeded")
	assert.Equal(t, int64(1), failures.Load(), "the failure is reported once, not once per write")
}

// TestDistributedMalformedMessages: whatever the concurrency (with more
// than one worker, keyless messages are decoded by the workers), messages
// that do not decode are dead-lettered and the good ones handled.
func TestDistributedMalformedMessages(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run(fmt.Sprintf("concurrency=%d", conc), func(t *testing.T) { testDistributedMalformedMessages(t, conc) })
	}
}

func testDistributedMalformedMessages(t *testing.T, conc int) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, nil)
	var good []int
	var mu sync.Mutex
	done := make(chan struct{})
	_, err := bus.On("t", eventstream.Typed(func(_ context.Context, _ *eventstream.Event, n int) error {
		mu.Lock()
		defer mu.Unlock()
		good = append(good, n)
		if len(good) == 3 {
			close(done)
		}
		return nil
	}), eventstream.WithConsumerGroup("g"), eventstream.WithConcurrency(conc))
	require.NoError(t, err)
	rawBus := newDistBus(t, ad, func(c *eventstream.Config) { c.Distributed.Serializer = eventstream.RawSerializer{} })
	ctx := context.Background()
	require.NoError(t, bus.Emit(ctx, "t", 1))
	bad := [][]byte{
		{0xff, 0xfe, 0x00, 0x01},                    // garbage
		[]byte(`{"specversion":"1.0","id":"x","so`), // truncated envelope
		[]byte(`{"specversion":"0.3","id":"x","source":"s","type":"t"}`),
		[]byte(`plain text`),
	}
	for _, b := range bad {
		require.NoError(t, ad.Publish(ctx, "t", b))
	}
	require.NoError(t, rawBus.Emit(ctx, "t", []byte("raw bytes"))) // wrong content type
	require.NoError(t, ad.Publish(ctx, "t", []byte(`2`)))          // a bare JSON payload is accepted
	require.NoError(t, bus.Emit(ctx, "t", 3))
	recv(t, done)
	assert.ElementsMatch(t, []int{1, 2, 3}, good)

	ch, cancel, err := ad.Subscribe(ctx, "t.g.dlq", "ops")
	require.NoError(t, err)
	defer cancel()
	var reasons []string
	for range len(bad) + 1 {
		m := recv(t, ch)
		reasons = append(reasons, m.(eventstream.HeaderCarrier).Headers()[eventstream.HeaderDeadLetterError])
	}
	joined := fmt.Sprint(reasons)
	assert.Contains(t, joined, "application/octet-stream")
	assert.Contains(t, joined, "specversion")
	require.Eventually(t, func() bool { return bus.Stats().DeadLettered == uint64(len(bad)+1) }, 10*time.Second, time.Millisecond)
}

// TestDistributedBadJSONPayloadDeadLettered: the envelope decoder leaves
// the payload to the handler's Unmarshal; a payload that is not JSON fails
// it with ErrDecode, which is not retried: the event is dead-lettered.
func TestDistributedBadJSONPayloadDeadLettered(t *testing.T) {
	ad := newAdapter(t)
	failures := make(chan *eventstream.Failure, 1)
	bus := newDistBus(t, ad, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures <- f }
	})
	_, err := bus.On("t", eventstream.Typed(func(context.Context, *eventstream.Event, order) error { return nil }),
		eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	env := `{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"application/json","data":{"id":}}`
	require.NoError(t, ad.Publish(context.Background(), "t", []byte(env)))
	f := recv(t, failures)
	require.ErrorIs(t, f.Err, eventstream.ErrDecode)
	assert.Equal(t, 1, f.Attempts)
	require.Eventually(t, func() bool { return bus.Stats().DeadLettered == 1 }, 10*time.Second, time.Millisecond)
}

func TestDistributedContentTypeMismatchNamesBoth(t *testing.T) {
	ad := newAdapter(t)
	pub := newDistBus(t, ad, func(c *eventstream.Config) { c.Distributed.Serializer = eventstream.RawSerializer{} })
	failures := make(chan *eventstream.Failure, 1)
	sub := newDistBus(t, ad, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures <- f }
	})
	var called atomic.Bool
	_, err := sub.On("t", func(context.Context, *eventstream.Event) error { called.Store(true); return nil },
		eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	require.NoError(t, pub.Emit(context.Background(), "t", "hello"))
	f := recv(t, failures)
	require.ErrorIs(t, f.Err, eventstream.ErrContentType)
	assert.Contains(t, f.Err.Error(), `"application/octet-stream"`)
	assert.Contains(t, f.Err.Error(), `"application/json"`)
	assert.Zero(t, f.Attempts)
	assert.False(t, called.Load())
}

func TestDistributedKeyOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		ad   func(t *testing.T) eventstream.MQAdapter
	}{
		{"native keys", func(t *testing.T) eventstream.MQAdapter { return newAdapter(t) }},
		{"plain adapter", func(t *testing.T) eventstream.MQAdapter { return plain{newAdapter(t)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bus := newDistBus(t, tc.ad(t), nil)
			const keys, per = 8, 50
			var mu sync.Mutex
			last := map[string]int{}
			var bad, n atomic.Int64
			done := make(chan struct{})
			_, err := bus.On("t", eventstream.Typed(func(_ context.Context, e *eventstream.Event, v int) error {
				mu.Lock()
				if prev, ok := last[e.Key]; ok && v <= prev {
					bad.Add(1)
				}
				last[e.Key] = v
				mu.Unlock()
				if n.Add(1) == keys*per {
					close(done)
				}
				return nil
			}), eventstream.WithConsumerGroup("g"), eventstream.WithConcurrency(8))
			require.NoError(t, err)
			for i := range per {
				for k := range keys {
					require.NoError(t, bus.Emit(context.Background(), "t", i, eventstream.WithKey(fmt.Sprint("k", k))))
				}
			}
			recv(t, done)
			assert.Zero(t, bad.Load())
		})
	}
}

func TestDistributedOffLeavesUnhandledForRedelivery(t *testing.T) {
	sp := &spy{MQAdapter: newAdapter(t)}
	bus := newDistBus(t, sp, func(c *eventstream.Config) { c.DrainTimeout = 100 * time.Millisecond })
	inside := make(chan struct{})
	sub, err := bus.On("t", func(ctx context.Context, e *eventstream.Event) error {
		var n int
		if err := e.Unmarshal(&n); err != nil {
			return eventstream.Permanent(err) // reported as a failure; never FailNow on a handler goroutine
		}
		if n == 0 {
			close(inside)
			<-ctx.Done() // Off cancels the context after its drain timeout
		}
		return nil
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	for i := range 10 {
		require.NoError(t, bus.Emit(context.Background(), "t", i))
	}
	recv(t, inside)
	require.NoError(t, bus.Off(sub))
	require.Equal(t, 1, sp.ackCount(), "only the in-flight handler completed and was acked")

	// A new member of the group gets every message that was not acked.
	var mu sync.Mutex
	seen := map[int]bool{}
	all := make(chan struct{})
	_, err = bus.On("t", eventstream.Typed(func(_ context.Context, _ *eventstream.Event, n int) error {
		mu.Lock()
		defer mu.Unlock()
		seen[n] = true
		if len(seen) == 9 {
			close(all)
		}
		return nil
	}), eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	recv(t, all)
	assert.False(t, seen[0], "the acked message is not delivered again")
	require.Eventually(t, func() bool { return sp.ackCount() == 10 }, 10*time.Second, time.Millisecond)
}

func TestDistributedConsumerGroupRequired(t *testing.T) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, nil)
	h := func(context.Context, *eventstream.Event) error { return nil }
	_, err := bus.On("t", h)
	require.ErrorIs(t, err, eventstream.ErrNoConsumerGroup)
	withDefault := newDistBus(t, ad, func(c *eventstream.Config) { c.Subscribe.ConsumerGroup = "svc" })
	sub, err := withDefault.On("t", h)
	require.NoError(t, err)
	assert.Equal(t, "svc", sub.Group())
	sub, err = withDefault.On("t", h, eventstream.WithConsumerGroup("override"))
	require.NoError(t, err)
	assert.Equal(t, "override", sub.Group())
	require.NoError(t, withDefault.Close())
	require.ErrorIs(t, withDefault.Emit(context.Background(), "t", 1), eventstream.ErrClosed)
	_, err = withDefault.On("t", h)
	require.ErrorIs(t, err, eventstream.ErrClosed)
}

func TestDistributedOffFromHandler(t *testing.T) {
	bus := newDistBus(t, newAdapter(t), nil)
	var sub eventstream.Subscription
	ready := make(chan struct{})
	returned := make(chan error, 1)
	var err error
	sub, err = bus.On("t", func(context.Context, *eventstream.Event) error {
		<-ready
		returned <- bus.Off(sub)
		return nil
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	close(ready)
	require.NoError(t, bus.Emit(context.Background(), "t", 1))
	require.NoError(t, <-returned)
}

func TestSerializers(t *testing.T) {
	t.Run("raw", func(t *testing.T) {
		ad := newAdapter(t)
		bus := newDistBus(t, ad, func(c *eventstream.Config) { c.Distributed.Serializer = eventstream.RawSerializer{} })
		got := make(chan *eventstream.Event, 2)
		_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error { got <- e; return nil },
			eventstream.WithConsumerGroup("g"))
		require.NoError(t, err)
		require.NoError(t, bus.Emit(context.Background(), "t", []byte{0, 1, 0xff}))
		e := recv(t, got)
		var b []byte
		require.NoError(t, e.Unmarshal(&b))
		assert.Equal(t, []byte{0, 1, 0xff}, b, "bytes arrive as they were, not as a JSON string or envelope")
		require.NoError(t, ad.Publish(context.Background(), "t", []byte("from kcat")))
		e = recv(t, got)
		var s string
		require.NoError(t, e.Unmarshal(&s))
		assert.Equal(t, "from kcat", s, "a bare record is delivered as its raw payload")
		assert.Contains(t, e.ID, "t/", "a bare record's ID is topic/partition/offset")
		err = bus.Emit(context.Background(), "t", 42)
		require.Error(t, err, "RawSerializer refuses a non-byte payload")
	})
	t.Run("protobuf", func(t *testing.T) {
		bus := newDistBus(t, newAdapter(t), func(c *eventstream.Config) { c.Distributed.Serializer = protobuf.Serializer{} })
		got := make(chan *eventstream.Event, 1)
		_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error { got <- e; return nil },
			eventstream.WithConsumerGroup("g"))
		require.NoError(t, err)
		require.NoError(t, bus.Emit(context.Background(), "t", wrapperspb.String("hi")))
		e := recv(t, got)
		var v wrapperspb.StringValue
		require.NoError(t, e.Unmarshal(&v))
		assert.Equal(t, "hi", v.GetValue())
		var wrong map[string]any
		require.ErrorIs(t, e.Unmarshal(&wrong), eventstream.ErrDecode)
		require.Error(t, bus.Emit(context.Background(), "t", "not proto"))
	})
}

// TestCrossModeUnmarshal checks that a handler decodes the same value from
// the same payload in memory mode and in distributed mode.
func TestCrossModeUnmarshal(t *testing.T) {
	at := time.Date(2026, 11, 28, 6, 0, 0, 123, time.UTC)
	cases := []struct {
		name    string
		payload any
		dst     func() any // a new pointer to decode into
	}{
		{"struct", order{ID: 1, Items: []string{"x"}, At: at}, func() any { return new(order) }},
		{"struct pointer", &order{ID: 2}, func() any { return new(order) }},
		{"map", map[string]any{"a": 1.5, "b": "c"}, func() any { return new(map[string]any) }},
		{"map into struct", map[string]any{"id": 3}, func() any { return new(order) }},
		{"slice", []int{1, 2, 3}, func() any { return new([]int) }},
		{"string", "hello", func() any { return new(string) }},
		{"bytes", []byte{1, 2, 3}, func() any { return new([]byte) }},
		{"int", 42, func() any { return new(int) }},
		{"float", 2.5, func() any { return new(float64) }},
		{"time", at, func() any { return new(time.Time) }},
		{"number into string fails", 42, func() any { return new(string) }},
	}
	type result struct {
		val any
		err bool
	}
	run := func(t *testing.T, bus eventstream.Bus, group string) []result {
		results := make([]result, len(cases))
		done := make(chan struct{})
		var n atomic.Int64
		opts := []eventstream.SubscribeOption{eventstream.WithConsumerGroup(group)}
		_, err := bus.On("cross", func(_ context.Context, e *eventstream.Event) error {
			i := 0
			for ; i < len(cases); i++ {
				if cases[i].name == e.Type {
					break
				}
			}
			dst := cases[i].dst()
			err := e.Unmarshal(dst)
			results[i] = result{val: dst, err: err != nil}
			if n.Add(1) == int64(len(cases)) {
				close(done)
			}
			return nil
		}, opts...)
		require.NoError(t, err)
		for _, c := range cases {
			require.NoError(t, bus.Emit(context.Background(), "cross", c.payload, eventstream.WithType(c.name)))
		}
		recv(t, done)
		return results
	}
	mem := run(t, newMemoryBus(t, nil), "")
	dist := run(t, newDistBus(t, newAdapter(t), nil), "g")
	binary := run(t, newDistBus(t, newAdapter(t), func(c *eventstream.Config) { c.Distributed.BinaryMode = true }), "g")
	for i, c := range cases {
		assert.Equal(t, mem[i].err, dist[i].err, "%s: error differs", c.name)
		assert.Equal(t, mem[i].val, dist[i].val, "%s: value differs", c.name)
		assert.Equal(t, mem[i].err, binary[i].err, "%s: error differs in binary mode", c.name)
		assert.Equal(t, mem[i].val, binary[i].val, "%s: value differs in binary mode", c.name)
	}
	assert.True(t, mem[len(cases)-1].err, "a number does not decode into a string")
}

func TestDistributedEnvelopeDetection(t *testing.T) {
	ad := newAdapter(t)
	failures := make(chan *eventstream.Failure, 4)
	bus := newDistBus(t, ad, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures <- f }
	})
	type doc struct {
		Meta map[string]string `json:"meta"`
		N    int               `json:"n"`
	}
	got := make(chan doc, 1)
	_, err := bus.On("t", eventstream.Typed(func(_ context.Context, _ *eventstream.Event, d doc) error {
		got <- d
		return nil
	}), eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	ctx := context.Background()
	// "specversion" below the top level does not make an envelope.
	require.NoError(t, ad.Publish(ctx, "t", []byte(`{"meta":{"specversion":"x"},"n":5}`)))
	assert.Equal(t, doc{Meta: map[string]string{"specversion": "x"}, N: 5}, <-got)
	// A top-level specversion does, and a broken envelope is dead-lettered.
	require.NoError(t, ad.Publish(ctx, "t", []byte(`{"specversion":"1.0","source":"s","type":"t"}`)))
	f := recv(t, failures)
	require.ErrorIs(t, f.Err, eventstream.ErrDecode)
	assert.Contains(t, f.Err.Error(), `"id"`)
}

func TestUnmarshalContentTypeMismatchIsPermanent(t *testing.T) {
	var calls atomic.Int64
	failed := make(chan *eventstream.Failure, 1)
	bus := newMemoryBus(t, func(c *eventstream.Config) {
		c.Memory.Serializer = eventstream.RawSerializer{}
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failed <- f }
	})
	_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error {
		calls.Add(1)
		var s string
		return e.Unmarshal(&s)
	}, eventstream.WithRetryPolicy(fastRetry(3)))
	require.NoError(t, err)
	require.NoError(t, bus.Publish(context.Background(), &eventstream.Event{
		Topic: "t", ContentType: "application/json", Data: []byte(`"x"`),
	}))
	f := recv(t, failed)
	require.ErrorIs(t, f.Err, eventstream.ErrContentType)
	assert.Equal(t, int64(1), calls.Load(), "a content-type mismatch is not retried")
}

func TestDistributedBinaryMode(t *testing.T) {
	ad := newAdapter(t)
	bin := newDistBus(t, ad, func(c *eventstream.Config) { c.Distributed.BinaryMode = true })
	structured := newDistBus(t, ad, nil)
	got := make(chan *eventstream.Event, 2)
	for _, b := range []eventstream.Bus{bin, structured} {
		_, err := b.On("t", func(_ context.Context, e *eventstream.Event) error { got <- e; return nil },
			eventstream.WithConsumerGroup(fmt.Sprintf("g%p", b)))
		require.NoError(t, err)
	}
	// A raw reader joins first: the in-process broker drops what every
	// known group has acknowledged.
	ch, cancel, err := ad.Subscribe(context.Background(), "t", "raw")
	require.NoError(t, err)
	defer cancel()
	want := order{ID: 9, Items: []string{"x"}}
	require.NoError(t, bin.Emit(context.Background(), "t", want, eventstream.WithKey("k9"),
		eventstream.WithHeader("traceid", "abc"), eventstream.WithType("order.created")))
	for range 2 { // both subscribers read binary mode, whatever their own setting
		e := recv(t, got)
		var o order
		require.NoError(t, e.Unmarshal(&o))
		assert.Equal(t, want, o)
		assert.Equal(t, "k9", e.Key)
		assert.Equal(t, "order.created", e.Type)
		assert.Equal(t, map[string]string{"traceid": "abc"}, e.Headers)
		assert.Equal(t, "application/json", e.ContentType)
		assert.Len(t, e.ID, 36)
		assert.WithinDuration(t, time.Now(), e.Time, time.Minute)
	}

	// On the wire: the payload alone, attributes as ce_ headers.
	m := recv(t, ch)
	assert.JSONEq(t, `{"id":9,"items":["x"],"at":"0001-01-01T00:00:00Z"}`, string(m.Value()))
	h := m.(eventstream.HeaderCarrier).Headers()
	assert.Equal(t, "1.0", h["ce_specversion"])
	assert.Equal(t, "abc", h["ce_traceid"])
	assert.Equal(t, "application/json", h["content-type"])
	assert.Equal(t, []byte("k9"), m.Key())

	// A binary-mode record without an id is dead-lettered, not handled.
	failures := make(chan *eventstream.Failure, 1)
	strict := newDistBus(t, ad, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures <- f }
	})
	_, err = strict.On("t2", func(context.Context, *eventstream.Event) error { return nil }, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	require.NoError(t, ad.PublishRecord(context.Background(), "t2", eventstream.Record{
		Value: []byte(`1`), Headers: map[string]string{"ce_specversion": "1.0", "ce_source": "s", "ce_type": "t"},
	}))
	f := recv(t, failures)
	require.ErrorIs(t, f.Err, eventstream.ErrDecode)
	assert.Contains(t, f.Err.Error(), "ce_id")

	_, err = eventstream.New(func() eventstream.Config {
		c := eventstream.DefaultDistributedConfig()
		c.Distributed.MQAdapter = plain{ad}
		c.Distributed.BinaryMode = true
		return c
	}())
	require.ErrorIs(t, err, eventstream.ErrInvalidConfig, "binary mode needs headers")
}

// bounded wraps an adapter and records the largest number of messages taken
// from its subscription channels and not yet acknowledged.
type bounded struct {
	eventstream.MQAdapter
	taken, acked, most atomic.Int64
}

func (a *bounded) Subscribe(ctx context.Context, topic, group string) (<-chan eventstream.Message, func(), error) {
	in, cancel, err := a.MQAdapter.Subscribe(ctx, topic, group)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan eventstream.Message)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer close(out)
		for m := range in {
			n := a.taken.Add(1) - a.acked.Load()
			for old := a.most.Load(); n > old && !a.most.CompareAndSwap(old, n); old = a.most.Load() {
			}
			select {
			case out <- m:
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() { close(done) })
		cancel()
		<-finished
	}, nil
}

func (a *bounded) Ack(ctx context.Context, group string, m eventstream.Message) error {
	a.acked.Add(1)
	return a.MQAdapter.Ack(ctx, group, m)
}

func TestDistributedReadsAtMostBufferAhead(t *testing.T) {
	ad := &bounded{MQAdapter: newAdapter(t)}
	bus := newDistBus(t, ad, nil)
	const events, buffer, workers = 300, 4, 2
	var handled atomic.Int64
	done := make(chan struct{})
	release := make(chan struct{})
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		<-release
		if handled.Add(1) == events {
			close(done)
		}
		return nil
	}, eventstream.WithConsumerGroup("g"), eventstream.WithBufferSize(buffer), eventstream.WithConcurrency(workers))
	require.NoError(t, err)
	for i := range events {
		require.NoError(t, bus.Emit(context.Background(), "t", i))
	}
	// The handlers are blocked: the reader fills the queue and stops.
	// Queued (the shared queue plus a lane slot per worker), in the
	// handlers, held by the reader and by the wrapper — nothing more.
	limit := int64(buffer + workers*max(1, buffer/workers) + workers + 2)
	require.Eventually(t, func() bool { return ad.taken.Load() >= int64(buffer+workers) }, 10*time.Second, time.Millisecond)
	// What is under test is that nothing more happens: watch for a while.
	window := time.NewTimer(200 * time.Millisecond)
	defer window.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for watching := true; watching; {
		require.LessOrEqual(t, ad.taken.Load(), limit, "messages read from the broker ahead of the handlers")
		select {
		case <-window.C:
			watching = false
		case <-tick.C:
		}
	}
	close(release)
	recv(t, done)
	assert.LessOrEqual(t, ad.most.Load(), limit)
}

func TestDistributedDeadLetterReasonReachesBusSubscribers(t *testing.T) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, nil)
	_, err := bus.On("t", func(context.Context, *eventstream.Event) error {
		return eventstream.Permanent(errors.New("rejected"))
	}, eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	dead := make(chan *eventstream.Event, 1)
	_, err = bus.On(eventstream.DeadLetterTopicName("t", "g"), func(_ context.Context, e *eventstream.Event) error {
		dead <- e
		return nil
	}, eventstream.WithConsumerGroup("ops"))
	require.NoError(t, err)
	require.NoError(t, bus.Emit(context.Background(), "t", 5, eventstream.WithHeader("tenant", "acme")))
	e := recv(t, dead)
	var n int
	require.NoError(t, e.Unmarshal(&n), "the dead letter is the original event")
	assert.Equal(t, 5, n)
	assert.Contains(t, e.Headers[eventstream.HeaderDeadLetterError], "rejected", "broker headers reach Event.Headers")
	assert.Equal(t, "1", e.Headers[eventstream.HeaderDeadLetterAttempts])
	assert.Equal(t, "acme", e.Headers["tenant"], "the original headers are kept")
	_, hasCT := e.Headers["content-type"]
	assert.False(t, hasCT)
}

func TestDistributedEnvelopeAttributesWinOverBrokerHeaders(t *testing.T) {
	ad := newAdapter(t)
	bus := newDistBus(t, ad, nil)
	got := make(chan *eventstream.Event, 1)
	_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error { got <- e; return nil },
		eventstream.WithConsumerGroup("g"))
	require.NoError(t, err)
	env := []byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","tenant":"from-envelope","data":1}`)
	require.NoError(t, ad.PublishRecord(context.Background(), "t", eventstream.Record{
		Value:   env,
		Headers: map[string]string{"tenant": "from-broker", "region": "eu", "content-type": eventstream.CloudEventsContentType},
	}))
	e := recv(t, got)
	assert.Equal(t, map[string]string{"tenant": "from-envelope", "region": "eu"}, e.Headers)
}
