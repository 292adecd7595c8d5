package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offsetMonitor polls a group's committed offsets through the broker and
// records any offset that moves backwards.
type offsetMonitor struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	max    map[int32]int64
	errs   []string
	polls  int
}

func monitorOffsets(t *testing.T, brokers []string, group, topic string) *offsetMonitor {
	t.Helper()
	cl := kgoClient(t, brokers)
	m := &offsetMonitor{stopCh: make(chan struct{}), done: make(chan struct{}), max: map[int32]int64{}}
	go func() {
		defer close(m.done)
		defer cl.Close()
		for {
			select {
			case <-m.stopCh:
				return
			case <-time.After(20 * time.Millisecond):
			}
			req := kmsg.NewPtrOffsetFetchRequest()
			req.Group = group
			rt := kmsg.NewOffsetFetchRequestTopic()
			rt.Topic = topic
			for p := int32(0); p < 16; p++ {
				rt.Partitions = append(rt.Partitions, p)
			}
			req.Topics = append(req.Topics, rt)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := req.RequestWith(ctx, cl)
			cancel()
			if err != nil {
				continue
			}
			m.mu.Lock()
			m.polls++
			for _, tp := range resp.Topics {
				for _, p := range tp.Partitions {
					if p.ErrorCode != 0 || p.Offset < 0 {
						continue
					}
					if prev, ok := m.max[p.Partition]; ok && p.Offset < prev {
						m.errs = append(m.errs, fmt.Sprintf("partition %d: committed offset went from %d back to %d", p.Partition, prev, p.Offset))
					}
					if p.Offset > m.max[p.Partition] {
						m.max[p.Partition] = p.Offset
					}
				}
			}
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *offsetMonitor) stop(t *testing.T) {
	t.Helper()
	close(m.stopCh)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.errs {
		t.Error(e)
	}
	t.Logf("offset monitor: %d polls", m.polls)
}

// member is one consumer-group member with its own adapter; it
// acknowledges from several workers, so acks arrive out of order.
type member struct {
	a      *kafka.Adapter
	cancel func()
	wg     sync.WaitGroup
	got    atomic.Int64
}

func startMember(t *testing.T, brokers []string, topic, group string, seen *collector) *member {
	t.Helper()
	a, err := kafka.NewAdapter(testConfig(brokers))
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel, err := a.Subscribe(context.Background(), topic, group)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{a: a, cancel: cancel}
	for w := 0; w < 4; w++ {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for msg := range ch {
				seen.add(msg.(*kafka.Message))
				m.got.Add(1)
				if err := a.Ack(context.Background(), group, msg); err != nil {
					t.Errorf("ack: %v", err)
				}
			}
		}()
	}
	return m
}

func (m *member) leave() {
	m.cancel()
	m.wg.Wait()
	_ = m.a.Close()
}

// TestRebalanceNoLoss has members join and leave one group while messages
// are being published; every message must be received and the committed
// offsets (read from the broker) must never move backwards. It runs on the
// embedded broker and on Apache Kafka 4.x and 3.9.x.
func TestRebalanceNoLoss(t *testing.T) {
	const topic, partitions = "rebalance", 6
	t.Run("kfake", func(t *testing.T) {
		testRebalanceNoLoss(t, startCluster(t, partitions, topic).Addrs(), topic, "g-rebalance")
	})
	for _, v := range kafkaVersions {
		t.Run("kafka-"+v, func(t *testing.T) {
			brokers := []string{realKafka(t, v).Addr()}
			topic := uniqueName("rebalance")
			createTopicOn(t, brokers, topic, partitions)
			testRebalanceNoLoss(t, brokers, topic, uniqueName("g-rebalance"))
		})
	}
}

func testRebalanceNoLoss(t *testing.T, brokers []string, topic, group string) {
	pub := newAdapter(t, testConfig(brokers))
	ctx := ctxT(t, 90*time.Second)
	mon := monitorOffsets(t, brokers, group, topic)
	seen := newCollector()

	var published atomic.Int64
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			case <-tick.C:
			}
			r := eventstream.Record{Key: []byte(fmt.Sprintf("k%d", i%17)), Value: []byte(fmt.Sprintf("m-%d", i))}
			if err := pub.PublishRecord(ctx, topic, r); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Add(1)
		}
	}()
	gets := func(m *member, n int64) {
		t.Helper()
		base := m.got.Load()
		waitFor(t, 30*time.Second, "member to receive messages", func() bool { return m.got.Load() >= base+n })
	}
	progress := func(n int) {
		t.Helper()
		base := seen.distinct()
		waitFor(t, 30*time.Second, "progress", func() bool { return seen.distinct() >= base+n })
	}

	m1 := startMember(t, brokers, topic, group, seen)
	gets(m1, 20)
	m2 := startMember(t, brokers, topic, group, seen)
	gets(m2, 20)
	m3 := startMember(t, brokers, topic, group, seen)
	gets(m3, 20)
	m1.leave()
	progress(50)
	m4 := startMember(t, brokers, topic, group, seen)
	gets(m4, 20)
	m2.leave()
	progress(50)
	close(stopPub)
	<-pubDone
	n := int(published.Load())
	waitFor(t, 30*time.Second, fmt.Sprintf("all %d messages", n), func() bool { return seen.distinct() >= n })
	for i := 0; i < n; i++ {
		if !seen.has(fmt.Sprintf("m-%d", i)) {
			t.Errorf("m-%d lost", i)
		}
	}
	m3.leave()
	m4.leave()
	mon.stop(t)

	// Everything was acknowledged, so the final commits cover every
	// partition up to its end.
	offs := committed(t, brokers, group, topic)
	var total int64
	for _, o := range offs {
		total += o
	}
	if total != int64(n) {
		t.Errorf("committed offsets %v sum to %d, want %d", offs, total, n)
	}
	seen.mu.Lock()
	t.Logf("%d deliveries of %d messages", len(seen.msgs), n)
	seen.mu.Unlock()
}
