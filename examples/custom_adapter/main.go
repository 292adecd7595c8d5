// Command custom_adapter runs a distributed eventstream bus over a
// home-made MQAdapter (package inhouse, an in-process queue that implements
// only the four MQAdapter methods) and shows what the bus does with it:
//
//   - what the bus hands the adapter: one CloudEvents JSON envelope per event;
//   - a consumer group with two competing members, and a second group that
//     receives every event too;
//   - an event the handler rejects for good going to the dead-letter topic,
//     with the dead-letter headers as envelope attributes, since this
//     adapter has no broker headers;
//   - the group's committed offset once everything was acknowledged.
//
// Run it with: go run ./examples/custom_adapter
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/examples/custom_adapter/inhouse"
)

// Order is the payload of the "orders" events.
type Order struct {
	ID     string `json:"id"`
	Amount int    `json:"amount"`
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custom_adapter:", err)
		os.Exit(1)
	}
}

// run is the whole example; it writes its narration to w.
func run(w io.Writer) error {
	const topic = "orders"
	orders := []Order{{"o-1", 30}, {"o-2", 12}, {"o-3", -5}, {"o-4", 7}, {"o-5", 99}}
	ctx := context.Background()

	// The adapter is created, and closed, by its owner: bus.Close does not
	// close it.
	queue := inhouse.New()
	defer queue.Close()

	// What crosses the adapter: peek at the raw bytes with a group of our own,
	// straight from the queue, before any bus is involved.
	raw, stopPeek, err := queue.Subscribe(ctx, topic, "wire-peek")
	if err != nil {
		return err
	}
	defer stopPeek()

	var mu sync.Mutex // guards handled and serializes output
	handled := map[string]int{}
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format+"\n", args...)
	}
	progress := make(chan struct{}, 64) // one signal per handler call

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = queue
	cfg.Source = "examples/custom_adapter"
	// Failures are logged (here at warning level and above to stderr) and
	// passed to OnFailure.
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.OnFailure = func(_ context.Context, f *eventstream.Failure) {
		say("OnFailure: %s/%s after %d attempt(s): %v", f.Topic, f.Group, f.Attempts, f.Err)
	}
	bus, err := eventstream.New(cfg)
	if err != nil {
		return err
	}
	defer bus.Close()

	// Group "billing" has two members (think: two replicas of a service);
	// they compete, so each order is billed once.
	bill := func(member string) eventstream.Handler {
		return func(ctx context.Context, e *eventstream.Event) error {
			defer func() { progress <- struct{}{} }()
			var o Order
			if err := e.Unmarshal(&o); err != nil {
				return err
			}
			if o.Amount <= 0 {
				// Retrying cannot fix this: fail it at once.
				return eventstream.Permanent(fmt.Errorf("order %s: amount %d is not positive", o.ID, o.Amount))
			}
			mu.Lock()
			handled[member]++
			mu.Unlock()
			say("billing/%s: billed %s (%d)", member, o.ID, o.Amount)
			return nil
		}
	}
	for _, member := range []string{"replica-a", "replica-b"} {
		// The Subscription returned by On is for bus.Off, which would remove
		// this member alone; bus.Close below ends them all.
		if _, err := bus.On(topic, bill(member), eventstream.WithConsumerGroup("billing"), eventstream.WithConcurrency(2)); err != nil {
			return err
		}
	}

	// Group "audit" receives every order as well.
	_, err = bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
		defer func() { progress <- struct{}{} }()
		mu.Lock()
		handled["audit"]++
		mu.Unlock()
		return nil
	}, eventstream.WithConsumerGroup("audit"))
	if err != nil {
		return err
	}

	// The dead-letter topic of billing is an ordinary topic. The dead letter
	// is the failed event itself plus the dead-letter headers; since the
	// queue cannot carry headers, they travel as envelope attributes.
	dlq := eventstream.DeadLetterTopicName(topic, "billing")
	_, err = bus.On(dlq, func(ctx context.Context, e *eventstream.Event) error {
		defer func() { progress <- struct{}{} }()
		var o Order
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		h := e.Headers
		say("ops: %s received the %s event of order %s: %s/%s gave up after %s attempt(s): %s",
			dlq, e.Type, o.ID, h[eventstream.HeaderDeadLetterTopic], h[eventstream.HeaderDeadLetterGroup],
			h[eventstream.HeaderDeadLetterAttempts], h[eventstream.HeaderDeadLetterError])
		return nil
	}, eventstream.WithConsumerGroup("ops"))
	if err != nil {
		return err
	}

	for _, o := range orders {
		if err := bus.Emit(ctx, topic, o, eventstream.WithType("example.order.created")); err != nil {
			return err
		}
	}
	say("emitted %d orders on %q", len(orders), topic)

	select {
	case m := <-raw:
		say("the adapter stored this for the first order:\n  %s", m.Value())
		if err := queue.Ack(ctx, "wire-peek", m); err != nil {
			return err
		}
	case <-time.After(10 * time.Second):
		return errors.New("nothing reached the queue")
	}

	// Wait for every handler call: billing 5 (one of them fails), audit 5,
	// ops 1 (the dead letter).
	want := 2*len(orders) + 1
	timeout := time.After(10 * time.Second)
	for range want {
		select {
		case <-progress:
		case <-timeout:
			return errors.New("events were not all handled within 10s")
		}
	}
	// Close ends every subscription. It waits for running handlers, and a
	// worker acknowledges a message right after its handler succeeded (or
	// after the dead-letter write), so once Close returned everything handled
	// is acknowledged. The queue is still open: bus.Close does not close it.
	if err := bus.Close(); err != nil {
		return err
	}

	mu.Lock()
	billed := handled["replica-a"] + handled["replica-b"]
	fmt.Fprintf(w, "billing billed %d orders (replica-a %d, replica-b %d; the split varies), audit saw %d\n",
		billed, handled["replica-a"], handled["replica-b"], handled["audit"])
	mu.Unlock()
	say("committed offsets on %q: billing %d, audit %d (of %d messages)",
		topic, queue.Committed(topic, "billing"), queue.Committed(topic, "audit"), len(orders))
	st := bus.Stats()
	say("bus stats: emitted %d, delivered %d, failed %d, dead-lettered %d",
		st.Emitted, st.Delivered, st.Failed, st.DeadLettered)
	return nil
}
