package nats_test

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPublishWithoutAck: a publish whose acknowledgement never comes (a
// plain subscriber holds the subject and no stream does) times out after
// about PublishTimeout and is sent again until its context ends. It frees
// its slot, so more publishes than MaxPendingPublishes still get through,
// and once a stream is back publishing works again.
func TestPublishWithoutAck(t *testing.T) {
	url := sharedURL(t)
	cfg := testConfig(url)
	cfg.PublishTimeout = 200 * time.Millisecond
	cfg.MaxPendingPublishes = 2
	a := newAdapter(t, cfg)
	nc, js := plainJS(t, url)
	topic := uniq(t, "t")
	publish(t, a, topic, "", "first")
	if err := js.DeleteStream(ctxT(t, 10*time.Second), a.StreamName(topic)); err != nil {
		t.Fatal(err)
	}
	sink, err := nc.SubscribeSync(a.Subject(topic)) // takes publishes, never answers
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for i := range 2*cfg.MaxPendingPublishes + 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		err := a.Publish(ctx, topic, []byte("lost"))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("publish %d without acknowledgement: %v, want a deadline error", i, err)
		}
		n, _, err := sink.Pending()
		if err != nil {
			t.Fatal(err)
		}
		if n-seen < 2 {
			t.Errorf("publish %d was sent %d times in 1.5s; with PublishTimeout %v it must be sent again", i, n-seen, cfg.PublishTimeout)
		}
		seen = n
	}
	if err := sink.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// No responders now: the adapter creates the stream again.
	publish(t, a, topic, "", "again")
	ch, _ := subscribe(t, a, topic, "g")
	if m := recv(t, ch); string(m.Value()) != "again" {
		t.Fatalf("got %q, want %q", m.Value(), "again")
	}
}
