package eventstream

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// memTransport is the transport of memory mode: events go straight from
// Emit into the queues of the subscriptions, one member of every consumer
// group of the topic.
type memTransport struct {
	b    *bus
	seed maphash.Seed

	mu     sync.Mutex                      // guards groups and routes updates
	groups map[string]map[string]*memGroup // topic -> group name -> group
	routes atomic.Pointer[map[string][]*memGroup]
}

// memGroup is a consumer group of one topic: its members compete for events.
type memGroup struct {
	name    string
	members atomic.Pointer[[]*subscription]
	rr      atomic.Uint64
}

func newMemTransport(b *bus) *memTransport {
	t := &memTransport{b: b, seed: maphash.MakeSeed(), groups: make(map[string]map[string]*memGroup)}
	t.routes.Store(&map[string][]*memGroup{})
	return t
}

func (t *memTransport) system() string         { return "eventstream" }
func (t *memTransport) serializer() Serializer { return t.b.cfg.Memory.Serializer }

// publish queues e for one member of every group of its topic.
func (t *memTransport) publish(ctx context.Context, e *Event) error {
	for _, g := range (*t.routes.Load())[e.Topic] {
		if _, err := t.deliverToGroup(ctx, g, e, nil); err != nil {
			return err
		}
	}
	return nil
}

// deliverToGroup queues e for one live member of g other than except (nil:
// any member) and reports whether one took it. When every member has gone
// the group no longer exists and the event is not for it.
func (t *memTransport) deliverToGroup(ctx context.Context, g *memGroup, e *Event, except *subscription) (bool, error) {
	for {
		members := *g.members.Load()
		if except != nil && slices.Contains(members, except) {
			members = slices.DeleteFunc(slices.Clone(members), func(m *subscription) bool { return m == except })
		}
		if len(members) == 0 {
			return false, nil
		}
		var s *subscription
		if len(members) == 1 {
			s = members[0]
		} else if e.Key != "" {
			s = members[maphash.String(t.seed, e.Key)%uint64(len(members))]
		} else {
			s = members[g.rr.Add(1)%uint64(len(members))]
		}
		ok, err := s.enqueue(ctx, delivery{ev: e}, e.Key, nil)
		if err != nil || ok {
			return ok, err
		}
		// s is leaving its group; its removal is already visible, so the
		// next pass sees the new membership.
	}
}

// attach adds s to its group.
func (t *memTransport) attach(s *subscription) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	byName := t.groups[s.topic]
	if byName == nil {
		byName = make(map[string]*memGroup)
		t.groups[s.topic] = byName
	}
	g := byName[s.group]
	if g == nil {
		g = &memGroup{name: s.group}
		g.members.Store(&[]*subscription{})
		byName[s.group] = g
	}
	members := append(append([]*subscription(nil), *g.members.Load()...), s)
	g.members.Store(&members)
	t.publishRoutesLocked()
	return nil
}

// detach removes s from its group.
func (t *memTransport) detach(s *subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[s.topic][s.group]
	if g == nil {
		return
	}
	old := *g.members.Load()
	members := make([]*subscription, 0, len(old))
	for _, m := range old {
		if m != s {
			members = append(members, m)
		}
	}
	g.members.Store(&members)
	if len(members) == 0 {
		delete(t.groups[s.topic], s.group)
		if len(t.groups[s.topic]) == 0 {
			delete(t.groups, s.topic)
		}
	}
	t.publishRoutesLocked()
}

// publishRoutesLocked rebuilds the Emit snapshot. t.mu must be held.
func (t *memTransport) publishRoutesLocked() {
	r := make(map[string][]*memGroup, len(t.groups))
	for topic, byName := range t.groups {
		for _, g := range byName {
			if len(*g.members.Load()) > 0 {
				r[topic] = append(r[topic], g)
			}
		}
	}
	t.routes.Store(&r)
}

func (t *memTransport) release(*subscription)       {}
func (t *memTransport) ack(*subscription, delivery) {}

// requeue hands each delivery to another member of s's group, or reports it
// as a failure with reason when none is left (or the bus is closing).
func (t *memTransport) requeue(s *subscription, ds []delivery, attempts int, reason error) {
	for _, d := range ds {
		if !t.b.closed.Load() {
			t.mu.Lock()
			g := t.groups[s.topic][s.group]
			t.mu.Unlock()
			if g != nil {
				ctx, cancel := context.WithTimeout(context.Background(), t.b.cfg.DrainTimeout)
				// Never back into s: it is stopping, and what it still
				// holds would be reported as never attempted.
				ok, err := t.deliverToGroup(ctx, g, d.ev, s)
				cancel()
				if err == nil && ok {
					continue
				}
			}
		}
		s.fail(s.ctx, d, attempts, reason)
	}
}

// deadLetter emits the dead letter of d on topic: a copy of the event with
// the dead-letter headers.
func (t *memTransport) deadLetter(ctx context.Context, s *subscription, topic string, d delivery, f *Failure) error {
	dl := deadLetterEvent(t.b, topic, d.ev, nil, f)
	if tf := dlTrace(ctx); tf != nil {
		dl.trace = tf
	}
	return t.publish(ctx, dl)
}
