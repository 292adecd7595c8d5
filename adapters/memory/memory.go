package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
)

// ErrTopicFull is wrapped by Publish and PublishRecord when the topic already
// retains Config.Retention messages or Config.RetentionBytes bytes.
var ErrTopicFull = errors.New("memory: topic full")

// Defaults applied by New to zero Config fields.
const (
	// DefaultPartitions is the number of partitions per topic when
	// Config.Partitions is 0.
	DefaultPartitions = 4
	// DefaultRetention is the maximum number of messages retained per topic
	// when Config.Retention is 0.
	DefaultRetention = 1 << 20
	// DefaultRetentionBytes is the maximum number of key, value and header
	// bytes retained per topic when Config.RetentionBytes is 0.
	DefaultRetentionBytes = 256 << 20
)

// Config configures an Adapter. The zero Config is valid.
type Config struct {
	// Partitions is the number of partitions of every topic: the maximum
	// number of subscriptions of one group that receive messages at the same
	// time. 0 means DefaultPartitions; negative is invalid.
	Partitions int
	// Retention is the maximum number of messages a topic retains. A message
	// is released once every group that ever subscribed to its topic has
	// acknowledged it; when the topic is full, publishing fails with
	// ErrTopicFull. 0 means DefaultRetention; negative is invalid.
	Retention int
	// RetentionBytes bounds the key, value and header bytes a topic retains,
	// like Retention bounds the messages: a publish that would exceed it
	// fails with ErrTopicFull (a single message larger than the bound is
	// refused even on an empty topic). 0 means DefaultRetentionBytes;
	// negative is invalid.
	RetentionBytes int
	// Logger receives debug logs about subscriptions and partition
	// assignments. Nil discards them.
	Logger *slog.Logger
}

// Adapter is an in-process message broker implementing
// eventstream.MQAdapter and eventstream.RecordPublisher. Create it with New.
// All methods are safe for concurrent use.
type Adapter struct {
	partitions int
	retention  int
	retBytes   int
	log        *slog.Logger

	// done is closed by Close; every subscription watches it.
	done chan struct{}

	// mu guards everything below, and all topic, group and subscription
	// state reachable from it. One lock keeps the broker easy to reason
	// about; nothing slow happens while it is held.
	mu     sync.Mutex
	closed bool
	topics map[string]*topic
	subs   map[*subscription]struct{}
}

var (
	_ eventstream.MQAdapter       = (*Adapter)(nil)
	_ eventstream.RecordPublisher = (*Adapter)(nil)
)

// New returns an Adapter configured by cfg. It returns an error wrapping
// eventstream.ErrInvalidConfig when a field has an invalid value.
func New(cfg Config) (*Adapter, error) {
	if cfg.Partitions < 0 {
		return nil, fmt.Errorf("memory: Partitions is %d, must not be negative: %w", cfg.Partitions, eventstream.ErrInvalidConfig)
	}
	if cfg.RetentionBytes < 0 {
		return nil, fmt.Errorf("memory: RetentionBytes is %d, must not be negative: %w", cfg.RetentionBytes, eventstream.ErrInvalidConfig)
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("memory: Retention is %d, must not be negative: %w", cfg.Retention, eventstream.ErrInvalidConfig)
	}
	a := &Adapter{
		partitions: cfg.Partitions,
		retention:  cfg.Retention,
		retBytes:   cfg.RetentionBytes,
		log:        cfg.Logger,
		done:       make(chan struct{}),
		topics:     make(map[string]*topic),
		subs:       make(map[*subscription]struct{}),
	}
	if a.partitions == 0 {
		a.partitions = DefaultPartitions
	}
	if a.retention == 0 {
		a.retention = DefaultRetention
	}
	if a.retBytes == 0 {
		a.retBytes = DefaultRetentionBytes
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// Publish stores message on topic without a key or headers, timestamped with
// the current time. It is PublishRecord with only Record.Value set.
func (a *Adapter) Publish(ctx context.Context, topic string, message []byte) error {
	return a.PublishRecord(ctx, topic, eventstream.Record{Value: message})
}

// PublishRecord stores r on topic. A non-nil r.Key selects the partition by
// hash, so records with equal keys are delivered in publish order; records
// without a key are spread round-robin over the partitions. A zero r.Time is
// replaced by the current time. The adapter keeps its own copy of r's bytes
// and headers.
//
// It fails with an error wrapping ErrTopicFull when the topic retains
// Config.Retention messages or the record would exceed Config.RetentionBytes,
// and with one wrapping
// eventstream.ErrAdapterClosed after Close.
func (a *Adapter) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	if topic == "" {
		return fmt.Errorf("memory: publish: %w", eventstream.ErrEmptyTopic)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: publish to %q: %w", topic, err)
	}
	rec := record{
		key:     bytes.Clone(r.Key), // Clone keeps nil as nil
		value:   bytes.Clone(r.Value),
		headers: cloneHeaders(r.Headers),
		time:    r.Time,
	}
	if rec.time.IsZero() {
		rec.time = time.Now().Round(0) // wall clock only, like a broker timestamp
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("memory: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	t := a.topicLocked(topic)
	if t.retained >= a.retention {
		return fmt.Errorf("memory: publish to %q: %d messages retained: %w", topic, t.retained, ErrTopicFull)
	}
	if size := recordSize(rec); t.bytes+size > a.retBytes {
		return fmt.Errorf("memory: publish to %q: %d bytes retained, %d more would exceed RetentionBytes %d: %w",
			topic, t.bytes, size, a.retBytes, ErrTopicFull)
	}
	t.append(rec)
	return nil
}

// Subscribe joins consumer group groupID on topic. Messages are sent on the
// returned channel, which is unbuffered. The subscription ends, and the
// channel is closed, when cancel is called, when ctx is done or when the
// adapter is closed; cancel waits until the subscription's goroutine has
// returned and may be called any number of times.
//
// Subscriptions of the same group share the topic's partitions, so each
// message goes to one of them. A group subscribing for the first time starts
// at the earliest retained message; later subscriptions resume after the
// group's acknowledged messages.
func (a *Adapter) Subscribe(ctx context.Context, topic, groupID string) (<-chan eventstream.Message, func(), error) {
	if topic == "" {
		return nil, nil, fmt.Errorf("memory: subscribe: %w", eventstream.ErrEmptyTopic)
	}
	if groupID == "" {
		return nil, nil, fmt.Errorf("memory: subscribe to %q: %w", topic, eventstream.ErrNoConsumerGroup)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("memory: subscribe to %q: %w", topic, err)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, nil, fmt.Errorf("memory: subscribe to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	t := a.topicLocked(topic)
	g := t.groupLocked(groupID)
	s := &subscription{
		a:      a,
		topic:  t,
		group:  g,
		ctx:    ctx,
		ch:     make(chan eventstream.Message),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		cursor: make([]int64, len(t.parts)),
	}
	a.subs[s] = struct{}{}
	g.members = append(g.members, s)
	t.rebalance(g)
	a.log.Debug("memory: subscription joined", "topic", topic, "group", groupID, "members", len(g.members))

	go s.run()
	return s.ch, s.cancel, nil
}

// Ack records that groupID has processed msg, which must have been delivered
// to groupID by a subscription of this adapter. Acknowledging a message twice,
// or after its subscription ended, is harmless. Ack fails with an error
// wrapping eventstream.ErrAdapterClosed after Close.
func (a *Adapter) Ack(ctx context.Context, groupID string, msg eventstream.Message) error {
	m, ok := msg.(*Message)
	if !ok || m == nil || m.adapter != a {
		return fmt.Errorf("memory: ack: %T is not a message delivered by this adapter", msg)
	}
	if m.group != groupID {
		return fmt.Errorf("memory: ack: message was delivered to group %q, not %q", m.group, groupID)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: ack: %w", err)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("memory: ack: %w", eventstream.ErrAdapterClosed)
	}
	// The topic and group exist: the message was delivered to the group,
	// and neither is ever removed before Close.
	t := a.topics[m.topic]
	g := t.groups[groupID]
	if g.ack(m.partition, m.rec.offset) {
		t.trim(m.partition)
	}
	return nil
}

// Close ends every subscription, waits until their channels are closed and
// releases all retained messages. It is idempotent and always returns nil.
func (a *Adapter) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	close(a.done)
	subs := make([]*subscription, 0, len(a.subs))
	for s := range a.subs {
		subs = append(subs, s)
	}
	a.mu.Unlock()

	// The subscriptions need the lock to leave their group, so wait without
	// holding it.
	for _, s := range subs {
		<-s.done
	}

	a.mu.Lock()
	a.topics = nil
	a.mu.Unlock()
	return nil
}

// topicLocked returns the topic called name, creating it on first use.
func (a *Adapter) topicLocked(name string) *topic {
	t, ok := a.topics[name]
	if !ok {
		t = newTopic(name, a.partitions)
		a.topics[name] = t
	}
	return t
}

// cloneHeaders copies h; empty header maps become nil.
func cloneHeaders(h map[string]string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	return maps.Clone(h)
}

// MessagingSystem names the messaging system for eventstream.Observer
// hooks: "memory" (eventstream.SystemNamer).
func (a *Adapter) MessagingSystem() string { return "memory" }

var _ eventstream.SystemNamer = (*Adapter)(nil)
