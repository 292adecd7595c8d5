package eventstream_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
)

// TestMemoryBufferSizeBoundsQueued: with every worker blocked, Emit accepts
// at most Concurrency (in the handlers) + BufferSize (queued) events, keyed
// or not, then waits.
func TestMemoryBufferSizeBoundsQueued(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		t.Run("keyed="+strconv.FormatBool(keyed), func(t *testing.T) {
			const workers, buffer = 4, 8
			bus := newMemoryBus(t, func(c *eventstream.Config) { c.DrainTimeout = 50 * time.Millisecond })
			release := make(chan struct{})
			defer close(release)
			if _, err := bus.On("t", func(ctx context.Context, _ *eventstream.Event) error {
				select {
				case <-release:
				case <-ctx.Done():
				}
				return nil
			}, eventstream.WithConcurrency(workers), eventstream.WithBufferSize(buffer)); err != nil {
				t.Fatal(err)
			}
			accepted := 0
			for i := range 100 {
				var opts []eventstream.EmitOption
				if keyed {
					opts = append(opts, eventstream.WithKey("k"+strconv.Itoa(i)))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				err := bus.Emit(ctx, "t", i, opts...)
				cancel()
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				accepted++
			}
			if accepted > workers+buffer || accepted == 100 {
				t.Fatalf("accepted %d events with %d blocked workers and BufferSize %d", accepted, workers, buffer)
			}
		})
	}
}
