package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The shared real brokers hold no goroutines: stop them after the leak
	// check.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		realBrokers.Close()
		os.Exit(code)
	}))
}

// testConfig returns a Config tuned for fast tests against the embedded
// broker.
func testConfig(brokers []string) kafka.Config {
	cfg := kafka.Config{
		Brokers:           brokers,
		SessionTimeout:    3 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		RebalanceTimeout:  5 * time.Second,
		RevokeTimeout:     2 * time.Second,
		CommitInterval:    100 * time.Millisecond,
		FetchMaxWait:      200 * time.Millisecond,
		ProduceTimeout:    3 * time.Second,
		MetadataMaxAge:    500 * time.Millisecond,
	}
	if os.Getenv("KAFKA_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

func newAdapter(t testing.TB, cfg kafka.Config) *kafka.Adapter {
	t.Helper()
	a, err := kafka.NewAdapter(cfg)
	if err != nil {
		t.Fatalf("NewAdapter: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startCluster starts an embedded broker with topics seeded.
func startCluster(t testing.TB, partitions int32, topics ...string) *kafkatest.Cluster {
	t.Helper()
	return kafkatest.NewCluster(t, kfake.SeedTopics(partitions, topics...))
}

// committed fetches the committed offsets of group on topic from the broker.
func committed(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < 64; p++ {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	out := make(map[int32]int64)
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// collector receives from a subscription, acknowledges and records values.
type collector struct {
	mu   sync.Mutex
	seen map[string]int
	msgs []*kafka.Message
}

func newCollector() *collector { return &collector{seen: make(map[string]int)} }

func (c *collector) add(m *kafka.Message) {
	c.mu.Lock()
	c.seen[string(m.Value())]++
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *collector) has(v string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[v] > 0
}

// consumeAll drains ch, acking every message, until ch closes.
func consumeAll(t testing.TB, a eventstream.MQAdapter, group string, ch <-chan eventstream.Message, c *collector) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			km := m.(*kafka.Message)
			c.add(km)
			if err := a.Ack(context.Background(), group, m); err != nil {
				t.Errorf("ack: %v", err)
			}
		}
	}()
	return func() { <-done }
}

func vals(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// endOffsets returns the high watermark of every partition of topic.
func endOffsets(t testing.TB, brokers []string, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < partitions; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	out := make(map[int32]int64)
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.ErrorCode != 0 {
				t.Fatalf("list offsets %s[%d]: error code %d", topic, p.Partition, p.ErrorCode)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out
}
