package eventstream_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventstream-go/eventstream"
)

type benchPayload struct{ N int }

// BenchmarkRawChannel is the floor: a buffered channel between one producer
// and one consumer goroutine, end to end.
func BenchmarkRawChannel(b *testing.B) {
	ch := make(chan *benchPayload, 1024)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range ch {
		}
	}()
	p := &benchPayload{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ch <- p
	}
	close(ch)
	wg.Wait()
}

// benchMemory measures Emit until every handler call for the b.N events has
// returned.
func benchMemory(b *testing.B, groups, concurrency int, parallel bool) {
	benchMemoryObserved(b, groups, concurrency, parallel, nil)
}

func benchMemoryObserved(b *testing.B, groups, concurrency int, parallel bool, obs eventstream.Observer) {
	cfg := eventstream.DefaultConfig()
	cfg.Logger = quiet
	cfg.Observer = obs
	bus, err := eventstream.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	done := make(chan struct{})
	want := int64(b.N * groups)
	h := func(context.Context, *eventstream.Event) error {
		if handled.Add(1) == want {
			close(done)
		}
		return nil
	}
	for g := range groups {
		if _, err := bus.On("bench", h, eventstream.WithConsumerGroup(string(rune('a'+g))), eventstream.WithConcurrency(concurrency)); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	p := &benchPayload{}
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := bus.Emit(ctx, "bench", p); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for range b.N {
			if err := bus.Emit(ctx, "bench", p); err != nil {
				b.Fatal(err)
			}
		}
	}
	<-done
	b.StopTimer()
	if err := bus.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkMemoryEmit(b *testing.B)             { benchMemory(b, 1, 1, false) }
func BenchmarkMemoryEmitFanout4(b *testing.B)      { benchMemory(b, 4, 1, false) }
func BenchmarkMemoryEmitParallel(b *testing.B)     { benchMemory(b, 1, 1, true) }
func BenchmarkMemoryEmitConcurrency8(b *testing.B) { benchMemory(b, 1, 8, true) }

// nopObserver is the cheapest possible Observer: BenchmarkMemoryEmitObserver
// against BenchmarkMemoryEmit shows what the hooks cost, and that a nil
// Config.Observer costs nothing (BenchmarkMemoryEmit keeps its allocations).
type nopObserver struct{}

func (nopObserver) StartPublish(ctx context.Context, _ eventstream.PublishInfo, _ eventstream.Carrier) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (nopObserver) StartProcess(ctx context.Context, _ eventstream.ProcessInfo, _ eventstream.Carrier) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func BenchmarkMemoryEmitObserver(b *testing.B) { benchMemoryObserved(b, 1, 1, false, nopObserver{}) }
