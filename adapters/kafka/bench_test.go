package kafka_test

import (
	"context"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
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

// ceHeaders are the headers of a binary-mode CloudEvent, as the bus writes
// them.
var ceHeaders = map[string]string{
	"ce_id":          "0b3c2a1e-4f5d-4e6a-9b7c-8d9e0f1a2b3c",
	"ce_type":        "order.created",
	"ce_source":      "eventstream",
	"ce_specversion": "1.0",
	"ce_time":        "2026-12-03T13:45:00.123456789Z",
	"ce_subject":     "customer-42",
	"content-type":   "application/octet-stream",
}

// BenchmarkPublishParallelHeaders is BenchmarkPublishParallel with the 7
// headers of a binary-mode CloudEvent and a key.
func BenchmarkPublishParallelHeaders(b *testing.B) {
	a := benchAdapter(b)
	ctx := context.Background()
	r := eventstream.Record{Key: []byte("customer-42"), Value: make([]byte, 100), Headers: ceHeaders}
	topic := "bench-parh-" + time.Now().Format("150405.000000")
	if err := a.PublishRecord(ctx, topic, r); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.PublishRecord(ctx, topic, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConsumeHeaders is BenchmarkConsume on records carrying the 7
// headers of a binary-mode CloudEvent (with a ce_id of their own, as
// events have), each read through Headers.
func BenchmarkConsumeHeaders(b *testing.B) {
	a := benchAdapter(b)
	ctx := context.Background()
	topic := "bench-consumeh-" + time.Now().Format("150405.000000")
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 32 {
				hs := maps.Clone(ceHeaders)
				hs["ce_id"] = strconv.Itoa(i)
				r := eventstream.Record{Value: make([]byte, 100), Headers: hs}
				if err := a.PublishRecord(ctx, topic, r); err != nil {
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
	n := 0
	for i := 0; i < b.N; i++ {
		m := <-ch
		n += len(m.(eventstream.HeaderCarrier).Headers())
		if err := a.Ack(ctx, "bench", m); err != nil {
			b.Fatal(err)
		}
	}
	if n != b.N*len(ceHeaders) {
		b.Fatalf("%d headers read, want %d", n, b.N*len(ceHeaders))
	}
}
