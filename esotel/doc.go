// Package esotel traces and measures an eventstream bus with OpenTelemetry.
//
//	cfg.Observer = esotel.New(
//		esotel.WithTracerProvider(tp),   // default: the global provider
//		esotel.WithMeterProvider(mp),    // default: the global provider
//		esotel.WithPropagators(prop),    // default: the global propagator
//	)
//
// Propagation needs a propagator: the global one does nothing until the
// application sets one, for example with
// otel.SetTextMapPropagator(propagation.TraceContext{}).
//
// # Spans
//
// Spans follow the OpenTelemetry messaging semantic conventions
// (semconv v1.43.0, messaging status Development):
//
//   - "send <topic>", kind PRODUCER, for every transport write: each Emit or
//     Publish (one per topic written) and each dead-letter write. Its context
//     is the event's creation context and travels with the event as the W3C
//     traceparent and tracestate fields (see eventstream.Carrier for how the
//     bus carries them). It is a child of the span in the Emit context, if
//     any. A dead-letter write links to the creation context of the event
//     being dead-lettered and, when its context holds no span, is also its
//     child, so that the dead-letter write shows in the original trace.
//   - "process <topic>", kind CONSUMER, for every handler attempt: a retry is
//     a new span, with eventstream.delivery.attempt telling which. It is a
//     child of the creation context that arrived with the event and links to
//     it (WithLinkOnly makes it a new root with the link only). The handler's
//     ctx holds it, so spans the handler starts are its children, and the
//     records the bus logs about the attempt (a panic, the final failure, a
//     failed dead-letter write) and the ctx of Config.OnFailure carry it: a
//     slog handler that reads the span from the context correlates them
//     with the trace.
//
// A failed write or attempt (a handler error, or a panic) sets the span
// status to Error with the error text and sets error.type to a short,
// low-cardinality name (see ErrorType).
//
// Span attributes, on every recorded span: messaging.system (the adapter's
// MessagingSystem, or "eventstream" for the in-process bus and adapters
// that do not name their system), messaging.destination.name,
// messaging.consumer.group.name, messaging.operation.name and
// messaging.operation.type; messaging.message.id and cloudevents.event_id
// (the CloudEvents id), cloudevents.event_source, cloudevents.event_type,
// cloudevents.event_spec_version; the event key
// (messaging.kafka.message.key on Kafka, eventstream.event.key elsewhere);
// messaging.destination.partition.id and the offset
// (messaging.kafka.offset on Kafka, eventstream.message.offset elsewhere)
// where the adapter knows them; and on dead-letter writes
// eventstream.dead_letter.topic, .group and .attempts describing the
// failed subscription. They are set just after the span starts, only when
// it is recorded, so that unsampled spans cost as little as possible;
// WithStartAttributes shows the per-destination ones to samplers too.
// Links are added the same way.
//
// # Metrics
//
//   - messaging.client.sent.messages ({message}): one per write, with
//     error.type when the write failed.
//   - messaging.client.operation.duration (s): the duration of each write.
//   - messaging.client.consumed.messages ({message}): one per message
//     delivered to a handler (its first attempt; retries are not counted
//     again).
//   - messaging.process.duration (s): the duration of each handler attempt,
//     with error.type when it failed.
//
// Both histograms use the bucket boundaries the conventions advise. The
// attributes are those of the conventions: messaging.system,
// messaging.operation.name, messaging.destination.name, on the consumer
// side messaging.consumer.group.name, on the operation duration
// messaging.operation.type, and error.type on failures; never per-message
// values.
//
// When the bus calls ObserveStats (it does for every Observer that implements
// eventstream.StatsObserver), the bus's Stats become observable instruments:
// eventstream.events.emitted, .delivered, .retried, .failed and
// .dead_lettered (counters, {event}), eventstream.events.in_flight
// ({event}) and eventstream.subscriptions ({subscription}), both
// up-down counters. With several buses sharing one Observer the instruments
// report their sum, and counters keep the final counts of closed buses.
//
// Prometheus users export these metrics with an OpenTelemetry exporter
// (for example go.opentelemetry.io/otel/exporters/prometheus, or OTLP to a
// collector or to Prometheus's OTLP receiver); with the usual name
// translation messaging.client.sent.messages becomes
// messaging_client_sent_messages_total and messaging.process.duration
// becomes messaging_process_duration_seconds.
package esotel
