// Command memory_basic shows the memory bus: one subscription, typed
// payloads, keys, a retried handler and a clean shutdown.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
)

// OrderCreated is the payload of the "orders.created" topic.
type OrderCreated struct {
	ID     int
	Amount float64
}

func main() {
	bus, err := eventstream.New(eventstream.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}

	var wg sync.WaitGroup
	wg.Add(3)
	failedOnce := false
	sub, err := bus.On("orders.created", func(ctx context.Context, e *eventstream.Event) error {
		var o OrderCreated
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		if o.ID == 2 && !failedOnce {
			failedOnce = true // one handler goroutine (concurrency 1): no race
			fmt.Printf("order %d: temporary failure, the bus will retry\n", o.ID)
			return errors.New("database busy")
		}
		fmt.Printf("order %d handled: amount %.2f, key %q, event %s\n", o.ID, o.Amount, e.Key, e.ID)
		wg.Done()
		return nil
	}, eventstream.WithRetryPolicy(&eventstream.RetryPolicy{
		MaxRetries:      3,
		BackoffStrategy: eventstream.BackoffExponential,
		InitialDelay:    10 * time.Millisecond,
		MaxDelay:        100 * time.Millisecond,
		Multiplier:      2,
	}))
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		o := OrderCreated{ID: i, Amount: float64(i) * 9.99}
		if err := bus.Emit(ctx, "orders.created", o, eventstream.WithKey(fmt.Sprint("customer-", i%2))); err != nil {
			log.Fatal(err)
		}
	}
	wg.Wait()

	if err := bus.Off(sub); err != nil {
		log.Fatal(err)
	}
	st := bus.Stats()
	fmt.Printf("stats: emitted=%d delivered=%d retried=%d failed=%d\n", st.Emitted, st.Delivered, st.Retried, st.Failed)
	if err := bus.Close(); err != nil {
		log.Fatal(err)
	}
}
