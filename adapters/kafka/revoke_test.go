package kafka_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
)

// TestRevokedAcksDropped: a member holding unacknowledged messages loses its
// partition in a rebalance. What it acknowledged before giving the
// partition up is committed; its acks after the new generation started are
// dropped and never committed, so those messages are delivered again.
func TestRevokedAcksDropped(t *testing.T) {
	const topic, group = "revoke", "g-revoke"
	c := startCluster(t, 1, topic)
	commits := observeCommits(c, group)
	cfg := testConfig(c.Addrs())
	cfg.RevokeTimeout = 500 * time.Millisecond
	a1 := newAdapter(t, cfg)
	a2 := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	for _, v := range vals("m", 5) {
		if err := a1.Publish(ctx, topic, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	type delivery struct {
		member int
		msg    *kafka.Message
	}
	deliveries := make(chan delivery, 100)
	forward := func(member int, ch <-chan eventstream.Message) {
		for m := range ch {
			deliveries <- delivery{member, m.(*kafka.Message)}
		}
	}
	ch1, cancel1, err := a1.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	go forward(1, ch1)
	var held []*kafka.Message
	for len(held) < 5 {
		select {
		case d := <-deliveries:
			held = append(held, d.msg)
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	ch2, cancel2, err := a2.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	go forward(2, ch2)
	// Acknowledged while the partition is being given up (or before).
	for _, m := range held[:2] {
		if err := a1.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	// The new generation starts at the committed offset 2: m-2 comes again.
	for {
		select {
		case d := <-deliveries:
			if d.msg.Offset() < 2 {
				t.Fatalf("acknowledged offset %d delivered again", d.msg.Offset())
			}
			if d.msg.Offset() != 2 {
				continue
			}
		case <-ctx.Done():
			t.Fatal("m-2 not redelivered after the rebalance")
		}
		break
	}
	if got := committed(t, c.Addrs(), group, topic)[0]; got != 2 {
		t.Fatalf("committed %d after the rebalance, want 2", got)
	}
	// Late acks of the old generation are dropped.
	for _, m := range held[2:] {
		if err := a1.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	// What is under test is that nothing happens: watch the commits for
	// five commit intervals.
	window := time.NewTimer(5 * cfg.CommitInterval)
	defer window.Stop()
	tick := time.NewTicker(cfg.CommitInterval / 2)
	defer tick.Stop()
	for watching := true; watching; {
		if last := commits.last(0); last > 2 {
			t.Fatalf("late ack committed offset %d under the new generation", last)
		}
		select {
		case <-window.C:
			watching = false
		case <-tick.C:
		}
	}
	cancel1()
	cancel2()
	if got := committed(t, c.Addrs(), group, topic)[0]; got != 2 {
		t.Fatalf("committed %d at the end, want 2", got)
	}
}
