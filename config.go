package eventstream

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"
)

// Mode selects the Bus implementation New builds.
type Mode int

const (
	// ModeMemory passes events between goroutines of this process.
	ModeMemory Mode = iota
	// ModeDistributed passes events through a message broker via
	// Config.Distributed.MQAdapter.
	ModeDistributed
)

// String returns "memory" or "distributed".
func (m Mode) String() string {
	switch m {
	case ModeMemory:
		return "memory"
	case ModeDistributed:
		return "distributed"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Config configures a Bus. Start from DefaultConfig or
// DefaultDistributedConfig and change what you need; New validates it.
type Config struct {
	// Mode selects memory or distributed delivery.
	Mode Mode
	// Source is the CloudEvents "source" of events this bus emits.
	// Default "eventstream".
	Source string
	// Logger receives failures (exhausted retries, dead-letters, undecodable
	// messages) and lifecycle problems; records about a handler attempt are
	// logged with that attempt's context. Nil means slog.Default(). The
	// library never prints anywhere else.
	Logger *slog.Logger
	// Subscribe holds the defaults for every On call: the worker pool size
	// (Concurrency) and queue size (BufferSize), the consumer group, the retry
	// policy and the dead-letter topic. Subscribe options override them per
	// subscription.
	Subscribe SubscribeConfig
	// DrainTimeout bounds how long Off and Close wait for in-flight handlers
	// (and, on Close, for queued events) before cancelling the handlers'
	// context; handlers then get one more DrainTimeout. Default 10s.
	DrainTimeout time.Duration
	// OnFailure, if set, is called for every event that could not be
	// handled: retries exhausted, permanent errors, undecodable messages and
	// events that were queued for a subscription that went away. It runs on
	// the worker goroutine, so it must not block for long; a panic in it is
	// recovered and logged. Its ctx is that of the last handler attempt
	// (holding the Observer's span, if any), without its cancellation.
	// Failures are also logged and counted in Stats whether or not
	// OnFailure is set.
	OnFailure func(ctx context.Context, f *Failure)
	// Observer, if set, receives hooks around every publish and every handler
	// attempt (tracing, metrics); see Observer. Nil costs nothing. If it also
	// implements StatsObserver, New calls ObserveStats once and Close stops it.
	Observer Observer
	// Memory configures memory mode.
	Memory MemoryConfig
	// Distributed configures distributed mode.
	Distributed DistributedConfig
}

// SubscribeConfig is the set of per-subscription settings. Config.Subscribe
// gives the defaults; SubscribeOption functions change them for one On call.
type SubscribeConfig struct {
	// ConsumerGroup names the group of the subscription. Every group receives
	// every event of the topic; subscriptions in one group compete. In memory
	// mode an empty group makes the subscription a group of its own; in
	// distributed mode a group is required.
	ConsumerGroup string
	// Concurrency is the number of worker goroutines of the subscription
	// (the size of its worker pool), from 1 to MaxConcurrency. Events with
	// the same key are handled in order by one worker; with Concurrency 1
	// all events are handled in order. Default 1.
	Concurrency int
	// BufferSize is the most events queued for the subscription's workers,
	// from 1 to MaxBufferSize, and more than Concurrency when Concurrency is
	// above 1 (each worker has a small lane for keyed events, the rest is
	// shared). When the queue is full Emit waits (memory mode) or the
	// subscription stops reading from the broker (distributed mode).
	// Default 1024.
	BufferSize int
	// RetryPolicy controls handler retries. Default DefaultRetryPolicy(). The
	// bus keeps a copy: changing *RetryPolicy after New or On has no effect.
	RetryPolicy *RetryPolicy
	// DeadLetterTopic receives the dead letters of events whose handling
	// failed for good, in both modes; empty means
	// DeadLetterTopicName(topic, group) (in memory mode with the generated
	// group name of a subscription without group). See the package
	// documentation for the one dead-letter shape.
	DeadLetterTopic string
}

// Limits of SubscribeConfig values. They bound the goroutines and the memory
// one On call can commit (the queues are allocated up front).
const (
	// MaxConcurrency is the largest Concurrency.
	MaxConcurrency = 1024
	// MaxBufferSize is the largest BufferSize.
	MaxBufferSize = 1 << 20
)

// MemoryConfig configures memory mode.
type MemoryConfig struct {
	// Serializer is used by Event.Unmarshal when the payload cannot be
	// assigned directly. Default JSONSerializer.
	Serializer Serializer
}

// DistributedConfig configures distributed mode.
type DistributedConfig struct {
	// MQAdapter connects the bus to the broker. Required. The bus does not
	// close it: the caller that created it closes it after the bus.
	MQAdapter MQAdapter
	// Serializer encodes payloads. Default JSONSerializer. Publisher and
	// subscriber must use serializers with the same content type.
	Serializer Serializer
	// BinaryMode publishes events in CloudEvents binary content mode: the
	// attributes travel as "ce_" broker headers (the datacontenttype as
	// "content-type") and the message value is the encoded payload alone, so
	// subscribers skip parsing a JSON envelope. It needs an MQAdapter that
	// implements RecordPublisher and whose messages implement HeaderCarrier
	// (adapters/kafka and adapters/memory do); New rejects an adapter without
	// RecordPublisher, but cannot see the message type: messages without
	// HeaderCarrier would be read as bare payloads, losing the attributes.
	// Subscribers read both modes whatever this setting.
	BinaryMode bool
}

// DefaultConfig returns the configuration of a memory bus.
func DefaultConfig() Config {
	return Config{
		Mode:         ModeMemory,
		Source:       "eventstream",
		DrainTimeout: 10 * time.Second,
		Subscribe: SubscribeConfig{
			Concurrency: 1,
			BufferSize:  1024,
			RetryPolicy: DefaultRetryPolicy(),
		},
		Memory: MemoryConfig{Serializer: JSONSerializer{}},
	}
}

// DefaultDistributedConfig returns the configuration of a distributed bus.
// Distributed.MQAdapter must still be set.
func DefaultDistributedConfig() Config {
	c := DefaultConfig()
	c.Mode = ModeDistributed
	c.Distributed.Serializer = JSONSerializer{}
	return c
}

// normalize fills zero values with defaults and validates c.
func (c Config) normalize() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Mode != ModeMemory && c.Mode != ModeDistributed {
		return bad("unknown %v", c.Mode)
	}
	if c.Source == "" {
		c.Source = "eventstream"
	}
	if !utf8.ValidString(c.Source) {
		return bad("Source %q is not valid UTF-8", c.Source)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.DrainTimeout < 0 {
		return bad("DrainTimeout %v is negative", c.DrainTimeout)
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	s := &c.Subscribe
	if s.Concurrency == 0 {
		s.Concurrency = 1
	}
	if s.BufferSize == 0 {
		s.BufferSize = 1024
	}
	if s.RetryPolicy == nil {
		s.RetryPolicy = DefaultRetryPolicy()
	} else {
		p := *s.RetryPolicy // the caller keeps theirs
		s.RetryPolicy = &p
	}
	if err := s.validate(); err != nil {
		return c, fmt.Errorf("%w: Subscribe: %w", ErrInvalidConfig, err)
	}
	if c.Memory.Serializer == nil {
		c.Memory.Serializer = JSONSerializer{}
	}
	if c.Distributed.Serializer == nil {
		c.Distributed.Serializer = JSONSerializer{}
	}
	if c.Mode == ModeDistributed && c.Distributed.MQAdapter == nil {
		return bad("distributed mode needs Distributed.MQAdapter")
	}
	if _, ok := c.Distributed.MQAdapter.(RecordPublisher); c.Mode == ModeDistributed && c.Distributed.BinaryMode && !ok {
		return bad("Distributed.BinaryMode needs an MQAdapter that implements RecordPublisher (%T does not)", c.Distributed.MQAdapter)
	}
	return c, nil
}

func (s *SubscribeConfig) validate() error {
	switch {
	case s.Concurrency < 1 || s.Concurrency > MaxConcurrency:
		return fmt.Errorf("%w: Concurrency %d must be within [1, %d]", ErrInvalidOption, s.Concurrency, MaxConcurrency)
	case s.BufferSize < 1 || s.BufferSize > MaxBufferSize:
		return fmt.Errorf("%w: BufferSize %d must be within [1, %d]", ErrInvalidOption, s.BufferSize, MaxBufferSize)
	case s.Concurrency > 1 && s.BufferSize <= s.Concurrency:
		return fmt.Errorf("%w: BufferSize %d must exceed Concurrency %d", ErrInvalidOption, s.BufferSize, s.Concurrency)
	case s.RetryPolicy == nil:
		return fmt.Errorf("%w: nil RetryPolicy", ErrInvalidOption)
	}
	if err := s.RetryPolicy.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	return nil
}

// DeadLetterTopicName is the default dead-letter topic of a subscription:
// topic + "." + group + ".dlq".
func DeadLetterTopicName(topic, group string) string {
	return topic + "." + group + ".dlq"
}
