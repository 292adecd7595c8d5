package kafka_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dropConnections closes the client connection of the next n requests with
// key. It returns a counter of the connections dropped so far.
func dropConnections(c *kafkatest.Cluster, key kmsg.Key, n int64) *atomic.Int64 {
	var dropped atomic.Int64
	c.Fake.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		if dropped.Add(1) < n {
			c.Fake.KeepControl()
		} else {
			c.Fake.DropControl() // KeepControl sticks until dropped
		}
		return nil, errors.New("injected connection drop"), true
	})
	return &dropped
}

// TestFaultsRecover injects broker errors and dropped connections on
// produce, fetch and offset commit; the adapter must recover on its own and
// neither lose a message nor fail a publish.
func TestFaultsRecover(t *testing.T) {
	const topic, group, n = "faults", "g-faults", 120
	c := startCluster(t, 3, topic)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 90*time.Second)

	produceErrs := c.Fake.Fault(
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: 4},
		kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 2},
	)
	produceDrops := dropConnections(c, kmsg.Produce, 2)

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 6 {
				if err := a.Publish(ctx, topic, []byte(fmt.Sprintf("m-%d", i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish under faults: %v", err)
	}
	if produceErrs.Hits() == 0 || produceDrops.Load() == 0 {
		t.Fatalf("produce faults not exercised: %d errors, %d drops", produceErrs.Hits(), produceDrops.Load())
	}

	fetchErrs := c.Fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.NotLeaderForPartition, Count: 4})
	fetchDrops := dropConnections(c, kmsg.Fetch, 2)
	commitErrs := c.Fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.CoordinatorLoadInProgress, Count: 3})
	commitDrops := dropConnections(c, kmsg.OffsetCommit, 1)

	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	seen := newCollector()
	wait := consumeAll(t, a, group, ch, seen)
	waitFor(t, 60*time.Second, "every message", func() bool { return seen.distinct() == n })
	// REQUEST_TIMED_OUT faults let the write happen, so retried records
	// may be stored twice: compare with the log end offsets.
	ends := endOffsets(t, c.Addrs(), topic, 3)
	waitFor(t, 60*time.Second, fmt.Sprintf("offsets %v committed", ends), func() bool {
		got := committed(t, c.Addrs(), group, topic)
		for p, end := range ends {
			if got[p] != end {
				return false
			}
		}
		return true
	})
	cancel()
	wait()
	if fetchErrs.Hits() == 0 || fetchDrops.Load() == 0 || commitErrs.Hits() == 0 || commitDrops.Load() == 0 {
		t.Errorf("consumer faults not all exercised: fetch %d errors %d drops, commit %d errors %d drops",
			fetchErrs.Hits(), fetchDrops.Load(), commitErrs.Hits(), commitDrops.Load())
	}
	seen.mu.Lock()
	t.Logf("%d deliveries of %d messages", len(seen.msgs), n)
	seen.mu.Unlock()
}
