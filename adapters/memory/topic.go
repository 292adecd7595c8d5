package memory

import (
	"hash/fnv"
	"math"
)

// All types in this file are guarded by Adapter.mu.

// topic is a retained, partitioned log plus the consumer groups reading it.
type topic struct {
	name     string
	parts    []*partition
	nextRR   int // partition of the next message without a key
	retained int // messages retained over all partitions
	bytes    int // recordSize of those messages
	groups   map[string]*group

	// changed is closed, and replaced, whenever a subscription may have
	// something new to deliver: a message was appended or the partitions
	// were reassigned. Waiting subscriptions select on it.
	changed chan struct{}
}

// partition is one ordered log of a topic. Offsets below base were released
// after every group acknowledged them.
type partition struct {
	base int64
	log  []record
}

// end returns the offset the next appended record gets.
func (p *partition) end() int64 { return p.base + int64(len(p.log)) }

// group is the state of one consumer group on one topic.
type group struct {
	name string
	// committed[p] is the first offset of partition p the group has not
	// acknowledged; everything below it is acknowledged.
	committed []int64
	// acked[p] holds offsets above committed[p] that were acknowledged out
	// of order. They are not delivered again.
	acked []map[int64]struct{}
	// members are the live subscriptions of the group, in join order.
	members []*subscription
	// owner[p] is the member that consumes partition p, nil if none.
	owner []*subscription
}

func newTopic(name string, partitions int) *topic {
	t := &topic{
		name:    name,
		parts:   make([]*partition, partitions),
		groups:  make(map[string]*group),
		changed: make(chan struct{}),
	}
	for i := range t.parts {
		t.parts[i] = &partition{}
	}
	return t
}

// notify wakes every subscription waiting for news on t.
func (t *topic) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// append stores rec in the partition chosen by its key and wakes the
// subscriptions.
func (t *topic) append(rec record) {
	var p int
	if rec.key == nil {
		p = t.nextRR
		t.nextRR = (t.nextRR + 1) % len(t.parts)
	} else {
		p = partitionOf(rec.key, len(t.parts))
	}
	part := t.parts[p]
	rec.offset = part.end()
	part.log = append(part.log, rec)
	t.retained++
	t.bytes += recordSize(rec)
	t.notify()
}

// partitionOf returns the partition of key among n partitions: the FNV-1a
// hash of the key modulo n.
func partitionOf(key []byte, n int) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % uint32(n))
}

// groupLocked returns the group called name, creating it on first use. A new
// group starts at the earliest retained offset of every partition.
func (t *topic) groupLocked(name string) *group {
	g, ok := t.groups[name]
	if ok {
		return g
	}
	n := len(t.parts)
	g = &group{
		name:      name,
		committed: make([]int64, n),
		acked:     make([]map[int64]struct{}, n),
		owner:     make([]*subscription, n),
	}
	for p, part := range t.parts {
		g.committed[p] = part.base
		g.acked[p] = make(map[int64]struct{})
	}
	t.groups[name] = g
	return g
}

// rebalance shares the partitions out among g's members: partition p goes to
// member p mod len(members). A member that gets a partition it did not own
// starts reading it at the group's committed offset, so whatever the
// previous owner received but did not acknowledge is delivered again.
func (t *topic) rebalance(g *group) {
	for p := range g.owner {
		var owner *subscription
		if len(g.members) > 0 {
			owner = g.members[p%len(g.members)]
		}
		if g.owner[p] == owner {
			continue
		}
		g.owner[p] = owner
		if owner != nil {
			owner.cursor[p] = g.committed[p]
		}
	}
	t.notify()
}

// ack marks offset of partition p acknowledged by g and reports whether the
// committed offset advanced. Acknowledging an offset twice changes nothing.
func (g *group) ack(p int, offset int64) bool {
	if offset < g.committed[p] {
		return false // already committed
	}
	g.acked[p][offset] = struct{}{}
	advanced := false
	for {
		if _, ok := g.acked[p][g.committed[p]]; !ok {
			return advanced
		}
		delete(g.acked[p], g.committed[p])
		g.committed[p]++
		advanced = true
	}
}

// isAcked reports whether g acknowledged offset of partition p.
func (g *group) isAcked(p int, offset int64) bool {
	if offset < g.committed[p] {
		return true
	}
	_, ok := g.acked[p][offset]
	return ok
}

// trim releases the records of partition p that every group has
// acknowledged. Without any group nothing is released: the first group to
// subscribe must still see every message.
func (t *topic) trim(p int) {
	if len(t.groups) == 0 {
		return
	}
	low := int64(math.MaxInt64)
	for _, g := range t.groups {
		low = min(low, g.committed[p])
	}
	part := t.parts[p]
	n := int(min(low, part.end()) - part.base)
	if n <= 0 {
		return
	}
	for _, r := range part.log[:n] {
		t.bytes -= recordSize(r)
	}
	clear(part.log[:n]) // drop the references so the values can be collected
	part.log = part.log[n:]
	part.base += int64(n)
	t.retained -= n
}

// recordSize is what a record counts against Config.RetentionBytes: its key,
// value and header bytes.
func recordSize(r record) int {
	n := len(r.key) + len(r.value)
	for k, v := range r.headers {
		n += len(k) + len(v)
	}
	return n
}
