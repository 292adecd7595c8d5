package redis_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	eventstream "github.com/eventstream-go/eventstream"
)

var benchTopics atomic.Int64

// BenchmarkBusConsume measures a distributed bus draining b.N preloaded
// 100-byte events (RawSerializer, as the bench module's report) through the
// adapter, in structured and in binary content mode. allocs/op is the
// adapter's and the bus's allocations per event together.
func BenchmarkBusConsume(b *testing.B) {
	for _, binary := range []bool{false, true} {
		name := "structured"
		if binary {
			name = "binary"
		}
		b.Run(name, func(b *testing.B) { benchBusConsume(b, binary) })
	}
}

func benchBusConsume(b *testing.B, binary bool) {
	a := newAdapter(b, testConfig(sharedBroker(b).Addr()))
	mk := func() eventstream.Bus {
		cfg := eventstream.DefaultDistributedConfig()
		cfg.Logger = logger()
		cfg.Distributed.MQAdapter = a
		cfg.Distributed.Serializer = eventstream.RawSerializer{}
		cfg.Distributed.BinaryMode = binary
		bus, err := eventstream.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return bus
	}
	ctx := context.Background()
	topic := fmt.Sprintf("bench-%d", benchTopics.Add(1))
	pub := mk()
	msg := make([]byte, 100) // letters, like the bench module's payloads
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += 32 {
				if err := pub.Emit(ctx, topic, msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
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
