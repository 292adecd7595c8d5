package rabbitmq_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
)

// TestPartitionedKeyOrderAcrossMembers runs partitioned mode (4 partition
// queues per group) with members that join and leave while 16 keys are
// published in sequence: 1 joins, 2 and 3 join, 1 leaves, 2 leaves, 4
// joins. Each member acknowledges what it receives at once. While 1, 2 and
// 3 are members, the partitions must spread over all three (each partition
// delivered by one member). Every message must arrive, and per key the
// messages must be first received in publish order across all members,
// which is per-key order across competing members.
func TestPartitionedKeyOrderAcrossMembers(t *testing.T) {
	url := brokerURL(t)
	const topic, group, keys, parts = "partitioned", "g", 16, 4
	ctx := ctxT(t, 180*time.Second)
	cfg := testConfig(url)
	cfg.Partitions = parts
	cfg.Prefetch = 32
	cfg.RebalanceInterval = 200 * time.Millisecond
	pub := newAdapter(t, cfg)
	if err := pub.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}

	type delivery struct {
		member, part, key, seq int
		redelivered            bool
	}
	var (
		mu    sync.Mutex
		all   []delivery // in the order received, under mu
		seen  = map[string]bool{}
		total atomic.Int64
	)
	type member struct {
		cancel func()
		done   chan struct{}
	}
	join := func(id int) *member {
		a := newAdapter(t, cfg)
		ch, cancel, err := a.Subscribe(ctx, topic, group)
		if err != nil {
			t.Fatal(err)
		}
		m := &member{cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(m.done)
			for msg := range ch {
				rm := msg.(*rabbitmq.Message)
				k, s, _ := strings.Cut(string(rm.Value()), "#")
				key, _ := strconv.Atoi(k)
				seq, _ := strconv.Atoi(s)
				mu.Lock()
				all = append(all, delivery{id, rm.Partition(), key, seq, rm.Redelivered()})
				if !seen[string(rm.Value())] {
					seen[string(rm.Value())] = true
					total.Add(1)
				}
				mu.Unlock()
				_ = a.Ack(ctx, group, rm)
			}
		}()
		return m
	}
	leave := func(m *member) {
		m.cancel()
		<-m.done
	}

	pctx, stopPub := context.WithCancel(ctx)
	var published atomic.Int64
	var pwg sync.WaitGroup
	for p := range 4 {
		pwg.Go(func() {
			for seq := 0; pctx.Err() == nil; seq++ {
				for k := p * keys / 4; k < (p+1)*keys/4; k++ {
					r := eventstream.Record{Key: fmt.Appendf(nil, "key-%d", k), Value: fmt.Appendf(nil, "%d#%d", k, seq)}
					if err := pub.PublishRecord(pctx, topic, r); err != nil {
						if pctx.Err() == nil {
							t.Errorf("PublishRecord: %v", err)
						}
						return
					}
					published.Add(1)
				}
			}
		})
	}
	defer func() { stopPub(); pwg.Wait() }()

	step := func(n int64) {
		t.Helper()
		target := total.Load() + n
		waitUntil(t, 60*time.Second, fmt.Sprintf("%d messages received", target), func() bool { return total.Load() >= target })
	}
	// spread waits until the last 200 deliveries came from want members,
	// each partition from one member.
	spread := func(want int) {
		t.Helper()
		var last string
		waitUntil(t, 60*time.Second, fmt.Sprintf("partitions spread over %d members", want), func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(all) < 200 {
				return false
			}
			owner := map[int]int{}
			members := map[int]bool{}
			for _, d := range all[len(all)-200:] {
				if o, ok := owner[d.part]; ok && o != d.member {
					last = fmt.Sprintf("partition %d from members %d and %d", d.part, o, d.member)
					return false
				}
				owner[d.part] = d.member
				members[d.member] = true
			}
			last = fmt.Sprintf("owners %v", owner)
			return len(members) == want && len(owner) == parts
		})
		t.Logf("spread over %d members: %s", want, last)
	}
	m1 := join(1)
	step(300)
	m2, m3 := join(2), join(3)
	step(300)
	spread(3)
	leave(m1)
	step(300)
	spread(2)
	leave(m2)
	step(300)
	m4 := join(4)
	step(300)
	spread(2)
	stopPub()
	pwg.Wait()
	n := published.Load()
	waitUntil(t, 60*time.Second, fmt.Sprintf("all %d published messages received", n), func() bool { return total.Load() >= n })
	leave(m3)
	leave(m4)

	mu.Lock()
	defer mu.Unlock()
	// Publishes cancelled by stopPub may have been stored without being
	// counted, so more may arrive than were counted, never fewer, and no
	// key may have a gap.
	if total.Load() < n {
		t.Errorf("received %d distinct messages, published %d", total.Load(), n)
	}
	redelivered := 0
	next := map[int]int{} // key -> next seq expected to be seen first
	for _, d := range all {
		if d.redelivered {
			redelivered++
		}
		switch {
		case d.seq < next[d.key]: // a duplicate of one seen before
		case d.seq == next[d.key]:
			next[d.key]++
		default:
			t.Errorf("key %d: seq %d (member %d, partition %d, redelivered %v) first seen before seq %d",
				d.key, d.seq, d.member, d.part, d.redelivered, next[d.key])
			next[d.key] = d.seq + 1
		}
	}
	t.Logf("%d messages, %d deliveries, %d redeliveries", n, len(all), redelivered)
}
