package kafka_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestPublishQueueBounded stalls the broker's produce handling and checks
// that a full partition queue blocks Publish until its context is done,
// and that nothing is reported published before the broker answered.
func TestPublishQueueBounded(t *testing.T) {
	const topic = "bounded"
	c := startCluster(t, 1, topic)
	release := make(chan struct{})
	var stalled atomic.Bool
	c.Fake.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if stalled.CompareAndSwap(false, true) {
			c.Fake.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	cfg := testConfig(c.Addrs())
	cfg.MaxBufferedRecords = 2
	cfg.ProduceTimeout = 20 * time.Second
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)

	var wg sync.WaitGroup
	var done atomic.Int64
	publish := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Publish(ctx, topic, []byte("x")); err != nil {
				t.Error(err)
			}
			done.Add(1)
		}()
	}
	publish() // taken by the writer; its request stalls in the broker
	waitFor(t, 10*time.Second, "produce request to stall", stalled.Load)
	publish() // queued
	publish() // queued: the queue is full
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := a.Publish(short, topic, []byte("overflow")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish into a full queue: %v, want deadline exceeded", err)
	}
	if n := done.Load(); n != 0 {
		t.Fatalf("%d publishes returned before the broker answered", n)
	}
	close(release)
	wg.Wait()
	if n := done.Load(); n != 3 {
		t.Fatalf("%d of 3 publishes completed", n)
	}
}

// TestMaxInFlightPerPartition checks that a partition delivers no more than
// MaxInFlightPerPartition unacknowledged messages.
func TestMaxInFlightPerPartition(t *testing.T) {
	const topic, group = "inflight", "g-inflight"
	c := startCluster(t, 1, topic)
	cfg := testConfig(c.Addrs())
	cfg.MaxInFlightPerPartition = 3
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 10; i++ {
		if err := a.Publish(ctx, topic, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	recv := func() {
		t.Helper()
		select {
		case m := <-ch:
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	var held []eventstream.Message
	for i := 0; i < 3; i++ {
		select {
		case m := <-ch:
			held = append(held, m)
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	select {
	case m := <-ch:
		t.Fatalf("fourth message %v delivered with 3 unacknowledged", m.Value())
	case <-time.After(300 * time.Millisecond):
	}
	// Acknowledge them; the rest flows.
	for _, m := range held {
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	for i := 3; i < 10; i++ {
		recv()
	}
}

// TestPublishTooLarge: a record larger than the topic's max.message.bytes
// fails at once with ErrMessageTooLarge, is never sent, and does not hold
// up the partition. (Real Kafka: TestRealOversizedMessage.)
func TestPublishTooLarge(t *testing.T) {
	const topic = "too-large"
	c := startCluster(t, 1, topic)
	var produced atomic.Int64
	c.Fake.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		produced.Add(1)
		return nil, nil, false
	})
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)
	if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil { // learns the limit
		t.Fatal(err)
	}
	before := produced.Load()
	if before == 0 {
		t.Fatal("the produce request of the warm-up record was not seen")
	}
	err := a.Publish(ctx, topic, make([]byte, 2<<20))
	if !errors.Is(err, kafka.ErrMessageTooLarge) {
		t.Fatalf("publish of 2 MiB: %v, want an error wrapping ErrMessageTooLarge", err)
	}
	if n := produced.Load() - before; n != 0 {
		t.Errorf("%d produce requests for a record the adapter knew to be too large", n)
	}
	if err := a.Publish(ctx, topic, []byte("next")); err != nil {
		t.Fatalf("publish after the refused record: %v", err)
	}
}

// TestCloseEndsRetryingPublish: a Publish retrying because no broker
// answers ends with ErrAdapterClosed when the adapter is closed, not when
// its own context ends.
func TestCloseEndsRetryingPublish(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	a, err := kafka.NewAdapter(testConfig([]string{addr}))
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		attempts.Add(1)
		done <- a.Publish(ctx, "unreachable", []byte("x"))
	}()
	waitFor(t, 10*time.Second, "the publish to start", func() bool { return attempts.Load() == 1 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstream.ErrAdapterClosed) {
			t.Fatalf("retrying publish after Close: %v, want an error wrapping ErrAdapterClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a retrying publish did not end within 10s of Close")
	}
}
