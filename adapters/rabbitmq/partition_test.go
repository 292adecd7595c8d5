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
	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// partRun is a partitioned group under test: publishers of sequenced
// keyed messages and members that record every delivery in the order
// received and acknowledge it at once.
type partRun struct {
	t          *testing.T
	ctx        context.Context
	cfg        rabbitmq.Config
	topic      string
	group      string
	keys, part int

	mu    sync.Mutex
	all   []partDelivery // in the order received, under mu
	seen  map[string]bool
	total atomic.Int64

	published atomic.Int64
	stopPub   context.CancelFunc
	pwg       sync.WaitGroup
}

type partDelivery struct {
	member, part, key, seq int
	redelivered            bool
}

type partMember struct {
	cancel func()
	done   chan struct{}
}

func newPartRun(t *testing.T, url, topic string, parts int) *partRun {
	cfg := testConfig(url)
	cfg.Partitions = parts
	cfg.Prefetch = 32
	cfg.RebalanceInterval = 200 * time.Millisecond
	topic = fmt.Sprintf("%s-%d", topic, time.Now().UnixNano()) // a new group queue per run (-count)
	return &partRun{t: t, ctx: ctxT(t, 180*time.Second), cfg: cfg, topic: topic, group: "g", keys: 16, part: parts, seen: map[string]bool{}}
}

// publish starts 4 publishers, each sending its share of the keys in
// sequence until stop.
func (r *partRun) publish() {
	pub := newAdapter(r.t, r.cfg)
	if err := pub.DeclareGroup(r.ctx, r.topic, r.group); err != nil {
		r.t.Fatal(err)
	}
	pctx, stop := context.WithCancel(r.ctx)
	r.stopPub = stop
	r.t.Cleanup(r.stop)
	for p := range 4 {
		r.pwg.Go(func() {
			for seq := 0; pctx.Err() == nil; seq++ {
				for k := p * r.keys / 4; k < (p+1)*r.keys/4; k++ {
					rec := eventstream.Record{Key: fmt.Appendf(nil, "key-%d", k), Value: fmt.Appendf(nil, "%d#%d", k, seq)}
					if err := pub.PublishRecord(pctx, r.topic, rec); err != nil {
						if pctx.Err() == nil {
							r.t.Errorf("PublishRecord: %v", err)
						}
						return
					}
					r.published.Add(1)
				}
			}
		})
	}
}

func (r *partRun) stop() {
	r.stopPub()
	r.pwg.Wait()
}

// join subscribes member id with an adapter of its own, named
// "member-<id>".
func (r *partRun) join(id int) *partMember {
	cfg := r.cfg
	cfg.ConnectionName = fmt.Sprintf("member-%d", id)
	return r.joinOn(newAdapter(r.t, cfg), id)
}

// joinOn subscribes member id with adapter a.
func (r *partRun) joinOn(a *rabbitmq.Adapter, id int) *partMember {
	ch, cancel, err := a.Subscribe(r.ctx, r.topic, r.group)
	if err != nil {
		r.t.Fatal(err)
	}
	m := &partMember{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for msg := range ch {
			rm := msg.(*rabbitmq.Message)
			k, s, _ := strings.Cut(string(rm.Value()), "#")
			key, _ := strconv.Atoi(k)
			seq, _ := strconv.Atoi(s)
			r.mu.Lock()
			r.all = append(r.all, partDelivery{id, rm.Partition(), key, seq, rm.Redelivered()})
			if !r.seen[string(rm.Value())] {
				r.seen[string(rm.Value())] = true
				r.total.Add(1)
			}
			r.mu.Unlock()
			_ = a.Ack(r.ctx, r.group, rm)
		}
	}()
	return m
}

func (r *partRun) leave(m *partMember) {
	m.cancel()
	<-m.done
}

// step waits for n more distinct messages.
func (r *partRun) step(n int64) {
	r.t.Helper()
	target := r.total.Load() + n
	waitUntil(r.t, 60*time.Second, fmt.Sprintf("%d messages received", target), func() bool { return r.total.Load() >= target })
}

// spread waits until the last 200 deliveries came from want members, each
// partition from one member.
func (r *partRun) spread(want int) {
	r.t.Helper()
	var last string
	waitUntil(r.t, 60*time.Second, fmt.Sprintf("partitions spread over %d members", want), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.all) < 200 {
			return false
		}
		owner := map[int]int{}
		members := map[int]bool{}
		for _, d := range r.all[len(r.all)-200:] {
			if o, ok := owner[d.part]; ok && o != d.member {
				last = fmt.Sprintf("partition %d from members %d and %d", d.part, o, d.member)
				return false
			}
			owner[d.part] = d.member
			members[d.member] = true
		}
		last = fmt.Sprintf("owners %v", owner)
		return len(members) == want && len(owner) == r.part
	})
	r.t.Logf("spread over %d members: %s", want, last)
}

// finish stops publishing, waits for every published message and checks
// that none is missing and that per key the messages were first received
// in publish order across all members.
func (r *partRun) finish(members ...*partMember) {
	r.t.Helper()
	r.stop()
	n := r.published.Load()
	waitUntil(r.t, 60*time.Second, fmt.Sprintf("all %d published messages received", n), func() bool { return r.total.Load() >= n })
	for _, m := range members {
		r.leave(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Publishes cancelled by stop may have been stored without being
	// counted, so more may arrive than were counted, never fewer.
	if r.total.Load() < n {
		r.t.Errorf("received %d distinct messages, published %d", r.total.Load(), n)
	}
	redelivered := 0
	next := map[int]int{} // key -> next seq expected to be seen first
	for _, d := range r.all {
		if d.redelivered {
			redelivered++
		}
		switch {
		case d.seq < next[d.key]: // a duplicate of one seen before
		case d.seq == next[d.key]:
			next[d.key]++
		default:
			r.t.Errorf("key %d: seq %d (member %d, partition %d, redelivered %v) first seen before seq %d",
				d.key, d.seq, d.member, d.part, d.redelivered, next[d.key])
			next[d.key] = d.seq + 1
		}
	}
	r.t.Logf("%d messages, %d deliveries, %d redeliveries", n, len(r.all), redelivered)
}

// TestPartitionedKeyOrderAcrossMembers runs partitioned mode (4 partition
// queues per group) with members that join and leave while 16 keys are
// published in sequence: 1 joins, 2 and 3 join, 1 leaves, 2 leaves, 4
// joins. While 1, 2 and 3 are members, the partitions must spread over all
// three (each partition delivered by one member), and over the two left
// after each change. Every message must arrive, and per key the messages
// must be first received in publish order across all members, which is
// per-key order across competing members.
func TestPartitionedKeyOrderAcrossMembers(t *testing.T) {
	r := newPartRun(t, brokerURL(t), "partitioned", 4)
	r.publish()
	m1 := r.join(1)
	r.step(300)
	m2, m3 := r.join(2), r.join(3)
	r.step(300)
	r.spread(3)
	r.leave(m1)
	r.step(300)
	r.spread(2)
	r.leave(m2)
	r.step(300)
	m4 := r.join(4)
	r.step(300)
	r.spread(2)
	r.finish(m3, m4)
}

// TestPartitionedConnectionClosed closes one member's consuming connection
// with rabbitmqctl close_connection: the broker drops its member slot and
// requeues its messages, the other member takes its partitions, it
// reconnects and takes its share back, and per-key order holds throughout.
func TestPartitionedConnectionClosed(t *testing.T) {
	b := brokertest.RabbitMQ(t)
	if b.External() {
		t.Skip("needs rabbitmqctl on a private node")
	}
	r := newPartRun(t, b.URL(), "partitioned-close", 4)
	r.publish()
	m1, m2 := r.join(1), r.join(2)
	r.step(300)
	r.spread(2)
	var pid string
	waitUntil(t, 30*time.Second, "member 1's consuming connection listed", func() bool {
		for line := range strings.Lines(b.Ctl(t, "-q", "list_connections", "pid", "client_properties")) {
			if strings.Contains(line, "member-1 (consume)") {
				pid = strings.Fields(line)[0]
				return true
			}
		}
		return false
	})
	b.Ctl(t, "close_connection", pid, "eventstream test")
	r.step(300)
	r.spread(2)
	r.finish(m1, m2)
}

// TestPartitionedSameAdapter: two subscriptions of one adapter (one
// connection) to the same group hold different member slots and share the
// partitions.
func TestPartitionedSameAdapter(t *testing.T) {
	r := newPartRun(t, brokerURL(t), "partitioned-same", 4)
	r.publish()
	a := newAdapter(t, r.cfg)
	m1, m2 := r.joinOn(a, 1), r.joinOn(a, 2)
	r.step(300)
	r.spread(2)
	r.leave(m1)
	r.step(300)
	r.spread(1)
	r.finish(m2)
}
