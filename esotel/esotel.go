package esotel

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventstream-go/eventstream"
)

// ScopeName is the instrumentation scope of the tracer and meter esotel
// uses: its import path.
const ScopeName = "github.com/eventstream-go/eventstream/esotel"

// Version is the version of this instrumentation, reported with ScopeName.
func Version() string { return "0.1.0" }

// systemMemory is messaging.system for an unnamed system: the in-process
// bus, or an adapter that does not implement eventstream.SystemNamer.
const systemMemory = "eventstream"

// Attribute keys esotel adds where the conventions have none.
const (
	// AttemptKey is the handler attempt of a process span: 1, then 2 for
	// the first retry, and so on.
	AttemptKey = attribute.Key("eventstream.delivery.attempt")
	// EventKeyKey is the event key on systems other than Kafka (on Kafka
	// it is messaging.kafka.message.key).
	EventKeyKey = attribute.Key("eventstream.event.key")
	// OffsetKey is the message offset on systems other than Kafka (on
	// Kafka it is messaging.kafka.offset).
	OffsetKey = attribute.Key("eventstream.message.offset")
	// DeadLetterTopicKey, DeadLetterGroupKey and DeadLetterAttemptsKey
	// describe, on a dead-letter send span, the subscription whose event
	// is being dead-lettered and how many handler calls it made.
	DeadLetterTopicKey    = attribute.Key("eventstream.dead_letter.topic")
	DeadLetterGroupKey    = attribute.Key("eventstream.dead_letter.group")
	DeadLetterAttemptsKey = attribute.Key("eventstream.dead_letter.attempts")
)

// config is what the options set.
type config struct {
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	prop       propagation.TextMapPropagator
	linkOnly   bool
	startAttrs bool
}

// Option configures New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider sets the TracerProvider spans are created with. The
// default, or a nil tp, is the global provider (otel.GetTracerProvider),
// which creates no spans until the application installs one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets the MeterProvider the instruments are created
// with. The default, or a nil mp, is the global provider
// (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithPropagators sets the propagator that writes the trace context into
// published events and reads it from received ones. The default, or a nil
// p, is the global propagator (otel.GetTextMapPropagator), which propagates
// nothing until the application sets one: use for example
// propagation.TraceContext{} (W3C traceparent and tracestate).
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.prop = p })
}

// WithLinkOnly makes every process span the root of a new trace that links
// to the event's creation context, instead of its child (the default).
// The conventions recommend it when handlers run inside another span or
// when producer and consumer traces should stay apart.
func WithLinkOnly() Option {
	return optionFunc(func(c *config) { c.linkOnly = true })
}

// WithStartAttributes passes the attributes that do not change from event
// to event (messaging.system, messaging.destination.name,
// messaging.operation.name and .type, messaging.consumer.group.name) when
// a span starts, so that samplers see them, as the conventions suggest.
// By default samplers see the span name ("send orders", "process orders")
// and kind only, and the attributes are set right after the start on
// spans that are recorded: a span nobody samples then costs no attribute
// at all (BenchmarkHooks measured WithStartAttributes at about 0.5 µs and
// 580 bytes more per event, send and process, on a 2-vCPU machine).
// Samplers that decide on the trace ID or the parent, such as the SDK's
// ParentBased and TraceIDRatioBased, never look at attributes.
func WithStartAttributes() Option {
	return optionFunc(func(c *config) { c.startAttrs = true })
}

// Observer traces and measures an eventstream bus. Set it as
// eventstream.Config.Observer; it implements eventstream.Observer and
// eventstream.StatsObserver. One Observer may serve several buses. Its
// methods are safe for concurrent use.
type Observer struct {
	tracer     trace.Tracer
	prop       propagation.TextMapPropagator
	linkOnly   bool
	startAttrs bool
	inst       instruments
	dests      atomic.Pointer[map[destKey]*dest] // copied on write, under destMu
	destMu     sync.Mutex
	stats      statsState
}

var (
	_ eventstream.Observer      = (*Observer)(nil)
	_ eventstream.StatsObserver = (*Observer)(nil)
)

// New returns an Observer configured by opts. Errors creating instruments
// are reported to otel.Handle; the instruments concerned then do nothing.
func New(opts ...Option) *Observer {
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = otel.GetTextMapPropagator()
	}
	o := &Observer{
		tracer: c.tp.Tracer(ScopeName,
			trace.WithInstrumentationVersion(Version()),
			trace.WithSchemaURL(semconv.SchemaURL)),
		prop:       c.prop,
		linkOnly:   c.linkOnly,
		startAttrs: c.startAttrs,
	}
	meter := c.mp.Meter(ScopeName,
		metric.WithInstrumentationVersion(Version()),
		metric.WithSchemaURL(semconv.SchemaURL))
	o.inst = newInstruments(meter)
	o.stats.meter = meter
	return o
}

// operation is the messaging operation of a span.
type operation uint8

const (
	opSend operation = iota
	opProcess
)

// destKey identifies what spans and metrics share: everything but the
// per-message values.
type destKey struct {
	system, topic, group string
	op                   operation
}

// dest holds what is precomputed per destKey, so that the per-event path
// builds no options when nothing is sampled.
type dest struct {
	name      string // span name
	kafka     bool
	kv        []attribute.KeyValue // span attributes common to every event
	atStart   bool                 // kv is in startOpts
	startOpts []trace.SpanStartOption
	rootOpts  []trace.SpanStartOption // startOpts plus trace.WithNewRoot
	count     *attrSet                // attributes of the counter (sent or consumed)
	dur       *attrSet                // attributes of the duration histogram
}

// attrSet is a precomputed metric attribute set, and its variants with
// error.type.
type attrSet struct {
	set     attribute.Set
	add     []metric.AddOption
	rec     []metric.RecordOption
	errMu   sync.Mutex
	errOpts map[string]metric.MeasurementOption // by error.type
}

func newAttrSet(kv ...attribute.KeyValue) *attrSet {
	a := &attrSet{set: attribute.NewSet(kv...), errOpts: map[string]metric.MeasurementOption{}}
	m := metric.WithAttributeSet(a.set)
	a.add = []metric.AddOption{m}
	a.rec = []metric.RecordOption{m}
	return a
}

// dest returns the precomputed values of k. The lookup takes no lock and
// allocates nothing; a new key copies the map.
func (o *Observer) dest(k destKey) *dest {
	if m := o.dests.Load(); m != nil {
		if d, ok := (*m)[k]; ok {
			return d
		}
	}
	return o.addDest(k)
}

func (o *Observer) addDest(k destKey) *dest {
	o.destMu.Lock()
	defer o.destMu.Unlock()
	old := o.dests.Load()
	if old != nil {
		if d, ok := (*old)[k]; ok {
			return d
		}
	}
	system := k.system
	if system == "" {
		system = systemMemory
	}
	d := &dest{kafka: system == "kafka"}
	sys := semconv.MessagingSystemKey.String(system)
	dst := semconv.MessagingDestinationName(k.topic)
	var kv []attribute.KeyValue
	kind := trace.SpanKindProducer
	switch k.op {
	case opSend:
		d.name = "send " + k.topic
		name := semconv.MessagingOperationName("send")
		// messaging.operation.type belongs to the operation duration
		// only, among the metrics.
		d.count = newAttrSet(sys, name, dst)
		d.dur = newAttrSet(sys, name, dst, semconv.MessagingOperationTypeSend)
		kv = []attribute.KeyValue{sys, dst, name, semconv.MessagingOperationTypeSend}
	case opProcess:
		d.name = "process " + k.topic
		kind = trace.SpanKindConsumer
		name := semconv.MessagingOperationName("process")
		kv = []attribute.KeyValue{sys, dst, name, semconv.MessagingOperationTypeProcess}
		m := []attribute.KeyValue{sys, name, dst}
		if k.group != "" {
			grp := semconv.MessagingConsumerGroupName(k.group)
			kv = append(kv, grp)
			m = append(m, grp)
		}
		d.count = newAttrSet(m...)
		d.dur = d.count
	}
	d.kv = kv
	d.startOpts = []trace.SpanStartOption{trace.WithSpanKind(kind)}
	if o.startAttrs {
		d.atStart = true
		d.startOpts = append(d.startOpts, trace.WithAttributes(kv...))
	}
	d.rootOpts = append(d.startOpts[:len(d.startOpts):len(d.startOpts)], trace.WithNewRoot())
	next := make(map[destKey]*dest, 1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[k] = d
	o.dests.Store(&next)
	return d
}

// errOpt returns the metric option for a's attributes plus error.type et.
func (a *attrSet) errOpt(et string) metric.MeasurementOption {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	m, ok := a.errOpts[et]
	if !ok {
		kv := append(a.set.ToSlice(), semconv.ErrorTypeKey.String(et))
		m = metric.WithAttributeSet(attribute.NewSet(kv...))
		if len(a.errOpts) < 64 { // error types are few; bound the cache anyway
			a.errOpts[et] = m
		}
	}
	return m
}

// StartPublish implements eventstream.Observer: it starts the send span,
// writes its context into carrier, and returns the function that ends it.
func (o *Observer) StartPublish(ctx context.Context, info eventstream.PublishInfo, carrier eventstream.Carrier) (context.Context, func(error)) {
	d := o.dest(destKey{system: info.System, topic: info.Topic, op: opSend})
	var origin trace.SpanContext
	if info.DeadLetter != nil && info.Origin != nil {
		origin = trace.SpanContextFromContext(o.prop.Extract(context.Background(), info.Origin))
		if origin.IsValid() && !trace.SpanContextFromContext(ctx).IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, origin)
		}
	}
	start := o.now(ctx, o.inst.opDuration)
	ctx, span := o.tracer.Start(ctx, d.name, d.startOpts...)
	if span.IsRecording() {
		if origin.IsValid() {
			span.AddLink(trace.Link{SpanContext: origin})
		}
		kv := eventAttrs(d, info.Event, 3)
		if f := info.DeadLetter; f != nil {
			kv = append(kv,
				DeadLetterTopicKey.String(f.Topic),
				DeadLetterGroupKey.String(f.Group),
				DeadLetterAttemptsKey.Int(f.Attempts))
		}
		span.SetAttributes(kv...)
	} else if start.IsZero() && !o.inst.sent.Enabled(ctx) {
		if carrier != nil {
			o.prop.Inject(ctx, carrier)
		}
		return ctx, endNothing
	}
	if carrier != nil {
		o.prop.Inject(ctx, carrier)
	}
	return ctx, func(err error) {
		if err != nil {
			et := ErrorType(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorTypeKey.String(et))
			o.inst.sent.Add(ctx, 1, d.count.errOpt(et))
			if !start.IsZero() {
				o.inst.opDuration.Record(ctx, time.Since(start).Seconds(), d.dur.errOpt(et))
			}
		} else {
			o.inst.sent.Add(ctx, 1, d.count.add...)
			if !start.IsZero() {
				o.inst.opDuration.Record(ctx, time.Since(start).Seconds(), d.dur.rec...)
			}
		}
		span.End()
	}
}

// StartProcess implements eventstream.Observer: it reads the creation
// context from carrier, starts the process span as its child (or, with
// WithLinkOnly, as a new root) linked to it, and returns the handler's
// context, which holds the span, and the function that ends it.
func (o *Observer) StartProcess(ctx context.Context, info eventstream.ProcessInfo, carrier eventstream.Carrier) (context.Context, func(error)) {
	d := o.dest(destKey{system: info.System, topic: info.Topic, group: info.Group, op: opProcess})
	opts := d.startOpts
	var creation, ambient trace.SpanContext
	if carrier != nil {
		ambient = trace.SpanContextFromContext(ctx)
		pctx := o.prop.Extract(ctx, carrier)
		creation = trace.SpanContextFromContext(pctx)
		if creation.IsValid() && !creation.Equal(ambient) {
			if o.linkOnly {
				opts = d.rootOpts
			}
		} else {
			creation = trace.SpanContext{}
		}
		ctx = pctx // also carries what else the propagator read, such as baggage
	}
	if info.Attempt <= 1 {
		o.inst.consumed.Add(ctx, 1, d.count.add...)
	}
	start := o.now(ctx, o.inst.processDuration)
	ctx, span := o.tracer.Start(ctx, d.name, opts...)
	if span.IsRecording() {
		// Links are added after the start, so that spans nobody samples
		// cost no link: samplers do not see them.
		if creation.IsValid() {
			span.AddLink(trace.Link{SpanContext: creation})
			if ambient.IsValid() && !o.linkOnly {
				span.AddLink(trace.Link{SpanContext: ambient})
			}
		}
		kv := eventAttrs(d, info.Event, 3)
		kv = append(kv, AttemptKey.Int(info.Attempt))
		if info.HasOffset {
			kv = append(kv, semconv.MessagingDestinationPartitionID(strconv.Itoa(info.Partition)))
			if d.kafka {
				kv = append(kv, semconv.MessagingKafkaOffsetKey.Int64(info.Offset))
			} else {
				kv = append(kv, OffsetKey.Int64(info.Offset))
			}
		}
		span.SetAttributes(kv...)
	} else if start.IsZero() {
		return ctx, endNothing
	}
	return ctx, func(err error) {
		if err != nil {
			et := ErrorType(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorTypeKey.String(et))
			if !start.IsZero() {
				o.inst.processDuration.Record(ctx, time.Since(start).Seconds(), d.dur.errOpt(et))
			}
		} else if !start.IsZero() {
			o.inst.processDuration.Record(ctx, time.Since(start).Seconds(), d.dur.rec...)
		}
		span.End()
	}
}

// now returns the current time when h records measurements, and the zero
// time (meaning: do not measure) when it does not.
func (o *Observer) now(ctx context.Context, h metric.Float64Histogram) time.Time {
	if !h.Enabled(ctx) {
		return time.Time{}
	}
	return time.Now()
}

// endNothing ends a span that is not recorded when nothing is measured.
func endNothing(error) {}

// eventAttrs returns the attributes of a recorded span: the common ones
// unless the span got them at its start, then the per-event ones, with
// room for extra more.
func eventAttrs(d *dest, e *eventstream.Event, extra int) []attribute.KeyValue {
	kv := make([]attribute.KeyValue, 0, len(d.kv)+6+extra)
	if !d.atStart {
		kv = append(kv, d.kv...)
	}
	if e == nil {
		return kv
	}
	kv = append(kv,
		semconv.MessagingMessageID(e.ID),
		semconv.CloudEventsEventID(e.ID),
		semconv.CloudEventsEventSource(e.Source),
		semconv.CloudEventsEventType(e.Type),
		semconv.CloudEventsEventSpecVersion("1.0"))
	if e.Key != "" {
		if d.kafka {
			kv = append(kv, semconv.MessagingKafkaMessageKey(e.Key))
		} else {
			kv = append(kv, EventKeyKey.String(e.Key))
		}
	}
	return kv
}
