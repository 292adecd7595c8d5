//go:build unix

package eventstream

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/internal/testutil"
)

// BenchmarkMemoryFloor splits the memory bus's cost per event into what any
// bus handing out a new *Event pays and what this bus adds, for the shapes
// of the in-process report (bench/cmd/report):
//
//   - raw: the report's raw-channel peer, one buffered channel per group
//     carrying the same payload pointer every time;
//   - raw+event: the same channel carrying a new *Event per emit, built the
//     way Emit builds it (one allocation, ID, clock read, Source, Type) and
//     read by the consumer (e.Data), but with no validation, routing,
//     enqueue protocol or worker engine;
//   - bus: Emit into a memory bus.
//
// Besides ns/op it reports cpu-ns/op, the process's user+system CPU time
// per event (every goroutine, the GC included). On a loaded machine wall
// time swings with what else runs; CPU time per event is the steadier
// figure for comparing the three.
func BenchmarkMemoryFloor(b *testing.B) {
	shapes := []struct {
		name                   string
		groups, conc, emitters int
	}{
		{"sub1-seq", 1, 1, 1},
		{"sub1-par64", 1, 1, 64},
		{"fanout4-seq", 4, 1, 1},
		{"fanout4-par64", 4, 1, 64},
		{"conc8-seq", 1, 8, 1},
		{"conc8-par64", 1, 8, 64},
	}
	for _, sh := range shapes {
		b.Run(sh.name+"/raw", func(b *testing.B) { benchFloorRaw(b, sh.groups, sh.conc, sh.emitters, false) })
		b.Run(sh.name+"/raw+event", func(b *testing.B) { benchFloorRaw(b, sh.groups, sh.conc, sh.emitters, true) })
		b.Run(sh.name+"/bus", func(b *testing.B) { benchFloorBus(b, sh.groups, sh.conc, sh.emitters) })
	}
}

type floorPayload struct{ _ int }

// benchEmitters runs emit b.N times from emitters goroutines (with
// b.RunParallel when there are several: the report's 64-way Emit is 64), then
// waits until done is closed and reports cpu-ns/op.
func benchEmitters(b *testing.B, emitters int, done <-chan struct{}, emit func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	if emitters > 1 {
		b.SetParallelism(max(1, emitters/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := emit(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for range b.N {
			if err := emit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// countTo returns a function to call once per handled event, and a channel
// closed when it was called want times.
func countTo(want int64) (func(), <-chan struct{}) {
	var n atomic.Int64
	done := make(chan struct{})
	return func() {
		if n.Add(1) == want {
			close(done)
		}
	}, done
}

func benchFloorRaw(b *testing.B, groups, conc, emitters int, withEvent bool) {
	on, done := countTo(int64(b.N * groups))
	ids := newIDGen()
	var wg sync.WaitGroup
	chans := make([]chan *Event, groups)
	for g := range chans {
		chans[g] = make(chan *Event, 1024)
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range chans[g] {
					_ = e.Data.(*floorPayload)
					on()
				}
			}()
		}
	}
	p := &floorPayload{}
	shared := &Event{Data: p}
	typ := typeName(p)
	benchEmitters(b, emitters, done, func() error {
		e := shared
		if withEvent {
			e = ids.newEvent("bench", ids.now())
			e.Source = "bench"
			e.Data = p
			e.Type = typ
		}
		for _, ch := range chans {
			ch <- e
		}
		return nil
	})
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
}

func benchFloorBus(b *testing.B, groups, conc, emitters int) {
	cfg := DefaultConfig()
	cfg.Logger = testutil.Quiet
	bus, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	on, done := countTo(int64(b.N * groups))
	h := func(_ context.Context, e *Event) error {
		_ = e.Data.(*floorPayload)
		on()
		return nil
	}
	for g := range groups {
		if _, err := bus.On("bench", h, WithConsumerGroup("g"+strconv.Itoa(g)), WithConcurrency(conc)); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	p := &floorPayload{}
	benchEmitters(b, emitters, done, func() error { return bus.Emit(ctx, "bench", p) })
}

// processCPU returns the user+system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
