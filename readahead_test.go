package eventstream_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

// endless is an MQAdapter whose subscriptions deliver bare JSON payloads
// without end, counting how many the bus took from the channel and how
// many it acknowledged.
type endless struct {
	taken, acked atomic.Int64
	wg           sync.WaitGroup
}

type endlessMsg struct{ v []byte }

func (m endlessMsg) Topic() string        { return "t" }
func (m endlessMsg) Value() []byte        { return m.v }
func (m endlessMsg) Timestamp() time.Time { return time.Time{} }
func (m endlessMsg) Key() []byte          { return nil }

func (a *endless) Publish(context.Context, string, []byte) error { return errors.New("not supported") }
func (a *endless) Ack(context.Context, string, eventstream.Message) error {
	a.acked.Add(1)
	return nil
}
func (a *endless) Close() error { return nil }

func (a *endless) Subscribe(ctx context.Context, _, _ string) (<-chan eventstream.Message, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan eventstream.Message)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(ch)
		for i := 0; ; i++ {
			select {
			case ch <- endlessMsg{v: []byte(strconv.Itoa(i))}:
				a.taken.Add(1)
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() { cancel(); a.wg.Wait() }, nil
}

// TestDistributedReadAheadBounded: with every handler blocked the bus takes
// at most Concurrency + BufferSize + 1 messages from the adapter (one
// worker reading the adapter itself takes only the one it handles), and
// once the handlers return every message taken is handled and
// acknowledged.
func TestDistributedReadAheadBounded(t *testing.T) {
	for _, conc := range []int{1, 8} {
		t.Run("concurrency="+strconv.Itoa(conc), func(t *testing.T) {
			const buffer = 16
			ad := &endless{}
			bus := newDistBus(t, ad, nil)
			release := make(chan struct{})
			var entered, handled atomic.Int64
			sub, err := bus.On("t", func(ctx context.Context, _ *eventstream.Event) error {
				entered.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				handled.Add(1)
				return nil
			}, eventstream.WithConsumerGroup("g"), eventstream.WithConcurrency(conc), eventstream.WithBufferSize(buffer))
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 20*time.Second, func() bool { return entered.Load() == int64(conc) }, func() string { return "every worker in its handler" })
			bound := int64(conc + buffer + 1)
			if conc == 1 {
				bound = 1
			}
			// The bound must hold however long the handlers take: watch it
			// for a while (the adapter offers a message the whole time).
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
				if n := ad.taken.Load(); n > bound {
					t.Fatalf("bus took %d messages with %d blocked handlers and BufferSize %d; bound %d", n, conc, buffer, bound)
				}
				time.Sleep(5 * time.Millisecond)
			}
			close(release)
			testutil.Eventually(t, 20*time.Second, func() bool { return handled.Load() >= 1000 }, func() string { return "1000 messages handled" })
			if err := bus.Off(sub); err != nil {
				t.Fatal(err)
			}
			if h, a := handled.Load(), ad.acked.Load(); h != a {
				t.Fatalf("%d messages handled, %d acknowledged", h, a)
			}
		})
	}
}
