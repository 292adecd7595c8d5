package eventstream

import "fmt"

// SubscribeOption changes one setting of a subscription made with On,
// overriding Config.Subscribe. Invalid values make On fail with an error
// wrapping ErrInvalidOption.
type SubscribeOption func(*SubscribeConfig)

// WithConsumerGroup puts the subscription in consumer group group.
func WithConsumerGroup(group string) SubscribeOption {
	return func(s *SubscribeConfig) { s.ConsumerGroup = group }
}

// WithConcurrency sets the number of worker goroutines; n must be at least 1.
func WithConcurrency(n int) SubscribeOption {
	return func(s *SubscribeConfig) { s.Concurrency = n }
}

// WithBufferSize sets the queue size of the subscription; n must be at
// least 1.
func WithBufferSize(n int) SubscribeOption {
	return func(s *SubscribeConfig) { s.BufferSize = n }
}

// WithRetryPolicy sets the retry policy; p must be non-nil and valid. The bus
// keeps a copy, so later changes to *p have no effect.
func WithRetryPolicy(p *RetryPolicy) SubscribeOption {
	return func(s *SubscribeConfig) {
		if p == nil {
			s.RetryPolicy = nil
			return
		}
		c := *p
		s.RetryPolicy = &c
	}
}

// WithDeadLetterTopic sends the dead letters of events that failed for good
// to topic instead of DeadLetterTopicName(topic, group).
func WithDeadLetterTopic(topic string) SubscribeOption {
	return func(s *SubscribeConfig) { s.DeadLetterTopic = topic }
}

// subscribeConfig applies opts to a copy of the defaults and validates.
func subscribeConfig(defaults SubscribeConfig, topic string, h Handler, opts []SubscribeOption) (SubscribeConfig, error) {
	if topic == "" {
		return defaults, ErrEmptyTopic
	}
	if h == nil {
		return defaults, ErrNilHandler
	}
	s := defaults // s.RetryPolicy is the bus's own copy, or an option's copy
	for _, o := range opts {
		if o == nil {
			return s, fmt.Errorf("%w: nil SubscribeOption", ErrInvalidOption)
		}
		o(&s)
	}
	return s, s.validate()
}

// EmitOption sets a field of an event being emitted.
type EmitOption func(*Event)

// WithKey sets the event key: events with the same key are handled in emit
// order by every subscription, and in distributed mode land on the same
// partition.
func WithKey(key string) EmitOption {
	return func(e *Event) { e.Key = key }
}

// WithHeader adds one header to the event. In distributed mode headers
// travel as CloudEvents extension attributes (and also as broker headers when
// the adapter implements RecordPublisher), so names must be made of lowercase
// ASCII letters and digits (at most 20 is recommended) and must not be a
// CloudEvents attribute name such as "id" or "data", and values must be valid
// UTF-8; otherwise Emit returns an error wrapping ErrInvalidOption.
func WithHeader(name, value string) EmitOption {
	return func(e *Event) {
		if e.Headers == nil {
			e.Headers = make(map[string]string, 1)
		}
		e.Headers[name] = value
	}
}

// WithHeaders adds every entry of h to the event headers (see WithHeader).
func WithHeaders(h map[string]string) EmitOption {
	return func(e *Event) {
		if len(h) == 0 {
			return
		}
		if e.Headers == nil {
			e.Headers = make(map[string]string, len(h))
		}
		for k, v := range h {
			e.Headers[k] = v
		}
	}
}

// WithType sets the event type (CloudEvents "type"), which otherwise is the
// Go type name of the payload.
func WithType(t string) EmitOption {
	return func(e *Event) { e.Type = t }
}
