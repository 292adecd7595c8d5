package main

import (
	"context"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
)

// TestNATSAdapter: with no URL, newNATSAdapter runs an embedded server, and
// the adapter round-trips a message through it.
func TestNATSAdapter(t *testing.T) {
	a, err := newNATSAdapter("")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Publish(ctx, "orders", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(eventstream.RecordPublisher); !ok {
		t.Error("the wrapped adapter lost RecordPublisher")
	}
	msgs, stop, err := a.Subscribe(ctx, "orders", "example")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case m := <-msgs:
		if string(m.Value()) != "hello" {
			t.Fatalf("got %q", m.Value())
		}
		if err := a.Ack(ctx, "example", m); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no message")
	}
}
