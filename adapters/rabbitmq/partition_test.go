package rabbitmq_test

import (
	"context"
	"fmt"
	"slices"
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
// queues per group, each with a single active consumer) with members that
// join and leave while 16 keys are published in sequence: 1 joins, 2 and 3
// join, 1 leaves, 2 leaves, 4 joins. Each member acknowledges what it
// receives at once. Every message must arrive, and per key the first
// deliveries (Redelivered false) must be in publish order within every
// member, with no two members' runs of a key interleaving, which is
// per-key order across competing members.
func TestPartitionedKeyOrderAcrossMembers(t *testing.T) {
	url := brokerURL(t)
	const topic, group, keys = "partitioned", "g", 16
	ctx := ctxT(t, 120*time.Second)
	cfg := testConfig(url)
	cfg.Partitions = 4
	cfg.Prefetch = 32
	pub := newAdapter(t, cfg)
	if err := pub.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}

	type delivery struct {
		member      int
		seq         int
		redelivered bool
	}
	var (
		mu    sync.Mutex
		byKey = map[int][]delivery{}
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
				byKey[key] = append(byKey[key], delivery{id, seq, rm.Redelivered()})
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
	m1 := join(1)
	step(300)
	m2, m3 := join(2), join(3)
	step(300)
	leave(m1)
	step(300)
	leave(m2)
	step(300)
	m4 := join(4)
	step(300)
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
	for key, ds := range byKey {
		got := map[int]bool{}
		hi := -1
		for _, d := range ds {
			got[d.seq] = true
			hi = max(hi, d.seq)
		}
		for s := range hi {
			if !got[s] {
				t.Errorf("key %d: seq %d never arrived (saw up to %d)", key, s, hi)
			}
		}
		runs := map[int][2]int{} // member -> first and last seq of its first deliveries
		var order []int
		for _, d := range ds {
			if d.redelivered {
				redelivered++
				continue
			}
			r, ok := runs[d.member]
			if !ok {
				order = append(order, d.member)
				runs[d.member] = [2]int{d.seq, d.seq}
				continue
			}
			if d.seq <= r[1] {
				t.Errorf("key %d: member %d got seq %d after %d", key, d.member, d.seq, r[1])
			}
			runs[d.member] = [2]int{r[0], d.seq}
		}
		slices.SortFunc(order, func(a, b int) int { return runs[a][0] - runs[b][0] })
		for i := 1; i < len(order); i++ {
			prev, cur := runs[order[i-1]], runs[order[i]]
			if cur[0] <= prev[1] {
				t.Errorf("key %d: member %d's run %v interleaves with member %d's run %v", key, order[i], cur, order[i-1], prev)
			}
		}
	}
	t.Logf("%d messages, %d redeliveries", n, redelivered)
}
