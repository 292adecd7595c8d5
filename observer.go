package eventstream

import "context"

// Observer receives hooks around every publish and every handler call, e.g. to trace and
// measure them (package esotel implements it with OpenTelemetry). A nil Config.Observer
// costs nothing (no allocation, no call). Methods are called concurrently.
type Observer interface {
	// StartPublish is called once per transport write of an event: each Emit/Publish (once
	// per topic written) and each dead-letter write (info.DeadLetter non-nil), before the
	// write. It returns the context for the write and a function the bus calls exactly once
	// with the write's result. It may Set propagation fields (traceparent, tracestate) on carrier;
	// they travel with the event.
	StartPublish(ctx context.Context, info PublishInfo, carrier Carrier) (context.Context, func(error))
	// StartProcess is called before every handler attempt (a retry is a new call). carrier
	// holds the propagation fields that arrived with the event (read-only). The returned
	// context becomes the handler's ctx (and the ctx of the bus's log records about that
	// attempt); the returned function is called exactly once with the attempt's outcome:
	// nil, the handler's error, or an error wrapping ErrHandlerPanic for a panic.
	StartProcess(ctx context.Context, info ProcessInfo, carrier Carrier) (context.Context, func(error))
}

// Carrier holds the propagation fields that travel with an event, kept apart from
// Event.Headers. Its method set matches go.opentelemetry.io/otel/propagation.TextMapCarrier.
//
// How the fields travel: in memory mode in process with the event; in distributed mode
// as the plain broker headers traceparent and tracestate when the adapter publishes
// records with headers (RecordPublisher) and its messages carry headers (HeaderCarrier),
// otherwise as the CloudEvents distributed-tracing extension attributes of the structured
// envelope. On receipt broker headers win over envelope attributes, and these keys never
// appear in Event.Headers.
type Carrier interface {
	// Get returns the value of key, or "" if it is absent.
	Get(key string) string
	// Set stores value under key, replacing any earlier value.
	Set(key, value string)
	// Keys lists the keys present.
	Keys() []string
}

// PublishInfo describes one write.
type PublishInfo struct {
	// System names the messaging system: the adapter's MessagingSystem() (see
	// SystemNamer), "eventstream" in memory mode, "" if unknown.
	System string
	// Topic is the topic written.
	Topic string
	// Event is the event written; read-only.
	Event *Event
	// DeadLetter is non-nil for a dead-letter write: what is being dead-lettered.
	DeadLetter *Failure
	// Origin holds, for dead-letter writes, the propagation fields the failed event
	// arrived with; nil otherwise.
	Origin Carrier
}

// ProcessInfo describes one handler attempt.
type ProcessInfo struct {
	// System names the messaging system, as in PublishInfo; Topic and Group identify
	// the subscription.
	System, Topic, Group string
	// Event is the event handled; read-only.
	Event *Event
	// Attempt is 1 for the first call, 2 for the first retry, and so on.
	Attempt int
	// Partition and Offset locate the message where it implements Positioned
	// (HasOffset true); otherwise they are zero and HasOffset is false.
	Partition int
	Offset    int64
	HasOffset bool
}

// StatsObserver is implemented by Observers that also want the bus's Stats (e.g. as
// observable gauges). New calls ObserveStats once; the bus calls the returned func at Close.
type StatsObserver interface {
	ObserveStats(stats func() Stats) (stop func())
}

// SystemNamer is an optional MQAdapter capability naming its messaging system
// ("kafka", "rabbitmq", "nats", "redis", ...), used in PublishInfo/ProcessInfo.System.
type SystemNamer interface{ MessagingSystem() string }

// Positioned is an optional Message capability: the message's place in its
// partitioned log (Kafka partition and offset, for example). The bus reports it in
// ProcessInfo and in the dead-letter headers.
type Positioned interface {
	// Partition is the partition (or shard) the message was read from.
	Partition() int
	// Offset is the message's position within that partition.
	Offset() int64
}

// fields is the bus's Carrier: the few propagation fields of one event.
type fields struct{ kv []string } // key, value, key, value, ...

// Get implements Carrier.
func (f *fields) Get(key string) string {
	for i := 0; i+1 < len(f.kv); i += 2 {
		if f.kv[i] == key {
			return f.kv[i+1]
		}
	}
	return ""
}

// Set implements Carrier.
func (f *fields) Set(key, value string) {
	for i := 0; i+1 < len(f.kv); i += 2 {
		if f.kv[i] == key {
			f.kv[i+1] = value
			return
		}
	}
	f.kv = append(f.kv, key, value)
}

// Keys implements Carrier.
func (f *fields) Keys() []string {
	keys := make([]string, 0, len(f.kv)/2)
	for i := 0; i < len(f.kv); i += 2 {
		keys = append(keys, f.kv[i])
	}
	return keys
}

// noFields is the read-only Carrier of an event without propagation fields.
type noFields struct{}

func (noFields) Get(string) string  { return "" }
func (noFields) Set(string, string) {}
func (noFields) Keys() []string     { return nil }

// carrier returns the propagation fields e arrived with.
func (e *Event) carrier() Carrier {
	if e.trace == nil {
		return noFields{}
	}
	return e.trace
}

// traceFields returns the two fields that travel on the wire.
func (f *fields) traceFields() (parent, state string) {
	if f == nil {
		return "", ""
	}
	return f.Get("traceparent"), f.Get("tracestate")
}

// fieldsOf makes the fields of a received event; nil when there are none.
func fieldsOf(parent, state string) *fields {
	if parent == "" && state == "" {
		return nil
	}
	f := &fields{}
	if parent != "" {
		f.Set("traceparent", parent)
	}
	if state != "" {
		f.Set("tracestate", state)
	}
	return f
}
