package esotel_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/esotel"
)

// scenario describes a bus under test for runScenario.
type scenario struct {
	cfg        eventstream.Config // Observer is set by runScenario
	topic      string
	dlqTopic   string                        // where failed events go
	subOpts    []eventstream.SubscribeOption // besides group and retry policy
	wantSystem string                        // messaging.system; "" accepts any non-empty value
	positioned bool                          // messages carry partition and offset
	settle     func(t *testing.T, r *rig)    // extra checks after the run, before Close
	timeout    time.Duration                 // for the whole run
}

// handled is what the handler saw of one attempt.
type handled struct {
	attempt int
	span    trace.SpanContext
	headers map[string]string
}

// runScenario emits three events inside a "request" span each: "ok" is
// handled at once, "flaky" panics on its first attempt and succeeds on the
// second, "bad" fails twice and is dead-lettered. It checks the resulting
// traces span by span and the metrics.
func runScenario(t *testing.T, s scenario) {
	t.Helper()
	if s.timeout == 0 {
		s.timeout = 20 * time.Second
	}
	r := newRig(t)
	cfg := s.cfg
	cfg.Logger = quiet
	cfg.Observer = r.obs
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bus.Close() }()

	var mu sync.Mutex
	seen := map[string][]handled{} // by event key
	h := func(ctx context.Context, e *eventstream.Event) error {
		mu.Lock()
		attempt := len(seen[e.Key]) + 1
		seen[e.Key] = append(seen[e.Key], handled{attempt: attempt, span: trace.SpanContextFromContext(ctx), headers: e.Headers})
		mu.Unlock()
		switch {
		case e.Key == "flaky" && attempt == 1:
			panic("flaky handler")
		case e.Key == "bad":
			return errors.New("card declined")
		}
		return nil
	}
	opts := append([]eventstream.SubscribeOption{
		eventstream.WithConsumerGroup("billing"),
		eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: 1, BackoffStrategy: eventstream.BackoffFixed}),
	}, s.subOpts...)
	if _, err := bus.On(s.topic, h, opts...); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	tracer := r.tp.Tracer("test")
	roots := map[string]trace.SpanContext{}
	for _, key := range []string{"ok", "flaky", "bad"} {
		rctx, root := tracer.Start(ctx, "request "+key)
		if err := bus.Emit(rctx, s.topic, map[string]string{"k": key}, eventstream.WithKey(key)); err != nil {
			t.Fatalf("Emit %s: %v", key, err)
		}
		root.End()
		roots[key] = root.SpanContext()
	}

	processName, sendName := "process "+s.topic, "send "+s.topic
	r.waitSpans(t, processName, 5, s.timeout)
	r.waitSpans(t, "send "+s.dlqTopic, 1, s.timeout)

	byTrace := map[trace.TraceID][]sdktrace.ReadOnlySpan{}
	for _, sp := range r.spans.Ended() {
		byTrace[sp.SpanContext().TraceID()] = append(byTrace[sp.SpanContext().TraceID()], sp)
	}
	mu.Lock()
	defer mu.Unlock()
	for key, root := range roots {
		spans := byTrace[root.TraceID()]
		var send sdktrace.ReadOnlySpan
		var procs, dlq []sdktrace.ReadOnlySpan
		for _, sp := range spans {
			switch sp.Name() {
			case sendName:
				send = sp
			case processName:
				procs = append(procs, sp)
			case "send " + s.dlqTopic:
				dlq = append(dlq, sp)
			}
		}
		if send == nil {
			t.Errorf("%s: no %q span in the trace:%s", key, sendName, spanNames(spans))
			continue
		}
		if !childOf(send, root) || send.SpanKind() != trace.SpanKindProducer {
			t.Errorf("%s: send span kind %v parent %v, want PRODUCER child of the request span", key, send.SpanKind(), send.Parent())
		}
		system, ok := attr(send, semconv.MessagingSystemKey)
		if !ok || system.AsString() == "" || (s.wantSystem != "" && system.AsString() != s.wantSystem) {
			t.Errorf("%s: messaging.system %q, want %q", key, system.AsString(), s.wantSystem)
		}
		wantAttrs(t, send, semconv.MessagingDestinationName(s.topic), semconv.MessagingOperationTypeSend)
		id, _ := attr(send, semconv.MessagingMessageIDKey)
		if id.AsString() == "" {
			t.Errorf("%s: send span without messaging.message.id", key)
		}

		attempts := map[string]int{"ok": 1, "flaky": 2, "bad": 2}[key]
		if len(procs) != attempts {
			t.Errorf("%s: %d process spans in the trace, want %d:%s", key, len(procs), attempts, spanNames(spans))
			continue
		}
		got := seen[key]
		for _, p := range procs {
			attempt := int(mustAttr(t, p, esotel.AttemptKey).AsInt64())
			if p.SpanKind() != trace.SpanKindConsumer || !childOf(p, send.SpanContext()) || !linkedTo(p, send.SpanContext()) {
				t.Errorf("%s attempt %d: kind %v parent %v links %v, want CONSUMER child of and linked to send", key, attempt, p.SpanKind(), p.Parent(), p.Links())
			}
			wantAttrs(t, p, semconv.MessagingSystemKey.String(system.AsString()), semconv.MessagingDestinationName(s.topic),
				semconv.MessagingConsumerGroupName("billing"), semconv.MessagingOperationTypeProcess,
				semconv.MessagingMessageIDKey.String(id.AsString()), semconv.CloudEventsEventIDKey.String(id.AsString()))
			if s.positioned {
				if _, ok := attr(p, semconv.MessagingDestinationPartitionIDKey); !ok {
					t.Errorf("%s: process span without partition", key)
				}
			}
			if attempt < 1 || attempt > len(got) {
				t.Errorf("%s: process span attempt %d, handler saw %d attempts", key, attempt, len(got))
				continue
			}
			if hs := got[attempt-1].span; hs.SpanID() != p.SpanContext().SpanID() {
				t.Errorf("%s attempt %d: the handler's ctx holds span %v, not the process span %v", key, attempt, hs.SpanID(), p.SpanContext().SpanID())
			}
			for _, k := range []string{"traceparent", "tracestate"} {
				if _, ok := got[attempt-1].headers[k]; ok {
					t.Errorf("%s: Event.Headers has %s: %v", key, k, got[attempt-1].headers)
				}
			}
			wantErr := ""
			switch {
			case key == "flaky" && attempt == 1:
				wantErr = "handler_panic"
			case key == "bad":
				wantErr = "_OTHER"
			}
			et, hasET := attr(p, semconv.ErrorTypeKey)
			if wantErr == "" {
				if hasET || p.Status().Code != codes.Unset {
					t.Errorf("%s attempt %d: status %v error.type %q, want success", key, attempt, p.Status(), et.AsString())
				}
			} else if et.AsString() != wantErr || p.Status().Code != codes.Error {
				t.Errorf("%s attempt %d: status %v error.type %q, want Error %q", key, attempt, p.Status(), et.AsString(), wantErr)
			}
		}

		if key != "bad" {
			if len(dlq) != 0 {
				t.Errorf("%s: dead-letter span in the trace", key)
			}
			continue
		}
		if len(dlq) != 1 {
			t.Errorf("bad: %d dead-letter spans in its trace, want 1:%s", len(dlq), spanNames(r.spans.Ended()))
			continue
		}
		d := dlq[0]
		if d.SpanKind() != trace.SpanKindProducer || !linkedTo(d, send.SpanContext()) {
			t.Errorf("dead-letter span kind %v links %v, want PRODUCER linked to the send span", d.SpanKind(), d.Links())
		}
		wantAttrs(t, d, semconv.MessagingDestinationName(s.dlqTopic), esotel.DeadLetterTopicKey.String(s.topic),
			esotel.DeadLetterGroupKey.String("billing"), esotel.DeadLetterAttemptsKey.Int(2))
	}

	rm := r.collect(t)
	topicAttr := semconv.MessagingDestinationName(s.topic)
	if n := sumInt(t, findMetric(t, rm, "messaging.client.sent.messages"), topicAttr); n != 3 {
		t.Errorf("sent.messages on %s = %d, want 3", s.topic, n)
	}
	if n := sumInt(t, findMetric(t, rm, "messaging.client.sent.messages"), semconv.MessagingDestinationName(s.dlqTopic)); n != 1 {
		t.Errorf("sent.messages on %s = %d, want 1", s.dlqTopic, n)
	}
	if n := sumInt(t, findMetric(t, rm, "messaging.client.consumed.messages"), topicAttr, semconv.MessagingConsumerGroupName("billing")); n != 3 {
		t.Errorf("consumed.messages = %d, want 3 (one per event)", n)
	}
	if n, _ := histCount(t, findMetric(t, rm, "messaging.process.duration"), topicAttr); n != 5 {
		t.Errorf("process.duration count = %d, want 5 (one per attempt)", n)
	}
	if n, _ := histCount(t, findMetric(t, rm, "messaging.client.operation.duration"), topicAttr); n != 3 {
		t.Errorf("operation.duration count on %s = %d, want 3", s.topic, n)
	}
	stats := bus.Stats()
	for name, want := range map[string]uint64{
		"eventstream.events.delivered":     stats.Delivered,
		"eventstream.events.failed":        stats.Failed,
		"eventstream.events.retried":       stats.Retried,
		"eventstream.events.dead_lettered": stats.DeadLettered,
	} {
		if got := sumInt(t, findMetric(t, rm, name)); uint64(got) != want {
			t.Errorf("%s = %d, Stats says %d", name, got, want)
		}
	}
	if stats.Delivered != 2 || stats.Retried != 2 || stats.Failed != 1 {
		t.Errorf("Stats %+v: want 2 delivered, 2 retried, 1 failed", stats)
	}
	if s.settle != nil {
		s.settle(t, r)
	}
}

func mustAttr(t testing.TB, s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	t.Helper()
	v, ok := attr(s, k)
	if !ok {
		t.Errorf("span %q has no %s", s.Name(), k)
	}
	return v
}

// TestMemoryBus: one trace per event from Emit to the handler in memory
// mode, with retries, a panic and a dead-letter write.
func TestMemoryBus(t *testing.T) {
	runScenario(t, scenario{
		cfg:        eventstream.DefaultConfig(),
		topic:      "orders",
		dlqTopic:   "orders.dlq",
		subOpts:    []eventstream.SubscribeOption{eventstream.WithDeadLetterTopic("orders.dlq")},
		wantSystem: "eventstream",
	})
}

// newMemoryAdapter returns an adapters/memory broker closed at the end of
// the test.
func newMemoryAdapter(t *testing.T) *memory.Adapter {
	t.Helper()
	a, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// TestDistributedMemoryAdapter: the same over the distributed bus and
// adapters/memory, structured and binary mode (trace context as broker
// headers), and over an adapter without RecordPublisher (trace context in
// the envelope).
func TestDistributedMemoryAdapter(t *testing.T) {
	for _, c := range []struct {
		name       string
		binary     bool
		positioned bool
		adapter    func(*memory.Adapter) eventstream.MQAdapter
	}{
		{"structured", false, true, func(a *memory.Adapter) eventstream.MQAdapter { return a }},
		{"binary", true, true, func(a *memory.Adapter) eventstream.MQAdapter { return a }},
		{"envelope-only", false, false, func(a *memory.Adapter) eventstream.MQAdapter { return plainAdapter{a} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := eventstream.DefaultDistributedConfig()
			cfg.Distributed.MQAdapter = c.adapter(newMemoryAdapter(t))
			cfg.Distributed.BinaryMode = c.binary
			runScenario(t, scenario{
				cfg:        cfg,
				topic:      "orders",
				dlqTopic:   eventstream.DeadLetterTopicName("orders", "billing"),
				positioned: c.positioned,
			})
		})
	}
}

// plainAdapter hides every optional capability of the adapter it wraps:
// no RecordPublisher, and messages without headers or positions.
type plainAdapter struct{ a *memory.Adapter }

func (p plainAdapter) Publish(ctx context.Context, topic string, msg []byte) error {
	return p.a.Publish(ctx, topic, msg)
}

func (p plainAdapter) Subscribe(ctx context.Context, topic, group string) (<-chan eventstream.Message, func(), error) {
	in, cancel, err := p.a.Subscribe(ctx, topic, group)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan eventstream.Message)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for m := range in {
			select {
			case out <- plainMessage{m}:
			case <-done:
				// Keep draining so the inner subscription can end.
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() { close(done) })
		cancel()
		for range out {
		}
	}, nil
}

func (p plainAdapter) Ack(ctx context.Context, group string, m eventstream.Message) error {
	return p.a.Ack(ctx, group, m.(plainMessage).Message)
}

func (p plainAdapter) Close() error { return p.a.Close() }

// plainMessage exposes only the Message methods.
type plainMessage struct{ eventstream.Message }
