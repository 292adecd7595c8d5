package kafka

import (
	"context"
	"sync"
	"time"
)

// partTracker tracks the messages of one partition delivered in one
// generation and computes the offset that may be committed: just past the
// highest offset below which every delivered message was acknowledged.
// Acks may arrive in any order; the committable offset only moves forward.
type partTracker struct {
	partition int
	start     int64 // assigned start offset; may be kafka-go's FirstOffset/LastOffset
	max       int   // max unacknowledged messages
	onAck     func()

	mu        sync.Mutex
	order     []int64        // delivered offsets, ascending, not yet passed by the committable offset
	acked     map[int64]bool // offset in order -> acknowledged
	next      int64          // offset after the last delivered message; -1 before any
	unacked   int            // delivered, not acknowledged, not abandoned
	committed int64          // last offset committed for this partition; -1 if none
	revoked   bool           // generation over: acks are ignored
	changed   chan struct{}  // closed and replaced whenever unacked drops
}

func newPartTracker(partition int, start int64, max int, onAck func()) *partTracker {
	return &partTracker{
		partition: partition,
		start:     start,
		max:       max,
		onAck:     onAck,
		acked:     make(map[int64]bool),
		next:      -1,
		committed: -1,
		changed:   make(chan struct{}),
	}
}

// waitCapacity blocks until fewer than max messages are unacknowledged. It
// returns false when ctx is done first.
func (t *partTracker) waitCapacity(ctx context.Context) bool {
	for {
		t.mu.Lock()
		if t.unacked < t.max {
			t.mu.Unlock()
			return true
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// add registers offset as delivered (before it is handed to the consumer,
// so that an immediate ack finds it).
func (t *partTracker) add(offset int64) {
	t.mu.Lock()
	t.order = append(t.order, offset)
	t.acked[offset] = false
	t.unacked++
	t.next = offset + 1
	t.mu.Unlock()
}

// abandon is called when a registered message could not be handed over
// after all. It stays a barrier for the committable offset (it was never
// processed) but no longer counts as in flight.
func (t *partTracker) abandon(offset int64) {
	t.mu.Lock()
	if acked, ok := t.acked[offset]; ok && !acked {
		t.unacked--
		t.signalLocked()
	}
	t.mu.Unlock()
}

func (t *partTracker) signalLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// ack records that offset was processed. It reports whether the ack counted:
// unknown, duplicate and post-revocation acks are ignored.
func (t *partTracker) ack(offset int64) bool {
	t.mu.Lock()
	if t.revoked {
		t.mu.Unlock()
		return false
	}
	acked, ok := t.acked[offset]
	if !ok || acked {
		t.mu.Unlock()
		return false
	}
	t.acked[offset] = true
	t.unacked--
	for len(t.order) > 0 && t.acked[t.order[0]] {
		delete(t.acked, t.order[0])
		t.order = t.order[1:]
	}
	t.signalLocked()
	t.mu.Unlock()
	if t.onAck != nil {
		t.onAck()
	}
	return true
}

// committableLocked returns the offset to commit: the first delivered
// offset not yet acknowledged, or just past the last delivered message when
// all are; -1 when nothing was delivered.
func (t *partTracker) committableLocked() int64 {
	if len(t.order) > 0 {
		return t.order[0]
	}
	return t.next
}

// pending returns the offset to commit if it is beyond the last commit, and
// revokes the tracker first when revoke is set (so that no ack lands after
// the final commit was computed).
func (t *partTracker) pending(revoke bool) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if revoke {
		t.revoked = true
	}
	c := t.committableLocked()
	return c, c >= 0 && c > t.committed
}

func (t *partTracker) setCommitted(offset int64) {
	t.mu.Lock()
	if offset > t.committed {
		t.committed = offset
	}
	t.mu.Unlock()
}

// waitDrained waits until no message is in flight, ctx is done or timeout
// passed.
func (t *partTracker) waitDrained(ctx context.Context, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		t.mu.Lock()
		if t.unacked <= 0 {
			t.mu.Unlock()
			return true
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		}
	}
}
