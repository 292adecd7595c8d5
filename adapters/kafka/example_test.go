package kafka_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
)

// ExampleNewAdapter runs a distributed bus over Kafka. The broker here is
// the embedded one of package kafkatest; with a real cluster, Brokers lists
// its addresses (for example "localhost:9092").
func ExampleNewAdapter() {
	cluster, err := kafkatest.Start(kfake.SeedTopics(3, "orders", "orders.billing.dlq"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()

	adapter, err := kafka.NewAdapter(kafka.Config{Brokers: cluster.Addrs()})
	if err != nil {
		panic(err)
	}
	defer adapter.Close() // after the bus: defers run last-in first-out

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = adapter
	cfg.Logger = slog.New(slog.DiscardHandler)
	bus, err := eventstream.New(cfg)
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	type Order struct {
		ID     string `json:"id"`
		Amount int    `json:"amount"`
	}
	done := make(chan Order, 1)
	_, err = bus.On("orders", eventstream.Typed(func(ctx context.Context, e *eventstream.Event, o Order) error {
		done <- o
		return nil
	}), eventstream.WithConsumerGroup("billing"))
	if err != nil {
		panic(err)
	}
	if err := bus.Emit(context.Background(), "orders", Order{ID: "o-1", Amount: 5}, eventstream.WithKey("customer-7")); err != nil {
		panic(err)
	}
	o := <-done
	fmt.Printf("billing got order %s for %d\n", o.ID, o.Amount)
	// Output: billing got order o-1 for 5
}
