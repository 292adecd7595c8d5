package nats_test

import (
	"context"
	"sync"
	"testing"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/bustest"
)

// The benchmarks run against the embedded server in its helper process (or
// NATS: see sharedURL), so the server's CPU is not counted here. The bench
// module compares the adapter with raw nats.go and Watermill.

// BenchmarkPublishParallel measures 64 goroutines publishing 100-byte
// records, each waiting for its acknowledgement: plain values, and records
// shaped like the bus's keyed events (a key: the bus sets neither a
// content-type header nor a time for NATS, see Adapter.BareEnvelope).
func BenchmarkPublishParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		rec  eventstream.Record
	}{
		{"plain", eventstream.Record{Value: make([]byte, 100)}},
		{"bus-shaped", eventstream.Record{Value: make([]byte, 100), Key: []byte("customer-7")}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a := newAdapter(b, testConfig(sharedURL(b)))
			ctx := context.Background()
			topic := uniq(b, "t")
			if err := a.PublishRecord(ctx, topic, tc.rec); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(64)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := a.PublishRecord(ctx, topic, tc.rec); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkConsume measures receiving and acknowledging b.N preloaded
// 100-byte messages with one subscription.
func BenchmarkConsume(b *testing.B) {
	a := newAdapter(b, testConfig(sharedURL(b)))
	ctx := context.Background()
	topic := uniq(b, "t")
	msg := make([]byte, 100)
	var wg sync.WaitGroup
	for w := range 32 {
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
	b.ReportAllocs()
	b.ResetTimer()
	ch, cancel, err := a.Subscribe(ctx, topic, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()
	for range b.N {
		m, ok := <-ch
		if !ok {
			b.Fatal("channel closed")
		}
		if err := a.Ack(ctx, "bench", m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBusConsume measures a distributed bus draining preloaded
// 100-byte events through the adapter, structured and binary
// (bustest.BenchmarkConsume).
func BenchmarkBusConsume(b *testing.B) {
	bustest.BenchmarkConsume(b, func(b *testing.B) eventstream.MQAdapter {
		return newAdapter(b, testConfig(sharedURL(b)))
	})
}
