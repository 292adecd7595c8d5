package rabbitmq_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
)

// TestAckCoalescing: acks are coalesced into multiple acks, but a message
// held unacknowledged does not stall the prefetch window (the others are
// acknowledged one by one), and no ack is lost: after everything was
// acknowledged, a new subscription's first message is one published
// afterwards, not a redelivery.
func TestAckCoalescing(t *testing.T) {
	url := brokerURL(t)
	const group, n = "g", 40
	topic := fmt.Sprintf("ack-coalescing-%d", time.Now().UnixNano()) // a new queue per run (-count)
	ctx := ctxT(t, 60*time.Second)
	cfg := testConfig(url)
	cfg.Prefetch = 8
	a := newAdapter(t, cfg)
	if err := a.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := a.Publish(ctx, topic, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	var held []*rabbitmq.Message
	for i := range n {
		m := recv(t, ch, 20*time.Second, fmt.Sprintf("message %d of %d (while %d are held)", i, n, len(held)))
		if string(m.Value()) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q", i, m.Value())
		}
		if i%10 == 0 {
			held = append(held, m) // acknowledged at the end
			continue
		}
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range held {
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
		if err := a.Ack(ctx, group, m); err != nil { // twice: harmless
			t.Fatal(err)
		}
	}
	cancel()

	if err := a.Publish(ctx, topic, []byte("after")); err != nil {
		t.Fatal(err)
	}
	ch2, cancel2, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	if m := recv(t, ch2, 20*time.Second, "the message published after"); string(m.Value()) != "after" {
		t.Fatalf("first message of the new subscription is %q (redelivered %v): an ack was lost", m.Value(), m.Redelivered())
	}
}
