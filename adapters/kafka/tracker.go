package kafka

import (
	"context"
	"sort"
	"sync"
	"time"
)

// partTracker tracks the messages of one partition delivered in one
// generation and computes the offset that may be committed: just past the
// highest offset below which every delivered message was acknowledged.
// Acks may arrive in any order; the committable offset only moves forward.
//
// Delivered offsets ascend, so the window of offsets not yet passed by the
// committable offset is a slice searched by binary search: an ack costs a
// lock, a search and no allocation, and waiters are only woken when there
// are any.
type partTracker struct {
	partition int
	start     int64 // assigned start offset; may be kafka-go's FirstOffset/LastOffset
	max       int   // max unacknowledged messages
	onAck     func()

	mu        sync.Mutex
	window    []slot        // delivered offsets, ascending, from the first not acknowledged (window[head:])
	head      int           // index of the first live slot in window
	next      int64         // offset after the last delivered message; -1 before any
	unacked   int           // delivered, not acknowledged, not abandoned
	committed int64         // last offset committed for this partition; -1 if none
	revoked   bool          // generation over: acks are ignored
	changed   chan struct{} // closed and replaced when unacked drops while someone waits; nil when nobody does
}

// slot is one delivered offset and what became of it.
type slot struct {
	offset int64
	state  slotState
}

type slotState uint8

const (
	inFlight  slotState = iota // delivered, not acknowledged
	acked                      // acknowledged
	abandoned                  // never handed over: a barrier that no ack lifts
)

func newPartTracker(partition int, start int64, max int, onAck func()) *partTracker {
	return &partTracker{
		partition: partition,
		start:     start,
		max:       max,
		onAck:     onAck,
		next:      -1,
		committed: -1,
	}
}

// waitLocked returns the channel closed when unacked next drops. t.mu must
// be held.
func (t *partTracker) waitLocked() chan struct{} {
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// signalLocked wakes the waiters, if any. t.mu must be held.
func (t *partTracker) signalLocked() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
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
		ch := t.waitLocked()
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// reserve waits for capacity like waitCapacity and then registers offset
// like add, under one lock acquisition when there is capacity. It returns
// false, registering nothing, when ctx is done first.
func (t *partTracker) reserve(ctx context.Context, offset int64) bool {
	for {
		t.mu.Lock()
		if t.unacked < t.max {
			t.addLocked(offset)
			t.mu.Unlock()
			return true
		}
		ch := t.waitLocked()
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// delivered reports whether any offset was registered.
func (t *partTracker) delivered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next >= 0
}

// add registers offset, which is above every offset added before, as
// delivered (before it is handed to the consumer, so that an immediate ack
// finds it).
func (t *partTracker) add(offset int64) {
	t.mu.Lock()
	t.addLocked(offset)
	t.mu.Unlock()
}

func (t *partTracker) addLocked(offset int64) {
	if t.head == len(t.window) {
		t.window, t.head = t.window[:0], 0
	} else if t.head >= 64 && t.head >= len(t.window)/2 {
		n := copy(t.window, t.window[t.head:])
		t.window, t.head = t.window[:n], 0
	}
	t.window = append(t.window, slot{offset: offset})
	t.unacked++
	t.next = offset + 1
}

// findLocked returns the slot of offset, or nil. t.mu must be held.
func (t *partTracker) findLocked(offset int64) *slot {
	live := t.window[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset {
		return nil
	}
	return &live[i]
}

// abandon is called when a registered message could not be handed over
// after all. It stays a barrier for the committable offset (it was never
// processed) but no longer counts as in flight.
func (t *partTracker) abandon(offset int64) {
	t.mu.Lock()
	if sl := t.findLocked(offset); sl != nil && sl.state == inFlight {
		sl.state = abandoned
		t.unacked--
		t.signalLocked()
	}
	t.mu.Unlock()
}

// ack records that offset was processed. It reports whether the ack counted:
// unknown, duplicate and post-revocation acks are ignored.
func (t *partTracker) ack(offset int64) bool {
	t.mu.Lock()
	if t.revoked {
		t.mu.Unlock()
		return false
	}
	sl := t.findLocked(offset)
	if sl == nil || sl.state != inFlight {
		t.mu.Unlock()
		return false
	}
	sl.state = acked
	t.unacked--
	for t.head < len(t.window) && t.window[t.head].state == acked {
		t.head++
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
	if t.head < len(t.window) {
		return t.window[t.head].offset
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
		ch := t.waitLocked()
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
