package rabbitmq

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Partitioned mode: how the N partition queues of a group are shared out.
//
// Every subscription holds a member slot: an exclusive, auto-deleted queue
// "es.<topic>/<group>/member/<i>" (the lowest i free), which the broker
// removes with the connection that declared it, so a member that dies loses
// its slot. Every Config.RebalanceInterval a subscription lists the slots
// in use (a passive declare answers NOT_FOUND for a free slot and
// RESOURCE_LOCKED for another connection's), and with M members, the one of
// rank r among them consumes the partitions p with p mod M == r, each on a
// channel of its own. A partition it no longer owns is released gracefully:
// it stops handing out that partition's messages, waits (at most
// Config.OperationTimeout) until the ones already handed out are
// acknowledged, and closes the channel, so the broker requeues what was
// prefetched, in order, for the next owner. The partition queues keep their
// single active consumer: while two members both believe they own a
// partition (their views of the slots differ for up to an interval), the
// one registered later waits until the other lets go. So per-key order
// holds through joins, leaves and crashes, and the partitions spread over
// the members within about one interval.

// partConsumer consumes one partition queue on its own channel.
type partConsumer struct {
	part int
	gen  *generation
	stop chan struct{} // closed to stop handing out messages
	done chan struct{} // closed when the forwarding goroutine returned
	lost chan struct{} // closed when the deliveries ended by themselves
}

// memberSlotName returns the queue name of member slot i.
func memberSlotName(topic, group string, i int) (string, error) {
	q, err := queueName(topic, group, -1)
	if err != nil {
		return "", err
	}
	n := fmt.Sprintf("%s/member/%d", q, i)
	if len(n) > 255 {
		return "", fmt.Errorf("%w: member slot queue name for topic %q, group %q is longer than 255 bytes", ErrInvalidName, topic, group)
	}
	return n, nil
}

// slotKey identifies a slot among the adapter's subscriptions.
type slotKey struct {
	topic, group string
	slot         int
}

// acquireSlot takes the lowest free member slot below limit (or below any
// limit when limit < 0) on conn and returns it.
func (s *subscription) acquireSlot(conn *amqp.Connection, limit int) (int, error) {
	for i := 0; limit < 0 || i < limit; i++ {
		if i >= maxSlots {
			return -1, fmt.Errorf("no free member slot among %d", maxSlots)
		}
		ok, err := s.tryLockSlot(conn, i)
		if err != nil {
			return -1, err
		}
		if ok {
			return i, nil
		}
	}
	return -1, nil
}

// maxSlots bounds the member slots of one group.
const maxSlots = 4096

// tryLockSlot declares slot i exclusively on conn unless another
// subscription of this adapter holds it.
func (s *subscription) tryLockSlot(conn *amqp.Connection, i int) (bool, error) {
	name, err := memberSlotName(s.topic, s.group, i)
	if err != nil {
		return false, err
	}
	k := slotKey{s.topic, s.group, i}
	s.a.slotMu.Lock()
	defer s.a.slotMu.Unlock()
	if s.a.slots[k] {
		return false, nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	_, err = ch.QueueDeclare(name, false, true, true, false, nil)
	if err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.ResourceLocked {
			return false, nil
		}
		_ = ch.Close()
		return false, fmt.Errorf("declare member slot %q: %w", name, err)
	}
	_ = ch.Close()
	s.a.slots[k] = true
	return true, nil
}

// releaseSlot deletes slot i (the broker deletes it anyway when conn
// closes).
func (s *subscription) releaseSlot(conn *amqp.Connection, i int) {
	name, _ := memberSlotName(s.topic, s.group, i)
	s.a.slotMu.Lock()
	delete(s.a.slots, slotKey{s.topic, s.group, i})
	s.a.slotMu.Unlock()
	if conn.IsClosed() {
		return
	}
	_ = withChannel(conn, func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(name, false, false, false)
		return err
	})
}

// members returns the member slots in use, in order, probing slots until
// four consecutive ones are free beyond own.
func (s *subscription) members(conn *amqp.Connection, own int) ([]int, error) {
	var held []int
	free := 0
	for i := 0; i < maxSlots && (free < 4 || i <= own); i++ {
		if i == own {
			held = append(held, i)
			free = 0
			continue
		}
		name, err := memberSlotName(s.topic, s.group, i)
		if err != nil {
			return nil, err
		}
		ch, err := conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("open channel: %w", err)
		}
		_, err = ch.QueueDeclarePassive(name, false, true, true, false, nil)
		var ae *amqp.Error
		switch {
		case err == nil: // declared on this connection
			_ = ch.Close()
			s.a.slotMu.Lock()
			mine := s.a.slots[slotKey{s.topic, s.group, i}]
			if !mine {
				// Left behind by a subscription whose delete failed: no
				// member owns it, so it must not take a share. (Deleted
				// under slotMu, so that no subscription of this adapter
				// takes it meanwhile.)
				_ = withChannel(conn, func(ch *amqp.Channel) error {
					_, err := ch.QueueDelete(name, false, false, false)
					return err
				})
			}
			s.a.slotMu.Unlock()
			if mine { // another subscription of this adapter
				held = append(held, i)
				free = 0
			} else {
				free++
			}
		case errors.As(err, &ae) && ae.Code == amqp.ResourceLocked:
			held = append(held, i)
			free = 0
		case errors.As(err, &ae) && ae.Code == amqp.NotFound:
			free++
		default:
			_ = ch.Close()
			return nil, fmt.Errorf("probe member slot %q: %w", name, err)
		}
	}
	return held, nil
}

// owned returns the partitions of the member of slot own among members.
func owned(n int, members []int, own int) []int {
	r := slices.Index(members, own)
	m := len(members)
	if r < 0 || m == 0 {
		return nil
	}
	var out []int
	for p := r; p < n; p += m {
		out = append(out, p)
	}
	return out
}

// partSession runs partitioned consumption on conn until the connection is
// lost or the subscription ends. delivered reports whether any message
// arrived.
func (s *subscription) partSession(conn *amqp.Connection) (delivered bool, err error) {
	if err := withChannel(conn, func(ch *amqp.Channel) error { return s.a.declareGroupOn(ch, s.topic, s.group) }); err != nil {
		return false, err
	}
	slot, err := s.acquireSlot(conn, -1)
	if err != nil {
		return false, err
	}
	defer func() { s.releaseSlot(conn, slot) }()

	parts := map[int]*partConsumer{}
	defer func() {
		for _, pc := range parts {
			if pc.forwarded() {
				delivered = true
			}
			s.stopPart(pc, false)
		}
	}()
	tick := time.NewTicker(s.a.cfg.RebalanceInterval)
	defer tick.Stop()
	for {
		if conn.IsClosed() {
			return delivered, amqp.ErrClosed
		}
		if members, err := s.members(conn, slot); err != nil {
			if conn.IsClosed() {
				return delivered, err
			}
			s.a.log.Warn("rabbitmq: listing the group's members failed; keeping the current partitions", "topic", s.topic, "group", s.group, "error", err)
		} else {
			// Move to a lower free slot so that slots stay dense.
			if lower := firstGap(members); lower >= 0 && lower < slot {
				if ns, err := s.acquireSlot(conn, slot); err == nil && ns >= 0 {
					s.releaseSlot(conn, slot)
					members[slices.Index(members, slot)] = ns
					slices.Sort(members)
					slot = ns
				}
			}
			want := owned(len(s.queues), members, slot)
			for p, pc := range parts {
				if !slices.Contains(want, p) {
					s.a.log.Debug("rabbitmq: releasing partition", "topic", s.topic, "group", s.group, "partition", p, "members", len(members))
					if pc.forwarded() {
						delivered = true
					}
					s.stopPart(pc, true)
					delete(parts, p)
				}
			}
			for _, p := range want {
				if parts[p] != nil {
					continue
				}
				pc, err := s.startPart(conn, p)
				if err != nil {
					if conn.IsClosed() {
						return delivered, err
					}
					s.a.log.Warn("rabbitmq: consuming a partition failed; retrying", "topic", s.topic, "group", s.group, "partition", p, "error", err)
					continue
				}
				parts[p] = pc
			}
		}
		lost := make(chan int, 1)
		var lwg sync.WaitGroup
		stopWatch := make(chan struct{})
		for p, pc := range parts {
			lwg.Go(func() {
				select {
				case <-pc.lost:
					select {
					case lost <- p:
					default:
					}
				case <-stopWatch:
				}
			})
		}
		select {
		case <-s.ctx.Done():
		case <-tick.C:
		case p := <-lost:
			pc := parts[p]
			if pc.forwarded() {
				delivered = true
			}
			s.stopPart(pc, false)
			delete(parts, p)
			s.a.log.Warn("rabbitmq: partition channel lost; consuming it again", "topic", s.topic, "group", s.group, "partition", p)
		}
		close(stopWatch)
		lwg.Wait()
		if s.ctx.Err() != nil {
			return delivered, nil
		}
	}
}

// firstGap returns the lowest slot not in the sorted members, or -1 when
// they are 0..len-1.
func firstGap(members []int) int {
	for i, m := range members {
		if m != i {
			return i
		}
	}
	return -1
}

// startPart consumes partition p on a new channel of conn.
func (s *subscription) startPart(conn *amqp.Connection, p int) (*partConsumer, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(s.a.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("qos: %w", err)
	}
	deliveries, err := ch.Consume(s.queues[p], "", false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consume %q: %w", s.queues[p], err)
	}
	pc := &partConsumer{
		part: p,
		gen:  newGeneration(ch, s.a.cfg.Prefetch, s.a.log),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		lost: make(chan struct{}),
	}
	go func() {
		defer close(pc.done)
		for {
			select {
			case <-pc.stop:
				return
			case d, ok := <-deliveries:
				if !ok {
					close(pc.lost)
					return
				}
				m := newMessage(s.a, s.topic, s.group, pc.gen, p, &d)
				pc.gen.handedOut(d.DeliveryTag)
				select {
				case s.out <- m:
				case <-pc.stop:
					pc.gen.takeBack(d.DeliveryTag)
					return
				}
			}
		}
	}()
	return pc, nil
}

// stopPart stops handing out partition pc's messages and closes its
// channel; with drain it first waits (at most OperationTimeout, or until
// the subscription ends) for the messages handed out to be acknowledged, so
// that the next owner does not receive later messages of a key while an
// earlier one is still being handled here.
func (s *subscription) stopPart(pc *partConsumer, drain bool) {
	close(pc.stop)
	<-pc.done
	if drain {
		t := time.NewTimer(s.a.cfg.OperationTimeout)
		select {
		case <-pc.gen.idle():
		case <-t.C:
			s.a.log.Warn("rabbitmq: released partition still had unacknowledged messages; they will be delivered again",
				"topic", s.topic, "group", s.group, "partition", pc.part)
		case <-s.ctx.Done():
		}
		t.Stop()
	}
	pc.gen.stop()
	_ = pc.gen.ch.Close()
}

// forwarded reports whether the partition handed out any message.
func (pc *partConsumer) forwarded() bool { return pc.gen.total.Load() > 0 }
