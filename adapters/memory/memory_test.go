package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/adaptertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const timeout = 5 * time.Second

func TestContract(t *testing.T) {
	for _, cfg := range []memory.Config{
		{},
		{Partitions: 3},
		{Partitions: 16, Retention: 10_000},
	} {
		t.Run(fmt.Sprintf("partitions=%d", cfg.Partitions), func(t *testing.T) {
			adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
				return newAdapter(t, cfg)
			})
		})
	}
}

func newAdapter(t *testing.T, cfg memory.Config) *memory.Adapter {
	t.Helper()
	a, err := memory.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func subscribe(t *testing.T, a *memory.Adapter, topic, group string) (<-chan eventstream.Message, func()) {
	t.Helper()
	ch, cancel, err := a.Subscribe(context.Background(), topic, group)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", topic, group, err)
	}
	t.Cleanup(cancel)
	return ch, cancel
}

func publish(t *testing.T, a *memory.Adapter, topic, key, value string) {
	t.Helper()
	r := eventstream.Record{Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	if err := a.PublishRecord(context.Background(), topic, r); err != nil {
		t.Fatalf("PublishRecord(%q, %q): %v", topic, value, err)
	}
}

func recv(t *testing.T, ch <-chan eventstream.Message) *memory.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed unexpectedly")
		}
		return m.(*memory.Message)
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
		return nil
	}
}

func ack(t *testing.T, a *memory.Adapter, group string, m eventstream.Message) {
	t.Helper()
	if err := a.Ack(context.Background(), group, m); err != nil {
		t.Fatalf("Ack(%q, %q): %v", group, m.Value(), err)
	}
}

func waitClosed(t *testing.T, ch <-chan eventstream.Message) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("channel not closed within %v", timeout)
		}
	}
}

// keyFor returns a key that the adapter puts in partition p of n.
func keyFor(p, n int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("key-%d", i)
		if memory.PartitionOf([]byte(k), n) == p {
			return k
		}
	}
}

func TestNewConfig(t *testing.T) {
	for _, cfg := range []memory.Config{{Partitions: -1}, {Retention: -1}, {RetentionBytes: -1}} {
		a, err := memory.New(cfg)
		if !errors.Is(err, eventstream.ErrInvalidConfig) {
			t.Errorf("New(%+v) error = %v, want ErrInvalidConfig", cfg, err)
		}
		if a != nil {
			t.Errorf("New(%+v) returned an adapter with an error", cfg)
		}
	}

	// The zero Config uses DefaultPartitions: unkeyed messages go
	// round-robin over them.
	a := newAdapter(t, memory.Config{})
	for i := range 2 * memory.DefaultPartitions {
		publish(t, a, "t", "", fmt.Sprint(i))
	}
	ch, _ := subscribe(t, a, "t", "g")
	seen := map[int]int{}
	for range 2 * memory.DefaultPartitions {
		m := recv(t, ch)
		seen[m.Partition()]++
	}
	for p := range memory.DefaultPartitions {
		if seen[p] != 2 {
			t.Errorf("partition %d got %d of the unkeyed messages, want 2 (round-robin); all: %v", p, seen[p], seen)
		}
	}
}

func TestInvalidArguments(t *testing.T) {
	a := newAdapter(t, memory.Config{})
	ctx := context.Background()
	if err := a.Publish(ctx, "", nil); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Errorf("Publish to empty topic: %v, want ErrEmptyTopic", err)
	}
	if _, _, err := a.Subscribe(ctx, "", "g"); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Errorf("Subscribe to empty topic: %v, want ErrEmptyTopic", err)
	}
	if _, _, err := a.Subscribe(ctx, "t", ""); !errors.Is(err, eventstream.ErrNoConsumerGroup) {
		t.Errorf("Subscribe with empty group: %v, want ErrNoConsumerGroup", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Publish(done, "t", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with done context: %v, want context.Canceled", err)
	}
	if _, _, err := a.Subscribe(done, "t", "g"); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with done context: %v, want context.Canceled", err)
	}
}

func TestOffsetsAndRecordFields(t *testing.T) {
	a := newAdapter(t, memory.Config{})
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	for i := range 3 {
		err := a.PublishRecord(context.Background(), "t", eventstream.Record{
			Key:     []byte("k"),
			Value:   []byte(fmt.Sprint(i)),
			Headers: map[string]string{"i": fmt.Sprint(i)},
			Time:    ts,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ch, _ := subscribe(t, a, "t", "g")
	want := memory.PartitionOf([]byte("k"), memory.DefaultPartitions)
	for i := range 3 {
		m := recv(t, ch)
		if m.Partition() != want || m.Offset() != int64(i) || string(m.Value()) != fmt.Sprint(i) {
			t.Errorf("message %d: partition %d offset %d value %q, want partition %d offset %d", i, m.Partition(), m.Offset(), m.Value(), want, i)
		}
		if !m.Timestamp().Equal(ts) || m.Headers()["i"] != fmt.Sprint(i) || m.Topic() != "t" || string(m.Key()) != "k" {
			t.Errorf("message %d: unexpected fields %v %v %q %q", i, m.Timestamp(), m.Headers(), m.Topic(), m.Key())
		}
	}
}

func TestRetention(t *testing.T) {
	a := newAdapter(t, memory.Config{Partitions: 1, Retention: 3})
	for i := range 3 {
		publish(t, a, "t", "", fmt.Sprint(i))
	}
	err := a.Publish(context.Background(), "t", []byte("3"))
	if !errors.Is(err, memory.ErrTopicFull) {
		t.Fatalf("Publish to a full topic: %v, want ErrTopicFull", err)
	}
	// Other topics have their own limit.
	publish(t, a, "other", "", "x")

	// Two groups subscribe: messages are released only once both
	// acknowledged them.
	ch1, _ := subscribe(t, a, "t", "g1")
	ch2, _ := subscribe(t, a, "t", "g2")
	var msgs1, msgs2 []*memory.Message
	for range 3 {
		msgs1 = append(msgs1, recv(t, ch1))
		msgs2 = append(msgs2, recv(t, ch2))
	}
	// Out of order: acking offset 1 alone releases nothing.
	ack(t, a, "g1", msgs1[1])
	ack(t, a, "g2", msgs2[1])
	if err := a.Publish(context.Background(), "t", []byte("3")); !errors.Is(err, memory.ErrTopicFull) {
		t.Fatalf("Publish after out-of-order acks: %v, want ErrTopicFull", err)
	}
	ack(t, a, "g1", msgs1[0])
	if err := a.Publish(context.Background(), "t", []byte("3")); !errors.Is(err, memory.ErrTopicFull) {
		t.Fatalf("Publish after only one group acknowledged: %v, want ErrTopicFull", err)
	}
	ack(t, a, "g2", msgs2[0]) // offsets 0 and 1 are now acked by both
	publish(t, a, "t", "", "3")
	publish(t, a, "t", "", "4")
	if err := a.Publish(context.Background(), "t", []byte("5")); !errors.Is(err, memory.ErrTopicFull) {
		t.Fatalf("Publish beyond retention: %v, want ErrTopicFull", err)
	}

	// A group subscribing now starts at the earliest retained message.
	ch3, _ := subscribe(t, a, "t", "g3")
	if m := recv(t, ch3); m.Offset() != 2 || string(m.Value()) != "2" {
		t.Errorf("new group starts at offset %d (%q), want 2", m.Offset(), m.Value())
	}
}

func TestReassignmentOnLeave(t *testing.T) {
	const n = 4
	a := newAdapter(t, memory.Config{Partitions: n})
	chA, _ := subscribe(t, a, "t", "g")
	chB, cancelB := subscribe(t, a, "t", "g")

	const perPartition = 3
	for i := range perPartition {
		for p := range n {
			publish(t, a, "t", keyFor(p, n), fmt.Sprintf("p%d-%d", p, i))
		}
	}

	// Each member receives whole partitions; A acknowledges, B does not.
	owner := map[int]string{}
	gotB := map[string]bool{}
	for range n * perPartition {
		var m *memory.Message
		var who string
		select {
		case v := <-chA:
			m, who = v.(*memory.Message), "A"
			ack(t, a, "g", m)
		case v := <-chB:
			m, who = v.(*memory.Message), "B"
			gotB[string(m.Value())] = true
		case <-time.After(timeout):
			t.Fatal("timeout")
		}
		if prev, ok := owner[m.Partition()]; ok && prev != who {
			t.Fatalf("partition %d delivered to both members", m.Partition())
		}
		owner[m.Partition()] = who
	}
	if len(gotB) == 0 || len(gotB) == n*perPartition {
		t.Fatalf("B received %d of %d messages, want a share", len(gotB), n*perPartition)
	}

	// B leaves: its unacknowledged messages go to A, in partition order.
	cancelB()
	waitClosed(t, chB)
	next := map[int]int{}
	for range len(gotB) {
		m := recv(t, chA)
		if !gotB[string(m.Value())] {
			t.Fatalf("A received %q, want only B's unacknowledged messages", m.Value())
		}
		if want := fmt.Sprintf("p%d-%d", m.Partition(), next[m.Partition()]); string(m.Value()) != want {
			t.Errorf("A received %q, want %q (partition order)", m.Value(), want)
		}
		next[m.Partition()]++
		ack(t, a, "g", m)
	}
	// Nothing else is pending: the next message A receives is a new one.
	publish(t, a, "t", "", "sentinel")
	if m := recv(t, chA); string(m.Value()) != "sentinel" {
		t.Errorf("A received %q, want the sentinel", m.Value())
	}
}

func TestStaleAck(t *testing.T) {
	const n = 2
	a := newAdapter(t, memory.Config{Partitions: n})
	key := keyFor(1, n)
	chA, cancelA := subscribe(t, a, "t", "g")
	publish(t, a, "t", key, "m")
	mA := recv(t, chA) // A owns both partitions

	// B joins and takes partition 1 over, resuming at the committed offset:
	// m comes again.
	chB, cancelB := subscribe(t, a, "t", "g")
	mB := recv(t, chB)
	if string(mB.Value()) != "m" || mB.Offset() != mA.Offset() {
		t.Fatalf("B received %q at offset %d, want the redelivery of m", mB.Value(), mB.Offset())
	}
	// A acknowledges with its stale assignment, B acknowledges too; both
	// are harmless.
	ack(t, a, "g", mA)
	ack(t, a, "g", mB)
	ack(t, a, "g", mA)
	cancelA()
	cancelB()

	ch, _ := subscribe(t, a, "t", "g")
	publish(t, a, "t", key, "sentinel")
	if m := recv(t, ch); string(m.Value()) != "sentinel" {
		t.Errorf("received %q after it was acknowledged, want the sentinel", m.Value())
	}
}

func TestAckErrors(t *testing.T) {
	a := newAdapter(t, memory.Config{})
	other := newAdapter(t, memory.Config{})
	publish(t, a, "t", "", "m")
	publish(t, other, "t", "", "m")
	ch, _ := subscribe(t, a, "t", "g")
	m := recv(t, ch)
	chOther, _ := subscribe(t, other, "t", "g")
	mOther := recv(t, chOther)

	ctx := context.Background()
	if err := a.Ack(ctx, "g", mOther); err == nil {
		t.Error("Ack of another adapter's message succeeded")
	}
	if err := a.Ack(ctx, "g", nil); err == nil {
		t.Error("Ack of nil succeeded")
	}
	if err := a.Ack(ctx, "other-group", m); err == nil {
		t.Error("Ack for a group the message was not delivered to succeeded")
	}
	ack(t, a, "g", m)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ack(ctx, "g", m); !errors.Is(err, eventstream.ErrAdapterClosed) {
		t.Errorf("Ack after Close: %v, want ErrAdapterClosed", err)
	}
}

// Deliveries are private copies: a consumer modifying a message does not
// change what anyone else receives.
func TestMessagesAreCopies(t *testing.T) {
	a := newAdapter(t, memory.Config{})
	value := []byte("original")
	if err := a.PublishRecord(context.Background(), "t", eventstream.Record{Key: []byte("k"), Value: value}); err != nil {
		t.Fatal(err)
	}
	copy(value, "XXXXXXXX") // the adapter kept its own copy

	ch1, _ := subscribe(t, a, "t", "g1")
	ch2, _ := subscribe(t, a, "t", "g2")
	m1 := recv(t, ch1)
	copy(m1.Value(), "YYYYYYYY")
	m1.Key()[0] = 'Z'
	if m2 := recv(t, ch2); string(m2.Value()) != "original" || string(m2.Key()) != "k" {
		t.Errorf("other group received %q/%q, want original/k", m2.Value(), m2.Key())
	}
}

// A subscription whose consumer stopped reading still ends promptly on
// cancel and on Close, and its messages are delivered again.
func TestEndWhileBlocked(t *testing.T) {
	a := newAdapter(t, memory.Config{})
	for i := range 10 {
		publish(t, a, "t", "", fmt.Sprint(i))
	}
	ch, cancel := subscribe(t, a, "t", "g")
	recv(t, ch) // the goroutine is now blocked sending the next one
	cancel()
	waitClosed(t, ch)

	ch, _ = subscribe(t, a, "t", "g")
	got := map[string]bool{}
	for range 10 {
		got[string(recv(t, ch).Value())] = true
	}
	if len(got) != 10 {
		t.Errorf("resubscription received %d distinct messages, want 10", len(got))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ch)
}

func TestCancelConcurrently(t *testing.T) {
	a := newAdapter(t, memory.Config{})
	ch, cancel := subscribe(t, a, "t", "g")
	done := make(chan struct{})
	for range 4 {
		go func() {
			cancel()
			done <- struct{}{}
		}()
	}
	for range 4 {
		select {
		case <-done:
		case <-time.After(timeout):
			t.Fatal("cancel did not return")
		}
	}
	waitClosed(t, ch)
}

func TestRetentionBytes(t *testing.T) {
	a := newAdapter(t, memory.Config{Partitions: 1, RetentionBytes: 10})
	publish(t, a, "t", "", "12345")
	publish(t, a, "t", "", "67890")
	if err := a.Publish(context.Background(), "t", []byte("x")); !errors.Is(err, memory.ErrTopicFull) {
		t.Fatalf("Publish beyond RetentionBytes: %v, want ErrTopicFull", err)
	}
	if err := a.Publish(context.Background(), "big", make([]byte, 11)); !errors.Is(err, memory.ErrTopicFull) {
		t.Fatalf("Publish of a message larger than RetentionBytes: %v, want ErrTopicFull", err)
	}
	ch, _ := subscribe(t, a, "t", "g")
	for range 2 {
		ack(t, a, "g", recv(t, ch))
	}
	// The acknowledged bytes are released.
	if err := a.Publish(context.Background(), "t", []byte("1234567890")); err != nil {
		t.Fatalf("Publish after everything was acknowledged: %v", err)
	}
}
