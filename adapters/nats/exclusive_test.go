package nats_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
)

// TestExclusive: with Config.Exclusive one member of a group receives
// everything, in order, while the other stands by; when the first ends, the
// other takes over. The embedded server (2.15) has pinned consumers.
func TestExclusive(t *testing.T) {
	cfg := testConfig(sharedURL(t))
	cfg.Exclusive = true
	cfg.PullExpiry = time.Second
	cfg.PinnedTTL = 2 * time.Second
	a := newAdapter(t, cfg)
	topic, group := uniq(t, "t"), "g"
	chA, cancelA := subscribe(t, a, topic, group)
	chB, cancelB := subscribe(t, a, topic, group)

	const n = 40
	for i := range n {
		publish(t, a, topic, fmt.Sprintf("k%d", i%3), fmt.Sprint(i))
	}
	var pinned, other <-chan eventstream.Message
	var cancelPinned func()
	got := 0
	for got < n {
		select {
		case m := <-chA:
			if pinned == nil {
				pinned, other, cancelPinned = chA, chB, cancelA
			} else if pinned != chA {
				t.Fatalf("message %q reached the member that is not pinned", m.Value())
			}
			if string(m.Value()) != fmt.Sprint(got) {
				t.Fatalf("received %q, want %d (stream order)", m.Value(), got)
			}
			ack(t, a, group, m)
			got++
		case m := <-chB:
			if pinned == nil {
				pinned, other, cancelPinned = chB, chA, cancelB
			} else if pinned != chB {
				t.Fatalf("message %q reached the member that is not pinned", m.Value())
			}
			if string(m.Value()) != fmt.Sprint(got) {
				t.Fatalf("received %q, want %d (stream order)", m.Value(), got)
			}
			ack(t, a, group, m)
			got++
		case <-time.After(timeout):
			t.Fatalf("received %d of %d", got, n)
		}
	}
	cancelPinned()
	publish(t, a, topic, "k", "after")
	m := recv(t, other)
	if string(m.Value()) != "after" {
		t.Fatalf("standby member received %q, want after", m.Value())
	}
	ack(t, a, group, m)
}

// TestExclusiveNeedsServer211: nats-server 2.9 has no pinned consumers.
func TestExclusiveNeedsServer211(t *testing.T) {
	cfg := testConfig(systemServer(t))
	cfg.Exclusive = true
	a := newAdapter(t, cfg)
	if os.Getenv("NATS_URL") != "" {
		t.Skip("NATS_URL names a server of unknown version")
	}
	_, _, err := a.Subscribe(context.Background(), "t", "g")
	if !errors.Is(err, nats.ErrNotSupported) {
		t.Fatalf("Subscribe with Exclusive on %s: %v, want ErrNotSupported", a.Conn().ConnectedServerVersion(), err)
	}
}
