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
	msg := make([]byte, 256)
	benchPublishParallel(b, "bench-par-", func(ctx context.Context, a *kafka.Adapter, topic string) error {
		return a.Publish(ctx, topic, msg)
	})
}

// benchPublishParallel runs publish from 64 goroutines per core on a new
// topic (created by a first publish before the timer starts).
func benchPublishParallel(b *testing.B, prefix string, publish func(context.Context, *kafka.Adapter, string) error) {
	a := benchAdapter(b)
	ctx := context.Background()
	topic := prefix + time.Now().Format("150405.000000")
	if err := publish(ctx, a, topic); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := publish(ctx, a, topic); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConsume measures receiving and acknowledging b.N messages spread
// over 6 partitions.
func BenchmarkConsume(b *testing.B) {
	msg := make([]byte, 256)
	benchConsume(b, "bench-consume-", func(ctx context.Context, a *kafka.Adapter, topic string, _ int) error {
		return a.Publish(ctx, topic, msg)
	}, nil)
}

// benchConsume publishes b.N messages to a new topic with publish (from 32
// goroutines; i is the message's number), then measures subscribing,
// receiving each (and handing it to read, when set) and acknowledging it.
func benchConsume(b *testing.B, prefix string, publish func(ctx context.Context, a *kafka.Adapter, topic string, i int) error, read func(eventstream.Message)) {
	a := benchAdapter(b)
	ctx := context.Background()
	topic := prefix + time.Now().Format("150405.000000")
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 32 {
				if err := publish(ctx, a, topic, i); err != nil {
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
		if read != nil {
			read(m)
		}
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
	r := eventstream.Record{Key: []byte("customer-42"), Value: make([]byte, 100), Headers: ceHeaders}
	benchPublishParallel(b, "bench-parh-", func(ctx context.Context, a *kafka.Adapter, topic string) error {
		return a.PublishRecord(ctx, topic, r)
	})
}

// BenchmarkConsumeHeaders is BenchmarkConsume on records carrying the 7
// headers of a binary-mode CloudEvent (with a ce_id of their own, as
// events have), each read through Headers.
func BenchmarkConsumeHeaders(b *testing.B) {
	n := 0
	benchConsume(b, "bench-consumeh-", func(ctx context.Context, a *kafka.Adapter, topic string, i int) error {
		hs := maps.Clone(ceHeaders)
		hs["ce_id"] = strconv.Itoa(i)
		return a.PublishRecord(ctx, topic, eventstream.Record{Value: make([]byte, 100), Headers: hs})
	}, func(m eventstream.Message) { n += len(m.(eventstream.HeaderCarrier).Headers()) })
	if n != b.N*len(ceHeaders) {
		b.Fatalf("%d headers read, want %d", n, b.N*len(ceHeaders))
	}
}
