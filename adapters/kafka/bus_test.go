package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
)

// TestDistributedBus runs the distributed bus over the Kafka adapter: keyed
// events reach a consumer group with their key, in order per key.
func TestDistributedBus(t *testing.T) {
	const topic = "bus-orders"
	c := startCluster(t, 3, topic)
	a := newAdapter(t, testConfig(c.Addrs()))
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type Order struct{ Customer, Seq int }
	const customers, perCustomer = 4, 25
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
	}, eventstream.WithConsumerGroup("billing"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 30*time.Second)
	for s := 0; s < perCustomer; s++ {
		for cu := 0; cu < customers; cu++ {
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
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}
