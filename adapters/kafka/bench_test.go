package kafka_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// benchBrokers returns $KAFKA_BROKERS (comma-separated, e.g. from
// `go run ./adapters/kafka/kafkatest/cmd/kfake -port 9092`, so the broker
// does not share this process) or else starts an embedded broker.
func benchBrokers(b *testing.B) []string {
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ",")
	}
	return kafkatest.Brokers(b, kfake.AllowAutoTopicCreation())
}

func benchAdapter(b *testing.B) *kafka.Adapter {
	cfg := testConfig(benchBrokers(b))
	cfg.AutoCreateTopics = true
	cfg.TopicPartitions = 6
	return newAdapter(b, cfg)
}

// BenchmarkPublishSequential measures one publish at a time: about one
// broker round trip each.
func BenchmarkPublishSequential(b *testing.B) {
	a := benchAdapter(b)
	ctx := context.Background()
	msg := make([]byte, 256)
	topic := "bench-seq-" + time.Now().Format("150405.000000")
	if err := a.Publish(ctx, topic, msg); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := a.Publish(ctx, topic, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel measures concurrent publishes, which share
// produce requests.
func BenchmarkPublishParallel(b *testing.B) {
	a := benchAdapter(b)
	ctx := context.Background()
	msg := make([]byte, 256)
	topic := "bench-par-" + time.Now().Format("150405.000000")
	if err := a.Publish(ctx, topic, msg); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.Publish(ctx, topic, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConsume measures receiving and acknowledging b.N messages spread
// over 6 partitions.
func BenchmarkConsume(b *testing.B) {
	a := benchAdapter(b)
	ctx := context.Background()
	topic := "bench-consume-" + time.Now().Format("150405.000000")
	msg := make([]byte, 256)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 32 {
				if err := a.Publish(ctx, topic, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	ch, cancel, err := a.Subscribe(ctx, topic, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()
	for i := 0; i < b.N; i++ {
		m := <-ch
		if err := a.Ack(ctx, "bench", m); err != nil {
			b.Fatal(err)
		}
	}
}
