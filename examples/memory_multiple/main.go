// Command memory_multiple shows consumer groups on the memory bus: every
// group receives every event, and subscriptions in one group share the work.
package main

import (
	"context"
	"fmt"
	"log"
	"sort"
	"sync"

	"github.com/eventstream-go/eventstream"
)

func main() {
	bus, err := eventstream.New(eventstream.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()

	const events = 20
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		byWho = map[string]int{}
	)
	wg.Add(3 * events) // billing, shipping and audit each see every event
	count := func(who string) eventstream.Handler {
		return func(ctx context.Context, e *eventstream.Event) error {
			mu.Lock()
			byWho[who]++
			mu.Unlock()
			wg.Done()
			return nil
		}
	}
	subscribe := func(who, group string, concurrency int) {
		if _, err := bus.On("orders", count(who), eventstream.WithConsumerGroup(group), eventstream.WithConcurrency(concurrency)); err != nil {
			log.Fatal(err)
		}
	}
	// Two competing members of the billing group, one shipping subscriber
	// with four workers, and an audit subscriber.
	subscribe("billing-1", "billing", 1)
	subscribe("billing-2", "billing", 1)
	subscribe("shipping", "shipping", 4)
	subscribe("audit", "audit", 1)

	for i := range events {
		if err := bus.Emit(context.Background(), "orders", i); err != nil {
			log.Fatal(err)
		}
	}
	wg.Wait()

	names := make([]string, 0, len(byWho))
	for n := range byWho {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%-10s handled %2d events\n", n, byWho[n])
	}
	fmt.Printf("billing group total: %d (each event once across its members)\n", byWho["billing-1"]+byWho["billing-2"])
}
