package redis_test

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// Entries read into a subscription's channel buffer but not received when
// the subscription ends are not delivered by it: they go back to the group,
// and the next member receives every one of them.
func TestBufferedEntriesHandedBack(t *testing.T) {
	br := sharedBroker(t)
	cfg := testConfig(br.Addr())
	cfg.ReadCount = 8
	a := newAdapter(t, cfg)
	ctx := testContext(t, time.Minute)
	topic := uniqueTopic(t)

	msgs, cancel, err := a.Subscribe(ctx, topic, "g")
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		if err := a.Publish(ctx, topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the entries to fill the channel buffer", func() bool { return len(msgs) == n })
	cancel()
	for m := range msgs {
		t.Errorf("entry %s delivered after cancel returned", m.Value())
	}

	msgs2, cancel2, err := a.Subscribe(ctx, topic, "g")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	seen := map[string]bool{}
	for len(seen) < n {
		m := recv(t, msgs2, 10*time.Second)
		seen[string(m.Value())] = true
		if err := a.Ack(context.Background(), "g", m); err != nil {
			t.Fatal(err)
		}
	}
}
