// Package inhouse is a small in-process queue written as a worked example of
// a custom eventstream.MQAdapter: the four methods of the interface and
// nothing else (no eventstream.RecordPublisher, no headers), with every rule
// of the adapter contract implemented in plain Go. The tests run
// adaptertest.Run against it.
//
// The model is the smallest one that is honest about at-least-once
// delivery: each topic is one append-only log, and each consumer group has a
// cursor (the next offset it has never received), the offsets its members
// received but did not acknowledge yet, and the offsets that must be
// delivered again because the member that received them went away.
//
// It keeps every message in memory for the life of the Queue; a real broker
// would persist its log and trim it.
package inhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
)

// Queue is the in-house queue. Create it with New; all methods are safe for
// concurrent use.
type Queue struct {
	mu      sync.Mutex
	closing bool              // guarded by mu
	topics  map[string]*topic // guarded by mu

	closed    chan struct{} // closed by Close: every subscription ends
	closeOnce sync.Once
	running   sync.WaitGroup // subscription goroutines
}

// topic is one log and the state of the groups that read it.
type topic struct {
	log    []*Message
	groups map[string]*group
	// changed is closed (and replaced) whenever a group may have something
	// new to hand out: a publish, or messages given back for redelivery.
	changed chan struct{}
}

// group is the per-consumer-group bookkeeping.
type group struct {
	next      int64                   // first offset never handed out
	inFlight  map[int64]*subscription // handed out, not acknowledged
	redeliver []int64                 // given back by ended members, ascending
}

// subscription is one member of a group.
type subscription struct {
	stop     chan struct{} // closed by cancel
	stopOnce sync.Once
	done     chan struct{} // closed when the member's goroutine returned
}

// Message is one delivered record. It is read-only and shared by every group
// that receives it.
type Message struct {
	topic  string
	offset int64
	value  []byte
	time   time.Time
}

// Topic returns the topic the message was published on.
func (m *Message) Topic() string { return m.topic }

// Value returns the bytes exactly as they were published.
func (m *Message) Value() []byte { return m.value }

// Timestamp returns when the queue stored the message.
func (m *Message) Timestamp() time.Time { return m.time }

// Key returns nil: this queue publishes through Publish only, without keys.
func (m *Message) Key() []byte { return nil }

// Offset returns the position of the message in its topic's log.
func (m *Message) Offset() int64 { return m.offset }

// New returns an empty queue.
func New() *Queue {
	return &Queue{topics: make(map[string]*topic), closed: make(chan struct{})}
}

// topicLocked returns topic name, creating it. q.mu must be held.
func (q *Queue) topicLocked(name string) *topic {
	t := q.topics[name]
	if t == nil {
		t = &topic{groups: make(map[string]*group), changed: make(chan struct{})}
		q.topics[name] = t
	}
	return t
}

// wake tells waiting members of every group of t to look again.
func (t *topic) wake() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Publish appends a copy of message to the topic's log. Once it returns nil
// the message is stored and will reach every group.
func (q *Queue) Publish(ctx context.Context, topicName string, message []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return fmt.Errorf("inhouse: publish to %q: %w", topicName, eventstream.ErrAdapterClosed)
	}
	t := q.topicLocked(topicName)
	t.log = append(t.log, &Message{
		topic:  topicName,
		offset: int64(len(t.log)),
		value:  append([]byte{}, message...), // the caller may reuse its slice
		time:   time.Now(),
	})
	t.wake()
	return nil
}

// Subscribe joins groupID on topic. A group that is new starts at the first
// message of the log. Members of one group share the group's cursor, so each
// message goes to one of them.
func (q *Queue) Subscribe(ctx context.Context, topicName, groupID string) (<-chan eventstream.Message, func(), error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return nil, nil, fmt.Errorf("inhouse: subscribe to %q: %w", topicName, eventstream.ErrAdapterClosed)
	}
	t := q.topicLocked(topicName)
	g := t.groups[groupID]
	if g == nil {
		g = &group{inFlight: make(map[int64]*subscription)}
		t.groups[groupID] = g
	}
	s := &subscription{stop: make(chan struct{}), done: make(chan struct{})}
	out := make(chan eventstream.Message) // unbuffered: nothing is held unseen
	q.running.Add(1)                      // under mu, so Close cannot miss it
	go q.deliver(ctx, t, g, s, out)
	cancel := func() {
		s.stopOnce.Do(func() { close(s.stop) })
		<-s.done
	}
	return out, cancel, nil
}

// deliver is the member's only goroutine: it hands out messages until the
// subscription ends, then gives back what it did not get acknowledged and
// closes the channel.
func (q *Queue) deliver(ctx context.Context, t *topic, g *group, s *subscription, out chan eventstream.Message) {
	defer q.running.Done()
	defer close(s.done)
	defer close(out)
	defer q.giveBack(t, g, s)
	for {
		q.mu.Lock()
		m, changed := q.takeLocked(t, g, s)
		q.mu.Unlock()
		var send chan eventstream.Message
		if m != nil {
			send = out // a nil channel never sends: then we only wait
		}
		select {
		case send <- m:
		case <-changed: // nil when we hold a message
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-q.closed:
			return
		}
	}
}

// takeLocked picks the group's next message for s: first anything to
// redeliver, then the next new offset. It records the message as in flight
// for s. With nothing to hand out it returns the channel to wait on.
func (q *Queue) takeLocked(t *topic, g *group, s *subscription) (*Message, chan struct{}) {
	var off int64
	switch {
	case len(g.redeliver) > 0:
		off, g.redeliver = g.redeliver[0], g.redeliver[1:]
	case g.next < int64(len(t.log)):
		off = g.next
		g.next++
	default:
		return nil, t.changed
	}
	g.inFlight[off] = s
	return t.log[off], nil
}

// giveBack makes every message s received but did not get acknowledged
// available to the group again, so another member (or the next one to
// join) receives it: this is what makes delivery at-least-once.
func (q *Queue) giveBack(t *topic, g *group, s *subscription) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for off, holder := range g.inFlight {
		if holder == s {
			delete(g.inFlight, off)
			g.redeliver = append(g.redeliver, off)
			n++
		}
	}
	if n > 0 {
		slices.Sort(g.redeliver)
		t.wake()
	}
}

// Ack records that groupID processed msg. It is idempotent, and an Ack that
// arrives after the receiving member went away still counts: the message is
// then taken off the redelivery list. It never touches another offset.
func (q *Queue) Ack(_ context.Context, groupID string, msg eventstream.Message) error {
	m, ok := msg.(*Message)
	if !ok {
		return fmt.Errorf("inhouse: ack of a %T, not a message of this queue", msg)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return fmt.Errorf("inhouse: ack: %w", eventstream.ErrAdapterClosed)
	}
	t := q.topics[m.topic]
	if t == nil || t.groups[groupID] == nil || m.offset >= int64(len(t.log)) || t.log[m.offset] != m {
		return errors.New("inhouse: ack of a message this queue did not deliver to the group")
	}
	g := t.groups[groupID]
	delete(g.inFlight, m.offset)
	if i, found := slices.BinarySearch(g.redeliver, m.offset); found {
		g.redeliver = slices.Delete(g.redeliver, i, i+1)
	}
	return nil
}

// Committed returns the group's committed offset on topic: every message
// below it has been acknowledged. It is what a restarted consumer would
// resume from, and what the example prints.
func (q *Queue) Committed(topicName, groupID string) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.topics[topicName]
	if t == nil || t.groups[groupID] == nil {
		return 0
	}
	g := t.groups[groupID]
	low := g.next
	for off := range g.inFlight {
		low = min(low, off)
	}
	if len(g.redeliver) > 0 {
		low = min(low, g.redeliver[0])
	}
	return low
}

// Close ends every subscription, waits until their channels are closed and
// drops the stored messages. It is idempotent.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.mu.Lock()
		q.closing = true
		q.mu.Unlock()
		close(q.closed)
		q.running.Wait()
		q.mu.Lock()
		q.topics = nil
		q.mu.Unlock()
	})
	return nil
}

var _ eventstream.MQAdapter = (*Queue)(nil)
