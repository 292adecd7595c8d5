// Command distributed_basic runs the distributed bus over Kafka: a producer,
// a consumer group with concurrency and retries, and an event that fails for
// good and lands on its dead-letter topic.
//
//	go run ./examples/distributed_basic                        # embedded broker
//	go run ./examples/distributed_basic -brokers localhost:9092 # your Kafka
//
// KAFKA_BROKERS (comma-separated) works like -brokers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
)

// Order is the payload of the orders topic.
type Order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

func main() {
	brokersFlag := flag.String("brokers", os.Getenv("KAFKA_BROKERS"), "comma-separated Kafka brokers; empty starts an embedded broker")
	adapterFlag := flag.String("adapter", "kafka", "broker to run on: kafka, rabbitmq, nats or redis")
	urlFlag := flag.String("url", "", "broker URL for -adapter rabbitmq, nats or redis (nats: empty starts an embedded server)")
	flag.Parse()
	if err := run(*adapterFlag, *brokersFlag, *urlFlag); err != nil {
		log.Fatal(err)
	}
}

// newAdapter returns the adapter named by -adapter; nil means Kafka.
func newAdapter(name, url string) (eventstream.MQAdapter, error) {
	switch name {
	case "kafka":
		return nil, nil
	case "rabbitmq":
		return newRabbitMQAdapter(url)
	case "nats":
		return newNATSAdapter(url)
	case "redis":
		return newRedisAdapter(url)
	}
	return nil, fmt.Errorf("unknown -adapter %q: want kafka, rabbitmq, nats or redis", name)
}

func run(adapterName, brokerList, url string) error {
	other, err := newAdapter(adapterName, url)
	if err != nil {
		return err
	}
	if other != nil {
		defer other.Close()
		return runBus(other)
	}
	var brokers []string
	if brokerList == "" {
		cluster, err := kafkatest.Start()
		if err != nil {
			return fmt.Errorf("starting the embedded broker: %w", err)
		}
		defer cluster.Close()
		brokers = cluster.Addrs()
		fmt.Println("no -brokers or KAFKA_BROKERS given: started an embedded Kafka-protocol broker at", strings.Join(brokers, ","))
	} else {
		brokers = strings.Split(brokerList, ",")
		fmt.Println("using Kafka at", brokerList)
	}

	kAdapter, err := kafka.NewAdapter(kafka.Config{
		Brokers:          brokers,
		AutoCreateTopics: true,
		TopicPartitions:  3,
		// Short group timeouts make the example start quickly; production
		// settings can keep the defaults.
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: 500 * time.Millisecond,
		RebalanceTimeout:  6 * time.Second,
		CommitInterval:    100 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer kAdapter.Close()
	return runBus(kAdapter)
}

// runBus runs the example's producer and consumers over adapter.
func runBus(adapter eventstream.MQAdapter) error {
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = adapter
	cfg.Source = "examples/distributed_basic"
	bus, err := eventstream.New(cfg)
	if err != nil {
		return err
	}
	defer bus.Close()

	// A topic per run, so that re-running against a real Kafka starts clean.
	topic := fmt.Sprintf("example.orders.%d", time.Now().UnixNano())
	const orders, poison = 10, 7

	var (
		mu       sync.Mutex
		handled  = map[int]bool{}
		attempts = map[int]int{}
		allDone  = make(chan struct{})
	)
	sub, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
		var o Order
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		attempts[o.ID]++
		switch {
		case o.ID == poison:
			fmt.Printf("  order %d: rejected (attempt %d)\n", o.ID, attempts[o.ID])
			return errors.New("amount does not match the invoice")
		case o.ID == 3 && attempts[o.ID] == 1:
			fmt.Printf("  order %d: temporary failure, will be retried\n", o.ID)
			return errors.New("payment service unavailable")
		}
		if !handled[o.ID] {
			handled[o.ID] = true
			fmt.Printf("  order %d for %s: charged %.2f (key %s, partition order kept per customer)\n", o.ID, o.Customer, o.Amount, e.Key)
			if len(handled) == orders-1 {
				close(allDone)
			}
		}
		return nil
	},
		eventstream.WithConsumerGroup("billing"),
		eventstream.WithConcurrency(4),
		eventstream.WithRetryPolicy(&eventstream.RetryPolicy{
			MaxRetries:      2,
			BackoffStrategy: eventstream.BackoffExponential,
			InitialDelay:    50 * time.Millisecond,
			MaxDelay:        time.Second,
			Multiplier:      2.0,
		}),
	)
	if err != nil {
		return err
	}
	defer bus.Off(sub)

	// The dead-letter topic is an ordinary topic: watch it with another group.
	deadLetters := make(chan *eventstream.Event, 1)
	dlq := eventstream.DeadLetterTopicName(topic, "billing")
	dlqSub, err := bus.On(dlq, func(ctx context.Context, e *eventstream.Event) error {
		deadLetters <- e
		return nil
	}, eventstream.WithConsumerGroup("ops"))
	if err != nil {
		return err
	}
	defer bus.Off(dlqSub)

	fmt.Printf("emitting %d orders to %s\n", orders, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 1; i <= orders; i++ {
		o := Order{ID: i, Customer: fmt.Sprintf("customer-%d", i%3), Amount: float64(i) * 12.5}
		start := time.Now()
		if err := bus.Emit(ctx, topic, o, eventstream.WithKey(o.Customer)); err != nil {
			return err
		}
		if i == 1 {
			fmt.Printf("first Emit acknowledged by the broker in %v\n", time.Since(start).Round(time.Microsecond))
		}
	}

	select {
	case <-allDone:
	case <-ctx.Done():
		return errors.New("timed out waiting for the orders to be handled")
	}
	select {
	case dl := <-deadLetters:
		fmt.Printf("dead letter on %s: original event %s, error %q after %s attempts\n",
			dlq, dl.ID, dl.Headers[eventstream.HeaderDeadLetterError], dl.Headers[eventstream.HeaderDeadLetterAttempts])
	case <-ctx.Done():
		return errors.New("timed out waiting for the dead letter")
	}

	st := bus.Stats()
	fmt.Printf("stats: emitted=%d delivered=%d retried=%d failed=%d dead-lettered=%d\n",
		st.Emitted, st.Delivered, st.Retried, st.Failed, st.DeadLettered)
	return nil
}
