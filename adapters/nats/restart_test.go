package nats_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// TestServerRestart restarts the server on the same store mid-stream, on the
// embedded server and on the nats-server binary (gracefully and with
// SIGKILL): nothing whose publish returned nil is lost, the publishers'
// retries carry them over the downtime, and the subscription resumes by
// itself.
func TestServerRestart(t *testing.T) { eachOwnServer(t, true, restartMidStream) }

func restartMidStream(t *testing.T, url string, down, up func()) {
	const n, publishers, window = 3000, 4, 300
	cfg := testConfig(url)
	pub := newAdapter(t, cfg)
	sub := newAdapter(t, cfg)
	topic, group := uniq(t, "t"), "g"
	ctx := ctxT(t, 120*time.Second)

	ch, cancel, err := sub.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := make(map[string]int)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for m := range ch {
			mu.Lock()
			seen[string(m.Value())]++
			mu.Unlock()
			_ = sub.Ack(ctx, group, m) // an ack lost in the restart means a redelivery
		}
	}()
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}

	var next, published atomic.Int64
	acked := make([]atomic.Bool, n)
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				// Stay at most window messages ahead of the consumer, so
				// that the restart happens mid-stream.
				for i >= distinct()+window {
					select {
					case <-tick(ctx):
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
				if err := pub.Publish(ctx, topic, fmt.Appendf(nil, "m-%d", i)); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
					return
				}
				acked[i].Store(true)
				published.Add(1)
			}
		}()
	}

	waitFor(t, 30*time.Second, "a third of the messages to be consumed", func() bool { return distinct() >= n/3 })
	down()
	waitFor(t, 10*time.Second, "the adapters to notice", func() bool {
		return pub.Conn().Status() != natsgo.CONNECTED && sub.Conn().Status() != natsgo.CONNECTED
	})
	// While the server is down publishing fails by the deadline.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := pub.Publish(short, topic, []byte("during-downtime")); err == nil {
		t.Error("publish succeeded while the server was down")
	}
	cancelShort()
	before := published.Load()
	up()
	t.Logf("server back after %d of %d publishes", before, n)

	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	waitFor(t, 60*time.Second, "every published message after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			if acked[i].Load() && seen[fmt.Sprintf("m-%d", i)] == 0 {
				return false
			}
		}
		return true
	})
	cancel()
	<-consumed
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	t.Logf("%d messages, %d delivered more than once", n, dups)
	if pub.Conn().Opts.MaxReconnect != -1 || sub.Conn().Status() != natsgo.CONNECTED {
		t.Errorf("adapter connection not back: %v", sub.Conn().Status())
	}
}

// tick returns a channel that receives after 5ms (or never, once ctx is
// done): the polling interval of waits on conditions.
func tick(ctx context.Context) <-chan time.Time {
	if ctx.Err() != nil {
		return nil
	}
	return time.After(5 * time.Millisecond)
}
