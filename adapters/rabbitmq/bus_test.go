package rabbitmq_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
)

// TestDistributedBus runs the distributed bus over the adapter with
// concurrency 8: keyed events reach the group with their key, in order per
// key.
func TestDistributedBus(t *testing.T) {
	const topic = "bus-orders"
	cfg := testConfig(brokerURL(t))
	a := newAdapter(t, cfg)
	bus := newBus(t, a)
	type Order struct{ Customer, Seq int }
	const customers, perCustomer = 8, 50
	var mu sync.Mutex
	last := map[int]int{}
	got := 0
	done := make(chan struct{})
	sub, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
		var o Order
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if e.Key != fmt.Sprintf("c%d", o.Customer) {
			t.Errorf("event key %q for customer %d", e.Key, o.Customer)
		}
		if prev, ok := last[o.Customer]; ok && o.Seq != prev+1 {
			t.Errorf("customer %d: seq %d after %d", o.Customer, o.Seq, prev)
		}
		last[o.Customer] = o.Seq
		if got++; got == customers*perCustomer {
			close(done)
		}
		return nil
	}, eventstream.WithConsumerGroup("billing"), eventstream.WithConcurrency(8))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 60*time.Second)
	for s := range perCustomer {
		for cu := range customers {
			if err := bus.Emit(ctx, topic, Order{cu, s}, eventstream.WithKey(fmt.Sprintf("c%d", cu))); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("received %d events", got)
	}
	if err := bus.Off(sub); err != nil {
		t.Error(err)
	}
}
