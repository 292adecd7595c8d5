package memory

import (
	"bytes"
	"context"
	"maps"
	"sync"

	"github.com/eventstream-go/eventstream"
)

// subscription is one member of a consumer group. A single goroutine (run)
// delivers its messages and, when the subscription ends, leaves the group and
// closes the channel.
type subscription struct {
	a     *Adapter
	topic *topic
	group *group
	ctx   context.Context

	ch       chan eventstream.Message // closed by run when it returns
	stop     chan struct{}            // closed by cancel
	stopOnce sync.Once
	done     chan struct{} // closed after run has returned

	// Guarded by Adapter.mu.
	//
	// cursor[p] is the next offset to deliver from partition p; it is only
	// meaningful while the group assigns p to this subscription (see
	// topic.rebalance, which resets it on assignment).
	cursor []int64
	// nextPart is where the search for the next message starts, so that
	// partitions take turns.
	nextPart int
}

// cancel ends the subscription and waits until its goroutine has returned.
// It is idempotent and safe for concurrent use.
func (s *subscription) cancel() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
}

// ended reports whether the subscription must stop.
func (s *subscription) ended() bool {
	select {
	case <-s.stop:
		return true
	case <-s.ctx.Done():
		return true
	case <-s.a.done:
		return true
	default:
		return false
	}
}

// run delivers messages until the subscription ends.
func (s *subscription) run() {
	defer close(s.done)
	defer s.leave()

	for !s.ended() {
		s.a.mu.Lock()
		msg, ok := s.nextLocked()
		wake := s.topic.changed
		s.a.mu.Unlock()

		if !ok {
			// Nothing to deliver: wait for a publish or a rebalance.
			select {
			case <-wake:
			case <-s.stop:
			case <-s.ctx.Done():
			case <-s.a.done:
			}
			continue
		}

		// Blocking here is what bounds delivery by the consumer's pace. If
		// the subscription ends instead, msg stays unacknowledged and the
		// next owner of its partition receives it.
		select {
		case s.ch <- msg.copy():
		case <-s.stop:
		case <-s.ctx.Done():
		case <-s.a.done:
		}
	}
}

// nextLocked picks the next message to deliver from the partitions the group
// assigns to s, skipping messages the group already acknowledged, and moves
// the cursor past it.
func (s *subscription) nextLocked() (*Message, bool) {
	t, g := s.topic, s.group
	n := len(t.parts)
	for i := range n {
		p := (s.nextPart + i) % n
		if g.owner[p] != s {
			continue
		}
		part := t.parts[p]
		off := max(s.cursor[p], g.committed[p], part.base)
		for off < part.end() && g.isAcked(p, off) {
			off++
		}
		s.cursor[p] = off
		if off == part.end() {
			continue
		}
		s.cursor[p] = off + 1
		s.nextPart = (p + 1) % n
		return &Message{
			topic:     t.name,
			partition: p,
			rec:       part.log[off-part.base],
			adapter:   s.a,
			group:     g.name,
		}, true
	}
	return nil, false
}

// leave removes s from its group, hands its partitions to the remaining
// members and closes the channel.
func (s *subscription) leave() {
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	g := s.group
	for i, m := range g.members {
		if m == s {
			g.members = append(g.members[:i:i], g.members[i+1:]...)
			break
		}
	}
	delete(s.a.subs, s)
	s.topic.rebalance(g)
	close(s.ch)
	s.a.log.Debug("memory: subscription left", "topic", s.topic.name, "group", g.name, "members", len(g.members))
}

// copy returns m with private copies of its bytes and headers, so that the
// receiver may not change what other deliveries see. The stored record
// itself is never modified, so copying needs no lock.
func (m *Message) copy() *Message {
	c := *m
	c.rec.key = bytes.Clone(m.rec.key)
	c.rec.value = bytes.Clone(m.rec.value)
	if m.rec.headers != nil {
		c.rec.headers = maps.Clone(m.rec.headers)
	}
	return &c
}
