package eventstream

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// memoryBus delivers events between goroutines of one process.
type memoryBus struct {
	*core
	seed maphash.Seed

	mu     sync.Mutex                      // guards the fields below and routes updates
	groups map[string]map[string]*memGroup // topic -> group name -> group
	live   map[*memSub]struct{}
	nextID uint64

	routes atomic.Pointer[map[string][]*memGroup] // read-only snapshot for Emit
}

// memGroup is a consumer group of one topic: its members compete for events.
type memGroup struct {
	name    string
	members atomic.Pointer[[]*memSub]
	rr      atomic.Uint64
}

// memSub is one memory subscription.
type memSub struct {
	bus          *memoryBus
	topic, group string
	cfg          SubscribeConfig
	h            Handler
	grp          *memGroup
	pool         *pool[*Event]
	ctx          context.Context // handler context
	cancel       context.CancelFunc

	mu     sync.RWMutex  // senders hold it for reading; closing for writing
	closed bool          // no more sends (guarded by mu)
	noSend chan struct{} // closed when senders must give up on this sub
	off    sync.Once
}

func (s *memSub) Topic() string { return s.topic }
func (s *memSub) Group() string { return s.group }

func newMemoryBus(c *core) *memoryBus {
	b := &memoryBus{
		core:   c,
		seed:   maphash.MakeSeed(),
		groups: make(map[string]map[string]*memGroup),
		live:   make(map[*memSub]struct{}),
	}
	b.routes.Store(&map[string][]*memGroup{})
	c.ser = c.cfg.Memory.Serializer
	c.deliver = b.deliver
	return b
}

// deliver queues e for one member of every group of its topic.
func (b *memoryBus) deliver(ctx context.Context, e *Event) error {
	b.emitted.Add(1)
	for _, g := range (*b.routes.Load())[e.Topic] {
		if err := b.deliverToGroup(ctx, g, e); err != nil {
			return err
		}
	}
	return nil
}

// deliverToGroup queues e for one live member of g. When every member has
// gone the group no longer exists and the event is not for it.
func (b *memoryBus) deliverToGroup(ctx context.Context, g *memGroup, e *Event) error {
	for {
		members := *g.members.Load()
		if len(members) == 0 {
			return nil
		}
		var s *memSub
		if len(members) == 1 {
			s = members[0]
		} else if e.Key != "" {
			s = members[maphash.String(b.seed, e.Key)%uint64(len(members))]
		} else {
			s = members[g.rr.Add(1)%uint64(len(members))]
		}
		ok, err := s.enqueue(ctx, e)
		if err != nil || ok {
			return err
		}
		if b.closed.Load() {
			return ErrClosed
		}
		// s is leaving its group; its removal is already visible, so the
		// next pass sees the new membership.
	}
}

// enqueue queues e for s, waiting while the queue is full. It reports false
// when s stopped accepting events.
func (s *memSub) enqueue(ctx context.Context, e *Event) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, nil
	}
	q := s.pool.queue(e.Key)
	select {
	case q <- e:
		return true, nil
	default:
	}
	select {
	case q <- e:
		return true, nil
	case <-s.noSend:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// On implements Bus.
func (b *memoryBus) On(topic string, h Handler, opts ...SubscribeOption) (Subscription, error) {
	cfg, err := subscribeConfig(b.cfg.Subscribe, topic, h, opts)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, ErrClosed
	}
	b.nextID++
	group := cfg.ConsumerGroup
	if group == "" {
		group = "_sub" + strconv.FormatUint(b.nextID, 10)
	}
	s := &memSub{bus: b, topic: topic, group: group, cfg: cfg, h: h, noSend: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.pool = newPool(cfg.Concurrency, cfg.BufferSize, s.work)

	byName := b.groups[topic]
	if byName == nil {
		byName = make(map[string]*memGroup)
		b.groups[topic] = byName
	}
	g := byName[group]
	if g == nil {
		g = &memGroup{name: group}
		g.members.Store(&[]*memSub{})
		byName[group] = g
	}
	s.grp = g
	members := append(append([]*memSub(nil), *g.members.Load()...), s)
	g.members.Store(&members)
	b.live[s] = struct{}{}
	b.publishRoutesLocked()
	b.subs.Add(1)
	return s, nil
}

// publishRoutesLocked rebuilds the Emit snapshot. b.mu must be held.
func (b *memoryBus) publishRoutesLocked() {
	r := make(map[string][]*memGroup, len(b.groups))
	for topic, byName := range b.groups {
		for _, g := range byName {
			if len(*g.members.Load()) > 0 {
				r[topic] = append(r[topic], g)
			}
		}
	}
	b.routes.Store(&r)
}

// work handles one event on a worker goroutine.
func (s *memSub) work(e *Event) {
	attempts, err := s.bus.handle(s.ctx, s.pool.stopCh, s.h, e, s.cfg.RetryPolicy)
	if err != nil {
		s.bus.failed1(s, e, attempts, err)
	}
}

// failed1 reports an event s could not handle and dead-letters it when s
// has a dead-letter topic.
func (b *memoryBus) failed1(s *memSub, e *Event, attempts int, err error) {
	var st stopped
	if errors.As(err, &st) {
		err = st.err
	}
	f := &Failure{Event: e, Topic: s.topic, Group: s.group, Attempts: attempts, Err: err}
	b.fail(context.WithoutCancel(s.ctx), f)
	if s.cfg.DeadLetterTopic == "" {
		return
	}
	dl := &Event{Topic: s.cfg.DeadLetterTopic, Type: "eventstream.deadletter", Key: e.Key, Data: f}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
	defer cancel()
	if derr := b.Publish(ctx, dl); derr != nil {
		b.log.Error("eventstream: dead-letter failed", "topic", s.cfg.DeadLetterTopic, "event_id", e.ID, "error", derr)
		return
	}
	b.deadLettered.Add(1)
}

// Off implements Bus.
func (b *memoryBus) Off(sub Subscription) error {
	s, ok := sub.(*memSub)
	if !ok || s == nil || s.bus != b {
		return ErrUnknownSubscription
	}
	first := false
	s.off.Do(func() { first = true })
	if !first {
		return nil
	}
	b.mu.Lock()
	if _, live := b.live[s]; !live { // Close got there first
		b.mu.Unlock()
		return nil
	}
	delete(b.live, s)
	b.removeMemberLocked(s)
	b.mu.Unlock()

	s.stopSending()
	s.pool.stop()
	return b.finishOff(s.pool.isWorker(), func() error { return s.finish(ErrUnsubscribed) })
}

func (b *memoryBus) removeMemberLocked(s *memSub) {
	g := s.grp
	old := *g.members.Load()
	members := make([]*memSub, 0, len(old))
	for _, m := range old {
		if m != s {
			members = append(members, m)
		}
	}
	g.members.Store(&members)
	if len(members) == 0 {
		delete(b.groups[s.topic], s.group)
		if len(b.groups[s.topic]) == 0 {
			delete(b.groups, s.topic)
		}
	}
	b.publishRoutesLocked()
}

// stopSending makes s refuse new events and waits for senders to leave.
func (s *memSub) stopSending() {
	close(s.noSend)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// finish waits for the workers of a stopped pool (drain timeout, then
// cancellation), then hands queued events to the rest of the group or
// reports them with reason.
func (s *memSub) finish(reason error) error {
	b := s.bus
	defer b.subs.Add(-1)
	var err error
	if !s.pool.wait(b.cfg.DrainTimeout) {
		s.cancel()
		if !s.pool.wait(b.cfg.DrainTimeout) {
			err = fmt.Errorf("%w: subscription %s/%s: handlers still running", ErrDrainTimeout, s.topic, s.group)
			b.log.Error("eventstream: handlers ignore cancellation", "topic", s.topic, "group", s.group)
		}
	}
	s.cancel()
	for _, e := range s.pool.leftovers() {
		if reason == ErrUnsubscribed && !b.closed.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.DrainTimeout)
			derr := b.deliverToGroup(ctx, s.grp, e)
			cancel()
			if derr == nil && len(*s.grp.members.Load()) > 0 {
				continue
			}
		}
		b.failed1(s, e, 0, reason)
	}
	return err
}

// Close implements Bus.
func (b *memoryBus) Close() error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	subs := make([]*memSub, 0, len(b.live))
	for s := range b.live {
		subs = append(subs, s)
	}
	clear(b.live)
	b.mu.Unlock()

	// Queued events are handled: stop accepting, close the queues and let
	// the workers empty them within the drain timeout.
	for _, s := range subs {
		s.off.Do(func() {})
		s.stopSending()
		s.pool.close()
	}
	deadline := time.Now().Add(b.cfg.DrainTimeout)
	var errs []error
	for _, s := range subs {
		if !s.pool.wait(time.Until(deadline)) {
			s.pool.stop()
		}
	}
	for _, s := range subs {
		if err := s.finish(ErrClosed); err != nil {
			errs = append(errs, err)
		}
	}
	b.bg.Wait()
	return errors.Join(errs...)
}
