package nats_test

import (
	"context"
	"fmt"
	"log"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/adapters/nats/natstest"
)

func ExampleNewAdapter() {
	// An embedded JetStream server; in production, the URL of yours.
	srv, err := natstest.Start(natstest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	a, err := nats.NewAdapter(nats.Config{URL: srv.URL()})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()

	// Publish returns once JetStream stored the message.
	for _, v := range []string{"created", "paid", "shipped"} {
		err := a.PublishRecord(ctx, "orders", eventstream.Record{Key: []byte("order-42"), Value: []byte(v)})
		if err != nil {
			log.Fatal(err)
		}
	}

	// A new group starts at the first retained message.
	msgs, cancel, err := a.Subscribe(ctx, "orders", "billing")
	if err != nil {
		log.Fatal(err)
	}
	defer cancel()
	for range 3 {
		m := <-msgs
		fmt.Printf("%s %s (sequence %d)\n", m.Key(), m.Value(), m.(*nats.Message).Sequence())
		if err := a.Ack(ctx, "billing", m); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("stream", a.StreamName("orders"), "subject", a.Subject("orders"))
	// Output:
	// order-42 created (sequence 1)
	// order-42 paid (sequence 2)
	// order-42 shipped (sequence 3)
	// stream ES_orders subject es.orders
}

func ExampleNewAdapter_bus() {
	srv, err := natstest.Start(natstest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	a, err := nats.NewAdapter(nats.Config{URL: srv.URL()})
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
	done := make(chan struct{})
	_, err = bus.On("greetings", eventstream.Typed(func(_ context.Context, e *eventstream.Event, s string) error {
		fmt.Println("got", s, "key", e.Key)
		close(done)
		return nil
	}), eventstream.WithConsumerGroup("greeters"))
	if err != nil {
		log.Fatal(err)
	}
	if err := bus.Emit(context.Background(), "greetings", "hello", eventstream.WithKey("k")); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// got hello key k
}
