package nats_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
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

// TestExclusiveBusKeyOrder: two members of a group (two buses, each with its
// own adapter, handler concurrency 4) on an Exclusive consumer, and the
// pinned member leaves (Off) mid-stream. Only one member handles events at
// any time: the pinned one until it left, then the other. Per key, the
// pinned member handles events in emit order, and so does the other, except
// for the redeliveries around the takeover (the events the first one held
// or had on the way, at most MaxInFlight past the last one it handled),
// which it may get out of order. Every event is handled.
func TestExclusiveBusKeyOrder(t *testing.T) {
	url := sharedURL(t)
	cfg := testConfig(url)
	cfg.Exclusive = true
	cfg.PullExpiry = time.Second
	cfg.PinnedTTL = 2 * time.Second
	cfg.MaxInFlight = 16
	topic, group := uniq(t, "orders"), "billing"
	const keys, perKey = 4, 100
	const total = keys * perKey

	type record struct{ member, key, seq int }
	var (
		mu      sync.Mutex
		records []record
		seen    = map[[2]int]bool{}
		leave   = make(chan int, 1) // the member that handled first, after a third of the events
		done    = make(chan struct{})
	)
	handler := func(member int) eventstream.Handler {
		return func(_ context.Context, e *eventstream.Event) error {
			var ev [2]int
			if err := e.Unmarshal(&ev); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			records = append(records, record{member, ev[0], ev[1]})
			seen[ev] = true
			if len(records) == total/3 {
				leave <- records[0].member
			}
			if len(seen) == total {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			return nil
		}
	}
	var buses [2]eventstream.Bus
	var subs [2]eventstream.Subscription
	for i := range buses {
		bcfg := eventstream.DefaultDistributedConfig()
		bcfg.Distributed.MQAdapter = newAdapter(t, cfg)
		b, err := eventstream.New(bcfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		buses[i] = b
		if subs[i], err = b.On(topic, handler(i), eventstream.WithConsumerGroup(group), eventstream.WithConcurrency(4)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxT(t, 60*time.Second)
	go func() {
		// One emitter, so stream order is emit order. Off ends a
		// subscription, not its bus: emitting on either bus is fine.
		for s := range perKey {
			for k := range keys {
				if err := buses[0].Emit(ctx, topic, [2]int{k, s}, eventstream.WithKey(fmt.Sprintf("k%d", k))); err != nil {
					return // the test fails below: not every event arrives
				}
			}
		}
	}()
	var pinned int
	select {
	case pinned = <-leave:
	case <-ctx.Done():
		t.Fatal("a third of the events did not arrive")
	}
	if err := buses[pinned].Off(subs[pinned]); err != nil {
		t.Fatalf("Off of the pinned member: %v", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("handled %d distinct events of %d", len(seen), total)
	}

	mu.Lock()
	defer mu.Unlock()
	pos := func(r record) int { return r.seq*keys + r.key } // stream position
	last0 := -1                                             // the last stream position the pinned member handled
	took := -1                                              // the first record of the other member
	for i, r := range records {
		if r.member == pinned {
			if took >= 0 {
				t.Fatalf("record %d: the member that left handled key %d event %d after the other took over (record %d)", i, r.key, r.seq, took)
			}
			last0 = max(last0, pos(r))
		} else if took < 0 {
			took = i
		}
	}
	if took < 0 {
		t.Fatal("the standby member handled nothing")
	}
	high := map[[2]int]int{} // member, key -> highest event handled
	for i, r := range records {
		k := [2]int{r.member, r.key}
		prev, ok := high[k]
		if ok && r.seq < prev && (r.member == pinned || pos(r) > last0+cfg.MaxInFlight) {
			t.Fatalf("record %d: member %d handled key %d event %d after event %d (the member that left handled up to stream position %d)",
				i, r.member, r.key, r.seq, prev, last0)
		}
		high[k] = max(prev, r.seq)
	}
	t.Logf("%d records for %d events; member %d left after %d records", len(records), total, pinned, took)
}
