package eventstream_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quiet is a logger for tests that provoke failures on purpose.
var quiet = testutil.Quiet

// newMemoryBus returns a memory bus closed at the end of the test.
func newMemoryBus(t testing.TB, change func(*eventstream.Config)) eventstream.Bus {
	t.Helper()
	cfg := eventstream.DefaultConfig()
	cfg.Logger = quiet
	if change != nil {
		change(&cfg)
	}
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

// fastRetry retries quickly so failure tests stay short.
func fastRetry(n int) *eventstream.RetryPolicy {
	return &eventstream.RetryPolicy{MaxRetries: n, BackoffStrategy: eventstream.BackoffFixed}
}

// recv receives from ch (a closed channel yields the zero value, for
// signal channels) on the test goroutine, failing the test instead of
// hanging when nothing arrives.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received within 10s")
	}
	var zero T
	return zero
}
