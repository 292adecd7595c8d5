package redis_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
)

// ExampleNewAdapter runs a distributed bus over Redis Streams. (It needs a
// Redis server, so it is compiled but not run by go test.)
func ExampleNewAdapter() {
	ad, err := redis.NewAdapter(redis.Config{
		Addr:   "127.0.0.1:6379",
		MaxLen: 100_000, // bounded streams; never trims what a group has not acknowledged
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ad.Close()

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = ad
	bus, err := eventstream.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()

	type OrderPlaced struct{ ID string }
	_, err = bus.On("orders", eventstream.Typed(func(ctx context.Context, e *eventstream.Event, o OrderPlaced) error {
		fmt.Println("order", o.ID, "key", e.Key)
		return nil
	}), eventstream.WithConsumerGroup("billing"), eventstream.WithConcurrency(8))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Emit(ctx, "orders", OrderPlaced{ID: "o-1"}, eventstream.WithKey("customer-7")); err != nil {
		log.Fatal(err)
	}
}

// ExampleConfig_sentinel connects through Redis Sentinel and takes over the
// entries of a crashed consumer after 10 seconds.
func ExampleConfig_sentinel() {
	ad, err := redis.NewAdapter(redis.Config{
		MasterName:    "mymaster",
		SentinelAddrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"},
		Password:      "secret",
		ClaimIdle:     10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ad.Close()
}
