package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	realBrokers.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var nameSeq atomic.Int64

// uniqueName returns prefix with a suffix unique within the test binary's
// run and across runs against a long-lived broker.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), nameSeq.Add(1))
}

// createTopicOn creates topic with partitions partitions (replication
// factor 1) through a client of its own.
func createTopicOn(t testing.TB, brokers []string, topic string, partitions int32) {
	t.Helper()
	kadmin.CreateTopic(t, brokers, topic, partitions)
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

// committed fetches the committed offsets of group on topic (its first 64
// partitions) from the broker.
func committed(t testing.TB, brokers []string, group, topic string) map[int32]int64 {
	t.Helper()
	return kadmin.Committed(t, brokers, group, topic, 64)
}

// kgoClient returns a franz-go client of brokers (with opts), the tests'
// own view of the broker; the caller closes it.
func kgoClient(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return kadmin.Client(t, brokers, opts...)
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
	return kadmin.EndOffsets(t, brokers, topic, partitions)
}
