package esotel_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/esotel"
)

func testEvent() *eventstream.Event {
	return &eventstream.Event{ID: "0190-abc", Topic: "orders", Type: "main.Order", Source: "shop", Key: "c1"}
}

// TestObserverSendProcess drives the hooks directly: the send span's
// context travels in the carrier and the process span is its child, with
// a link, in the same trace, with the convention attributes.
func TestObserverSendProcess(t *testing.T) {
	r := newRig(t)
	e := testEvent()
	carrier := propagation.MapCarrier{}
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{System: "kafka", Topic: "orders", Event: e}, carrier)
	end(nil)
	if carrier.Get("traceparent") == "" {
		t.Fatalf("carrier after StartPublish: %v, want a traceparent", carrier)
	}
	ctx, endProc := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{
		System: "kafka", Topic: "orders", Group: "billing", Event: e, Attempt: 1,
		Partition: 2, Offset: 41, HasOffset: true,
	}, carrier)
	handlerSpan := trace.SpanFromContext(ctx)
	if !handlerSpan.SpanContext().IsValid() || !handlerSpan.IsRecording() {
		t.Fatal("handler ctx holds no recording span")
	}
	endProc(nil)

	send := r.ended("send orders")
	proc := r.ended("process orders")
	if len(send) != 1 || len(proc) != 1 {
		t.Fatalf("spans:%s", spanNames(r.spans.Ended()))
	}
	s, p := send[0], proc[0]
	if s.SpanKind() != trace.SpanKindProducer || p.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kinds: send %v, process %v", s.SpanKind(), p.SpanKind())
	}
	if p.SpanContext().SpanID() != handlerSpan.SpanContext().SpanID() {
		t.Error("the handler ctx span is not the process span")
	}
	if !childOf(p, s.SpanContext()) || !linkedTo(p, s.SpanContext()) {
		t.Errorf("process span: parent %v links %v, want child of and linked to send %v", p.Parent(), p.Links(), s.SpanContext())
	}
	if s.Status().Code != codes.Unset || p.Status().Code != codes.Unset {
		t.Errorf("status: send %v, process %v", s.Status(), p.Status())
	}
	common := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingDestinationName("orders"),
		semconv.MessagingMessageID(e.ID),
		semconv.CloudEventsEventID(e.ID),
		semconv.CloudEventsEventSource("shop"),
		semconv.CloudEventsEventType("main.Order"),
		semconv.MessagingKafkaMessageKey("c1"),
	}
	wantAttrs(t, s, append(common, semconv.MessagingOperationName("send"), semconv.MessagingOperationTypeSend)...)
	wantAttrs(t, p, append(common,
		semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess,
		semconv.MessagingConsumerGroupName("billing"),
		semconv.MessagingDestinationPartitionID("2"),
		semconv.MessagingKafkaOffset(41),
		esotel.AttemptKey.Int(1))...)
	if _, ok := attr(s, semconv.ErrorTypeKey); ok {
		t.Error("successful send has error.type")
	}
	if s.InstrumentationScope().Name != esotel.ScopeName || s.InstrumentationScope().SchemaURL != semconv.SchemaURL {
		t.Errorf("scope %+v", s.InstrumentationScope())
	}
}

// TestObserverNonKafkaAttributes: other systems get the eventstream key and
// offset attributes, not the Kafka ones; the in-process bus without a
// system name reports "eventstream".
func TestObserverNonKafkaAttributes(t *testing.T) {
	r := newRig(t)
	e := testEvent()
	c := propagation.MapCarrier{}
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "orders", Event: e}, c)
	end(nil)
	_, endP := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{System: "rabbitmq", Topic: "orders", Group: "g", Event: e, Attempt: 1, Offset: 7, HasOffset: true}, c)
	endP(nil)
	s, p := r.ended("send orders")[0], r.ended("process orders")[0]
	wantAttrs(t, s, semconv.MessagingSystemKey.String("eventstream"), esotel.EventKeyKey.String("c1"))
	wantAttrs(t, p, semconv.MessagingSystemRabbitMQ, esotel.EventKeyKey.String("c1"), esotel.OffsetKey.Int64(7))
	for _, k := range []attribute.Key{semconv.MessagingKafkaMessageKeyKey, semconv.MessagingKafkaOffsetKey} {
		if _, ok := attr(p, k); ok {
			t.Errorf("rabbitmq process span has %s", k)
		}
	}
}

// TestObserverProcessFailure: an error and a panic set status Error and
// error.type; each attempt is its own span.
func TestObserverProcessFailure(t *testing.T) {
	r := newRig(t)
	e := testEvent()
	c := propagation.MapCarrier{}
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "orders", Event: e}, c)
	end(nil)
	info := eventstream.ProcessInfo{Topic: "orders", Group: "g", Event: e, Attempt: 1}
	_, endP := r.obs.StartProcess(context.Background(), info, c)
	endP(errors.New("card declined"))
	info.Attempt = 2
	_, endP = r.obs.StartProcess(context.Background(), info, c)
	endP(fmt.Errorf("%w: boom", eventstream.ErrHandlerPanic))

	proc := r.ended("process orders")
	if len(proc) != 2 {
		t.Fatalf("process spans: %d", len(proc))
	}
	for i, want := range []string{"_OTHER", "handler_panic"} {
		p := proc[i]
		if p.Status().Code != codes.Error || p.Status().Description == "" {
			t.Errorf("attempt %d: status %+v", i+1, p.Status())
		}
		wantAttrs(t, p, semconv.ErrorTypeKey.String(want), esotel.AttemptKey.Int(i+1))
		if !childOf(p, r.ended("send orders")[0].SpanContext()) {
			t.Errorf("attempt %d is not a child of the send span", i+1)
		}
	}
	if proc[0].SpanContext().SpanID() == proc[1].SpanContext().SpanID() {
		t.Error("both attempts share a span")
	}
	rm := r.collect(t)
	if n := sumInt(t, findMetric(t, rm, "messaging.client.consumed.messages")); n != 1 {
		t.Errorf("consumed.messages = %d, want 1 (one delivery, two attempts)", n)
	}
	pd := findMetric(t, rm, "messaging.process.duration")
	for _, et := range []string{"_OTHER", "handler_panic"} {
		if n, _ := histCount(t, pd, semconv.ErrorTypeKey.String(et)); n != 1 {
			t.Errorf("process.duration with error.type %s: count %d, want 1", et, n)
		}
	}
}

// TestObserverSendFailure: a failed write has status Error, error.type,
// and is counted with error.type.
func TestObserverSendFailure(t *testing.T) {
	r := newRig(t)
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{System: "kafka", Topic: "orders", Event: testEvent()}, propagation.MapCarrier{})
	end(fmt.Errorf("publish: %w", context.DeadlineExceeded))
	s := r.ended("send orders")[0]
	if s.Status().Code != codes.Error {
		t.Errorf("status %+v", s.Status())
	}
	wantAttrs(t, s, semconv.ErrorTypeKey.String("timeout"))
	sent := findMetric(t, r.collect(t), "messaging.client.sent.messages")
	if n := sumInt(t, sent, semconv.ErrorTypeKey.String("timeout"), semconv.MessagingSystemKafka); n != 1 {
		t.Errorf("sent.messages with error.type timeout = %d, want 1", n)
	}
}

// TestObserverDeadLetter: the dead-letter send links to the failed event's
// creation context and, with no span in its ctx, continues that trace.
func TestObserverDeadLetter(t *testing.T) {
	r := newRig(t)
	e := testEvent()
	origin := propagation.MapCarrier{}
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "orders", Event: e}, origin)
	end(nil)
	send := r.ended("send orders")[0]

	dlqCarrier := propagation.MapCarrier{}
	f := &eventstream.Failure{Event: e, Topic: "orders", Group: "billing", Attempts: 3, Err: errors.New("bad")}
	_, end = r.obs.StartPublish(context.Background(), eventstream.PublishInfo{
		Topic: "orders.billing.dlq", Event: e, DeadLetter: f, Origin: origin,
	}, dlqCarrier)
	end(nil)
	dl := r.ended("send orders.billing.dlq")
	if len(dl) != 1 {
		t.Fatalf("spans:%s", spanNames(r.spans.Ended()))
	}
	d := dl[0]
	if d.SpanKind() != trace.SpanKindProducer {
		t.Errorf("kind %v", d.SpanKind())
	}
	if !linkedTo(d, send.SpanContext()) || !childOf(d, send.SpanContext()) {
		t.Errorf("dead-letter span: parent %v links %v, want child of and linked to %v", d.Parent(), d.Links(), send.SpanContext())
	}
	wantAttrs(t, d, esotel.DeadLetterTopicKey.String("orders"), esotel.DeadLetterGroupKey.String("billing"),
		esotel.DeadLetterAttemptsKey.Int(3), semconv.MessagingDestinationName("orders.billing.dlq"))
	if dlqCarrier.Get("traceparent") == origin.Get("traceparent") || dlqCarrier.Get("traceparent") == "" {
		t.Errorf("dead-letter carrier %v: want the dead-letter span's own context", dlqCarrier)
	}

	// Inside another span (the last attempt's, say) the dead-letter write
	// is that span's child and still links to the creation context.
	ctx, parent := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{Topic: "orders", Group: "billing", Event: e, Attempt: 3}, origin)
	_, end = r.obs.StartPublish(ctx, eventstream.PublishInfo{Topic: "orders.billing.dlq", Event: e, DeadLetter: f, Origin: origin}, propagation.MapCarrier{})
	end(nil)
	parent(nil)
	d = r.ended("send orders.billing.dlq")[1]
	if !childOf(d, trace.SpanContextFromContext(ctx)) || !linkedTo(d, send.SpanContext()) {
		t.Errorf("dead-letter span in a process ctx: parent %v links %v", d.Parent(), d.Links())
	}
}

// TestObserverLinkOnly: WithLinkOnly makes the process span a new root
// linked to the creation context.
func TestObserverLinkOnly(t *testing.T) {
	r := newRig(t, esotel.WithLinkOnly())
	c := propagation.MapCarrier{}
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "orders", Event: testEvent()}, c)
	end(nil)
	_, endP := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{Topic: "orders", Group: "g", Event: testEvent(), Attempt: 1}, c)
	endP(nil)
	s, p := r.ended("send orders")[0], r.ended("process orders")[0]
	if p.Parent().IsValid() || p.SpanContext().TraceID() == s.SpanContext().TraceID() {
		t.Errorf("process span parent %v trace %v: want a new root", p.Parent(), p.SpanContext().TraceID())
	}
	if !linkedTo(p, s.SpanContext()) {
		t.Error("process span does not link to the send span")
	}
}

// TestObserverAmbientSpan: a process span started inside another span is
// the child of the creation context and links to both.
func TestObserverAmbientSpan(t *testing.T) {
	r := newRig(t)
	c := propagation.MapCarrier{}
	_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "orders", Event: testEvent()}, c)
	end(nil)
	// A second publish span serves as the ambient span.
	amb, endAmb := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "other", Event: testEvent()}, propagation.MapCarrier{})
	_, endP := r.obs.StartProcess(amb, eventstream.ProcessInfo{Topic: "orders", Group: "g", Event: testEvent(), Attempt: 1}, c)
	endP(nil)
	endAmb(nil)
	s, p := r.ended("send orders")[0], r.ended("process orders")[0]
	ambient := trace.SpanContextFromContext(amb)
	if !childOf(p, s.SpanContext()) || !linkedTo(p, s.SpanContext()) || !linkedTo(p, ambient) {
		t.Errorf("process span parent %v links %v", p.Parent(), p.Links())
	}
}

// TestObserverNoCreationContext: an event without propagation fields gets
// a process span without links, parented by the ctx's span if any.
func TestObserverNoCreationContext(t *testing.T) {
	r := newRig(t)
	_, endP := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{Topic: "orders", Group: "g", Event: testEvent(), Attempt: 1}, propagation.MapCarrier{})
	endP(nil)
	p := r.ended("process orders")[0]
	if len(p.Links()) != 0 || p.Parent().IsValid() {
		t.Errorf("process span parent %v links %v, want a root without links", p.Parent(), p.Links())
	}
}

// TestObserverGlobalDefaults: without options esotel uses the global
// providers and propagator, which do nothing until the application sets
// them: no span is recorded and nothing is written to the carrier.
func TestObserverGlobalDefaults(t *testing.T) {
	obs := esotel.New()
	c := propagation.MapCarrier{}
	ctx, end := obs.StartPublish(context.Background(), eventstream.PublishInfo{Topic: "orders", Event: testEvent()}, c)
	end(nil)
	if trace.SpanFromContext(ctx).IsRecording() {
		t.Error("the global no-op provider recorded a span")
	}
	if len(c) != 0 {
		t.Errorf("the global propagator wrote %v; it should do nothing until set", c)
	}
	_, endP := obs.StartProcess(context.Background(), eventstream.ProcessInfo{Topic: "orders", Event: testEvent(), Attempt: 1}, c)
	endP(errors.New("x"))
}

// TestObserverMetrics checks instrument names, units, attributes and the
// advised buckets after direct hook calls.
func TestObserverMetrics(t *testing.T) {
	r := newRig(t)
	const n = 5
	for i := 0; i < n; i++ {
		c := propagation.MapCarrier{}
		_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{System: "kafka", Topic: "orders", Event: testEvent()}, c)
		end(nil)
		_, endP := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{System: "kafka", Topic: "orders", Group: "billing", Event: testEvent(), Attempt: 1}, c)
		endP(nil)
	}
	rm := r.collect(t)
	sendAttrs := []attribute.KeyValue{semconv.MessagingSystemKafka, semconv.MessagingDestinationName("orders"),
		semconv.MessagingOperationName("send")}
	durAttrs := append(sendAttrs[:len(sendAttrs):len(sendAttrs)], semconv.MessagingOperationTypeSend)
	procAttrs := []attribute.KeyValue{semconv.MessagingSystemKafka, semconv.MessagingDestinationName("orders"),
		semconv.MessagingOperationName("process"), semconv.MessagingConsumerGroupName("billing")}
	for _, c := range []struct {
		name, unit string
		attrs      []attribute.KeyValue
	}{
		{"messaging.client.sent.messages", "{message}", sendAttrs},
		{"messaging.client.consumed.messages", "{message}", procAttrs},
	} {
		m := findMetric(t, rm, c.name)
		if m.Unit != c.unit {
			t.Errorf("%s unit %q", c.name, m.Unit)
		}
		if got := sumInt(t, m, c.attrs...); got != n {
			t.Errorf("%s = %d, want %d", c.name, got, n)
		}
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			if !dp.Attributes.Equals(ptrSet(c.attrs)) {
				t.Errorf("%s attributes %v, want exactly %v", c.name, dp.Attributes.ToSlice(), c.attrs)
			}
		}
	}
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
	}{
		{"messaging.client.operation.duration", durAttrs},
		{"messaging.process.duration", procAttrs},
	} {
		m := findMetric(t, rm, c.name)
		if m.Unit != "s" {
			t.Errorf("%s unit %q", c.name, m.Unit)
		}
		count, bounds := histCount(t, m, c.attrs...)
		if count != n {
			t.Errorf("%s count %d, want %d", c.name, count, n)
		}
		if !equalBounds(bounds, durationBuckets) {
			t.Errorf("%s bounds %v, want %v", c.name, bounds, durationBuckets)
		}
		for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
			if !dp.Attributes.Equals(ptrSet(c.attrs)) {
				t.Errorf("%s attributes %v, want exactly %v", c.name, dp.Attributes.ToSlice(), c.attrs)
			}
		}
	}
	// No per-message attribute on any metric.
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
				for _, dp := range h.DataPoints {
					if _, bad := dp.Attributes.Value(semconv.MessagingMessageIDKey); bad {
						t.Errorf("%s carries messaging.message.id", m.Name)
					}
				}
			}
		}
	}
}

// TestObserveStats: the Stats of every observed bus become observable
// instruments; a stopped bus's counters stay in the totals.
func TestObserveStats(t *testing.T) {
	r := newRig(t)
	a := eventstream.Stats{Emitted: 10, Delivered: 8, Retried: 3, Failed: 2, DeadLettered: 1, InFlight: 2, Subscriptions: 1}
	b := eventstream.Stats{Emitted: 5, Delivered: 5, InFlight: 1, Subscriptions: 2}
	stopA := r.obs.ObserveStats(func() eventstream.Stats { return a })
	stopB := r.obs.ObserveStats(func() eventstream.Stats { return b })
	check := func(when string, want map[string]int64) {
		t.Helper()
		rm := r.collect(t)
		for name, v := range want {
			if got := sumInt(t, findMetric(t, rm, name)); got != v {
				t.Errorf("%s: %s = %d, want %d", when, name, got, v)
			}
		}
	}
	check("two buses", map[string]int64{
		"eventstream.events.emitted": 15, "eventstream.events.delivered": 13, "eventstream.events.retried": 3,
		"eventstream.events.failed": 2, "eventstream.events.dead_lettered": 1,
		"eventstream.events.in_flight": 3, "eventstream.subscriptions": 3,
	})
	a.InFlight, a.Subscriptions = 0, 0
	stopA()
	stopA() // idempotent
	b.Emitted = 6
	check("one bus stopped", map[string]int64{
		"eventstream.events.emitted": 16, "eventstream.events.delivered": 13,
		"eventstream.events.in_flight": 1, "eventstream.subscriptions": 2,
	})
	stopB()
	stopC := r.obs.ObserveStats(func() eventstream.Stats { return eventstream.Stats{Emitted: 1} })
	defer stopC()
	check("re-registered", map[string]int64{"eventstream.events.emitted": 17, "eventstream.subscriptions": 0})
}

func TestErrorType(t *testing.T) {
	type custom struct{ error }
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "_OTHER"},
		{errors.New("x"), "_OTHER"},
		{fmt.Errorf("a: %w", errors.New("x")), "_OTHER"},
		{fmt.Errorf("%w: boom", eventstream.ErrHandlerPanic), "handler_panic"},
		{fmt.Errorf("%w: bad json", eventstream.ErrDecode), "decode"},
		{eventstream.Permanent(fmt.Errorf("%w", eventstream.ErrDecode)), "decode"},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("x: %w", context.Canceled), "canceled"},
		{eventstream.Permanent(errors.New("x")), "_OTHER"},
		{eventstream.Permanent(fmt.Errorf("a: %w", custom{errors.New("x")})), "github.com/eventstream-go/eventstream/esotel_test.custom"},
		{typedErr{}, "typed"},
		{fmt.Errorf("w: %w", typedErr{}), "typed"},
		{custom{errors.New("x")}, "github.com/eventstream-go/eventstream/esotel_test.custom"},
	} {
		if got := esotel.ErrorType(c.err); got != c.want {
			t.Errorf("ErrorType(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func ptrSet(kv []attribute.KeyValue) *attribute.Set {
	s := attribute.NewSet(kv...)
	return &s
}

type typedErr struct{}

func (typedErr) Error() string     { return "typed" }
func (typedErr) ErrorType() string { return "typed" }

// seenSampler samples everything and keeps the attributes it was shown.
type seenSampler struct {
	mu   sync.Mutex
	seen map[string][]attribute.KeyValue
}

func (s *seenSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[p.Name] = p.Attributes
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
}

func (s *seenSampler) Description() string { return "seenSampler" }

// TestStartAttributes: by default samplers see no attributes (recorded
// spans get them all the same); WithStartAttributes shows them the
// destination, system, operation and group.
func TestStartAttributes(t *testing.T) {
	for _, withStart := range []bool{false, true} {
		sampler := &seenSampler{seen: map[string][]attribute.KeyValue{}}
		sr := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(sr))
		opts := []esotel.Option{esotel.WithTracerProvider(tp), esotel.WithPropagators(propagation.TraceContext{})}
		if withStart {
			opts = append(opts, esotel.WithStartAttributes())
		}
		obs := esotel.New(opts...)
		c := propagation.MapCarrier{}
		_, end := obs.StartPublish(context.Background(), eventstream.PublishInfo{System: "kafka", Topic: "orders", Event: testEvent()}, c)
		end(nil)
		_, endP := obs.StartProcess(context.Background(), eventstream.ProcessInfo{System: "kafka", Topic: "orders", Group: "billing", Event: testEvent(), Attempt: 1}, c)
		endP(nil)
		_ = tp.Shutdown(context.Background())

		want := map[string][]attribute.KeyValue{
			"send orders": {semconv.MessagingSystemKafka, semconv.MessagingDestinationName("orders"),
				semconv.MessagingOperationName("send"), semconv.MessagingOperationTypeSend},
			"process orders": {semconv.MessagingSystemKafka, semconv.MessagingDestinationName("orders"),
				semconv.MessagingOperationName("process"), semconv.MessagingOperationTypeProcess, semconv.MessagingConsumerGroupName("billing")},
		}
		spans := sr.Ended()
		if len(spans) != 2 {
			t.Fatalf("start attributes %v: %d spans", withStart, len(spans))
		}
		for _, sp := range spans {
			wantAttrs(t, sp, want[sp.Name()]...)
			seen := attribute.NewSet(sampler.seen[sp.Name()]...)
			if !withStart && seen.Len() != 0 {
				t.Errorf("default: the sampler saw %v for %s, want nothing", seen.ToSlice(), sp.Name())
			}
			if withStart && !matches(seen, want[sp.Name()]) {
				t.Errorf("WithStartAttributes: the sampler saw %v for %s, want %v", seen.ToSlice(), sp.Name(), want[sp.Name()])
			}
		}
	}
}

// TestObserverConcurrent drives one Observer from many goroutines over
// several destinations and error types (run with -race); every span and
// every count arrives.
func TestObserverConcurrent(t *testing.T) {
	r := newRig(t)
	const workers, perWorker = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				topic := fmt.Sprintf("t%d", i%5)
				c := propagation.MapCarrier{}
				_, end := r.obs.StartPublish(context.Background(), eventstream.PublishInfo{System: "kafka", Topic: topic, Event: testEvent()}, c)
				end(nil)
				_, endP := r.obs.StartProcess(context.Background(), eventstream.ProcessInfo{System: "kafka", Topic: topic, Group: "g", Event: testEvent(), Attempt: 1}, c)
				if i%3 == 0 {
					endP(fmt.Errorf("%w", context.Canceled))
				} else {
					endP(nil)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(r.spans.Ended()); n != 2*workers*perWorker {
		t.Errorf("%d spans ended, want %d", n, 2*workers*perWorker)
	}
	rm := r.collect(t)
	if n := sumInt(t, findMetric(t, rm, "messaging.client.consumed.messages")); n != workers*perWorker {
		t.Errorf("consumed.messages = %d, want %d", n, workers*perWorker)
	}
	canceled, _ := histCount(t, findMetric(t, rm, "messaging.process.duration"), semconv.ErrorTypeKey.String("canceled"))
	if want := uint64(workers * ((perWorker + 2) / 3)); canceled != want {
		t.Errorf("process.duration with error.type canceled: %d, want %d", canceled, want)
	}
}
