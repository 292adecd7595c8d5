package eventstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
)

func ExampleNew() {
	bus, err := eventstream.New(eventstream.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	done := make(chan struct{})
	_, err = bus.On("greetings", func(ctx context.Context, e *eventstream.Event) error {
		var name string
		if err := e.Unmarshal(&name); err != nil {
			return err
		}
		fmt.Println("hello,", name)
		close(done)
		return nil
	})
	if err != nil {
		panic(err)
	}
	if err := bus.Emit(context.Background(), "greetings", "gopher"); err != nil {
		panic(err)
	}
	<-done
	// Output: hello, gopher
}

func ExampleNew_distributed() {
	// adapters/memory is an in-process broker; use adapters/kafka (or your
	// own MQAdapter) to cross processes.
	broker, err := memory.New(memory.Config{})
	if err != nil {
		panic(err)
	}
	defer broker.Close()

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = broker
	bus, err := eventstream.New(cfg)
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	type Order struct{ ID int }
	done := make(chan struct{})
	sub, err := bus.On("orders", func(ctx context.Context, e *eventstream.Event) error {
		var o Order
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		fmt.Printf("order %d (%s, key %s)\n", o.ID, e.ContentType, e.Key)
		close(done)
		return nil
	}, eventstream.WithConsumerGroup("billing"), eventstream.WithConcurrency(4))
	if err != nil {
		panic(err)
	}
	defer bus.Off(sub)

	if err := bus.Emit(context.Background(), "orders", Order{ID: 42}, eventstream.WithKey("customer-7")); err != nil {
		panic(err)
	}
	<-done
	// Output: order 42 (application/json, key customer-7)
}

func ExampleTyped() {
	bus, err := eventstream.New(eventstream.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	type Temperature struct{ Celsius float64 }
	done := make(chan struct{})
	_, err = bus.On("weather", eventstream.Typed(func(ctx context.Context, e *eventstream.Event, t Temperature) error {
		fmt.Printf("%.1f°C\n", t.Celsius)
		close(done)
		return nil
	}))
	if err != nil {
		panic(err)
	}
	_ = bus.Emit(context.Background(), "weather", Temperature{Celsius: 21.5})
	<-done
	// Output: 21.5°C
}

func ExamplePermanent() {
	cfg := eventstream.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler) // the failure is printed below instead
	failed := make(chan *eventstream.Failure, 1)
	cfg.OnFailure = func(ctx context.Context, f *eventstream.Failure) { failed <- f }
	bus, err := eventstream.New(cfg)
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	_, err = bus.On("payments", func(ctx context.Context, e *eventstream.Event) error {
		// Retrying cannot fix a malformed request: fail at once.
		return eventstream.Permanent(errors.New("invalid card number"))
	})
	if err != nil {
		panic(err)
	}
	_ = bus.Emit(context.Background(), "payments", "1234")
	f := <-failed
	fmt.Printf("failed after %d attempt: %v\n", f.Attempts, f.Err)
	// Output: failed after 1 attempt: invalid card number
}

func ExampleRetryPolicy_Delay() {
	p := &eventstream.RetryPolicy{
		MaxRetries:      5,
		BackoffStrategy: eventstream.BackoffExponential,
		InitialDelay:    100 * time.Millisecond,
		MaxDelay:        time.Second,
		Multiplier:      2,
	}
	for retry := 1; retry <= p.MaxRetries; retry++ {
		fmt.Println(retry, p.Delay(retry))
	}
	// Output:
	// 1 100ms
	// 2 200ms
	// 3 400ms
	// 4 800ms
	// 5 1s
}

// logObserver is a minimal Observer: it stamps a trace field on every
// publish and prints every handler attempt with its outcome.
type logObserver struct{}

func (logObserver) StartPublish(ctx context.Context, info eventstream.PublishInfo, c eventstream.Carrier) (context.Context, func(error)) {
	c.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	return ctx, func(err error) {}
}

func (logObserver) StartProcess(ctx context.Context, info eventstream.ProcessInfo, c eventstream.Carrier) (context.Context, func(error)) {
	return ctx, func(err error) {
		fmt.Printf("%s attempt %d (traceparent %s…): %v\n", info.Topic, info.Attempt, c.Get("traceparent")[:10], err)
	}
}

func ExampleObserver() {
	cfg := eventstream.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Observer = logObserver{}
	cfg.Subscribe.RetryPolicy = &eventstream.RetryPolicy{MaxRetries: 1}
	bus, err := eventstream.New(cfg)
	if err != nil {
		panic(err)
	}
	defer bus.Close()

	done := make(chan struct{})
	first := true
	_, err = bus.On("jobs", func(ctx context.Context, e *eventstream.Event) error {
		if first {
			first = false
			return errors.New("flaky")
		}
		close(done)
		return nil
	})
	if err != nil {
		panic(err)
	}
	_ = bus.Emit(context.Background(), "jobs", "job-1")
	<-done
	_ = bus.Close() // waits for the last hook
	// Output:
	// jobs attempt 1 (traceparent 00-4bf92f3…): flaky
	// jobs attempt 2 (traceparent 00-4bf92f3…): <nil>
}
