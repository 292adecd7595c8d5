package bustest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

var benchTopics atomic.Int64

// BenchmarkConsume measures a distributed bus draining b.N preloaded
// 100-byte events through the adapter newAdapter returns (RawSerializer, the
// payload in letters as the bench module's report sends it), as sub-benchmarks
// "structured" and "binary" (Distributed.BinaryMode; it needs an adapter
// with RecordPublisher). allocs/op is the adapter's and the bus's
// allocations per event together. The preload and the consumer each get a
// bus of their own over one adapter.
//
//	func BenchmarkBusConsume(b *testing.B) {
//		bustest.BenchmarkConsume(b, func(b *testing.B) eventstream.MQAdapter { return newAdapter(b) })
//	}
func BenchmarkConsume(b *testing.B, newAdapter func(b *testing.B) eventstream.MQAdapter) {
	for _, binary := range []bool{false, true} {
		name := "structured"
		if binary {
			name = "binary"
		}
		b.Run(name, func(b *testing.B) { benchConsume(b, newAdapter(b), binary) })
	}
}

func benchConsume(b *testing.B, ad eventstream.MQAdapter, binary bool) {
	mk := func() eventstream.Bus {
		cfg := eventstream.DefaultDistributedConfig()
		cfg.Logger = testutil.Quiet
		cfg.Distributed.MQAdapter = ad
		cfg.Distributed.Serializer = eventstream.RawSerializer{}
		cfg.Distributed.BinaryMode = binary
		bus, err := eventstream.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return bus
	}
	ctx := context.Background()
	topic := fmt.Sprintf("bustest-bench-%d", benchTopics.Add(1))
	pub := mk()
	msg := make([]byte, 100)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < b.N; i += 32 {
				if err := pub.Emit(ctx, topic, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	_ = pub.Close()
	bus := mk()
	defer bus.Close()
	done := make(chan struct{})
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	_, err := bus.On(topic, func(_ context.Context, e *eventstream.Event) error {
		_ = e.Data.([]byte)
		if n++; n == b.N {
			close(done)
		}
		return nil
	}, eventstream.WithConsumerGroup("bench"))
	if err != nil {
		b.Fatal(err)
	}
	<-done
	b.StopTimer()
}
