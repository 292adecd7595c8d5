package memory_test

import (
	"context"
	"fmt"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
)

func Example() {
	a, err := memory.New(memory.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	ctx := context.Background()

	// Messages with the same key keep their order.
	for _, v := range []string{"created", "paid", "shipped"} {
		err := a.PublishRecord(ctx, "orders", eventstream.Record{Key: []byte("order-42"), Value: []byte(v)})
		if err != nil {
			panic(err)
		}
	}

	// A new group starts at the earliest retained message.
	msgs, cancel, err := a.Subscribe(ctx, "orders", "billing")
	if err != nil {
		panic(err)
	}
	defer cancel()
	for range 3 {
		m := <-msgs
		fmt.Printf("%s %s (partition %d, offset %d)\n", m.Key(), m.Value(), m.(*memory.Message).Partition(), m.(*memory.Message).Offset())
		if err := a.Ack(ctx, "billing", m); err != nil {
			panic(err)
		}
	}
	// Output:
	// order-42 created (partition 0, offset 0)
	// order-42 paid (partition 0, offset 1)
	// order-42 shipped (partition 0, offset 2)
}
