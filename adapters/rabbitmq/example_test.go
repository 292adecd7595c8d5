package rabbitmq_test

import (
	"context"
	"fmt"
	"log"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
)

// A distributed bus on RabbitMQ. The "billing" group of topic "orders" is
// declared up front, so it keeps every order published from now on, even
// before a member subscribes.
func ExampleNewAdapter() {
	a, err := rabbitmq.NewAdapter(rabbitmq.Config{
		URL:    "amqp://guest:guest@127.0.0.1:5672/",
		Groups: map[string][]string{"orders": {"billing"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	bus, err := eventstream.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Emit(ctx, "orders", map[string]int{"id": 1}, eventstream.WithKey("customer-7")); err != nil {
		log.Fatal(err) // wraps rabbitmq.ErrUnroutable if no group existed
	}
}

// Partitioned mode: per-key order across all members of a group.
func ExampleConfig_partitions() {
	a, err := rabbitmq.NewAdapter(rabbitmq.Config{
		URL:        "amqp://guest:guest@127.0.0.1:5672/",
		Partitions: 8,
		Prefetch:   512,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	fmt.Println(a.MessagingSystem())
	// Output: rabbitmq
}
