package rabbitmq_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// recv returns the next message of ch or fails t after d.
func recv(t *testing.T, ch <-chan eventstream.Message, d time.Duration, what string) *rabbitmq.Message {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatalf("channel closed while waiting for %s", what)
		}
		return m.(*rabbitmq.Message)
	case <-timer.C:
		t.Fatalf("no message within %v while waiting for %s", d, what)
	}
	return nil
}

// TestStaleAckAfterConnectionClosed closes every connection on the broker
// side (rabbitmqctl close_all_connections) while a subscription holds ten
// unacknowledged messages. The subscription must reconnect and get all ten
// again; acks for the deliveries of the dead channel must be dropped. Had
// they been sent on the new channel, whose delivery tags restart at 1, they
// would have acknowledged the redelivered messages, and the unacknowledged
// half below would never come back.
func TestStaleAckAfterConnectionClosed(t *testing.T) {
	b := brokertest.RabbitMQ(t)
	if b.External() {
		t.Skip("needs rabbitmqctl on a private node")
	}
	const topic, group = "stale", "g"
	cfg := testConfig(b.URL())
	cfg.Prefetch = 10
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 90*time.Second)
	if err := a.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := a.Publish(ctx, topic, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	var old []*rabbitmq.Message
	for range 10 {
		old = append(old, recv(t, ch, 30*time.Second, "first deliveries"))
	}

	b.Ctl(t, "close_all_connections", "eventstream test")

	fresh := map[string]*rabbitmq.Message{}
	for len(fresh) < 10 {
		m := recv(t, ch, 60*time.Second, "redeliveries after the connection was closed")
		if !m.Redelivered() {
			t.Errorf("%q after reconnect: Redelivered() = false", m.Value())
		}
		fresh[string(m.Value())] = m
	}
	// Stale acks: all dropped, none acknowledges a redelivered message.
	for _, m := range old {
		if err := a.Ack(ctx, group, m); err != nil {
			t.Errorf("stale Ack: %v", err)
		}
	}
	for i := range 5 {
		m := fresh[fmt.Sprintf("m%d", i)]
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
		// A second Ack must not reach the broker (it would close the channel).
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	// Publishing works on the new connection, and a sentinel proves the
	// channel survived the double acks.
	if err := a.Publish(ctx, topic, []byte("sentinel")); err != nil {
		t.Fatalf("Publish after reconnect: %v", err)
	}
	for {
		m := recv(t, ch, 30*time.Second, "sentinel")
		if string(m.Value()) == "sentinel" {
			if m.Redelivered() {
				t.Error("sentinel redelivered: the channel was closed (double ack?)")
			}
			_ = a.Ack(ctx, group, m)
			break
		}
		t.Errorf("unexpected %q before the sentinel", m.Value())
	}
	cancel()

	ch, cancel, err = a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	want := map[string]bool{"m5": true, "m6": true, "m7": true, "m8": true, "m9": true}
	for len(want) > 0 {
		m := recv(t, ch, 30*time.Second, fmt.Sprintf("unacknowledged %v", want))
		v := string(m.Value())
		if !want[v] {
			t.Fatalf("got %q: it was acknowledged, or delivered twice", v)
		}
		delete(want, v)
		_ = a.Ack(ctx, group, m)
	}
}

// TestBrokerRestart stops the broker for at least five seconds while four
// publishers and a consumer run, and starts it again. Publishes during the
// outage wait; afterwards publishers and the consumer resume on their own,
// every confirmed message is delivered, and no stale ack loses a message.
func TestBrokerRestart(t *testing.T) {
	b := brokertest.RabbitMQ(t)
	if b.External() {
		t.Skip("needs a private node to stop")
	}
	const topic, group = "restart", "g"
	a := newAdapter(t, testConfig(b.URL()))
	ctx := ctxT(t, 150*time.Second)
	if err := a.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	var (
		mu        sync.Mutex
		confirmed = map[string]bool{}
		received  = map[string]int{}
		nConf     atomic.Int64
		nRecv     atomic.Int64
	)
	pctx, stopPub := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := 0; pctx.Err() == nil; i++ {
				v := fmt.Sprintf("p%d-%d", p, i)
				if err := a.Publish(pctx, topic, []byte(v)); err != nil {
					if pctx.Err() == nil {
						t.Errorf("Publish(%s): %v", v, err)
					}
					return
				}
				mu.Lock()
				confirmed[v] = true
				mu.Unlock()
				nConf.Add(1)
			}
		})
	}
	wg.Go(func() {
		for m := range ch {
			v := string(m.Value())
			mu.Lock()
			received[v]++
			mu.Unlock()
			nRecv.Add(1)
			// Ack every message; some of these acks belong to the channel
			// that the broker stop kills.
			_ = a.Ack(ctx, group, m)
		}
	})
	defer func() { stopPub(); cancel(); wg.Wait() }()

	waitUntil(t, 60*time.Second, "500 messages confirmed and received", func() bool {
		return nConf.Load() >= 500 && nRecv.Load() >= 500
	})
	b.Stop(t)
	down := time.Now()
	confAtStop := nConf.Load()
	// Hold the outage for five seconds, checking all along that nothing is
	// confirmed while the broker is down.
	waitUntil(t, time.Minute, "five seconds of outage", func() bool {
		if n := nConf.Load(); n != confAtStop {
			t.Fatalf("%d publishes confirmed while the broker was down", n-confAtStop)
		}
		return time.Since(down) >= 5*time.Second
	})
	b.Restart(t)
	t.Logf("broker down for %v", time.Since(down).Round(time.Millisecond))
	waitUntil(t, 90*time.Second, "500 more messages confirmed and received after the restart", func() bool {
		return nConf.Load() >= confAtStop+500 && nRecv.Load() >= confAtStop+500
	})
	stopPub()
	// Every confirmed message arrives.
	waitUntil(t, 60*time.Second, "every confirmed message received", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for v := range confirmed {
			if received[v] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	dups := 0
	for _, c := range received {
		dups += c - 1
	}
	t.Logf("%d confirmed, %d distinct received, %d duplicates", len(confirmed), len(received), dups)
	mu.Unlock()
}

// TestConnectionClosedByBroker closes the publishing and consuming
// connections with rabbitmqctl close_connection while messages flow; the
// adapter reconnects and every confirmed message is delivered.
func TestConnectionClosedByBroker(t *testing.T) {
	b := brokertest.RabbitMQ(t)
	if b.External() {
		t.Skip("needs rabbitmqctl on a private node")
	}
	const topic, group = "closeconn", "g"
	a := newAdapter(t, testConfig(b.URL()))
	ctx := ctxT(t, 90*time.Second)
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	got := map[string]bool{}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if err := a.Publish(ctx, topic, fmt.Appendf(nil, "m%d", i)); err != nil {
				t.Fatalf("Publish m%d: %v", i, err)
			}
		}
	}
	receive := func(to int) {
		for len(got) < to {
			m := recv(t, ch, 30*time.Second, fmt.Sprintf("%d of %d messages", len(got), to))
			got[string(m.Value())] = true
			_ = a.Ack(ctx, group, m)
		}
	}
	publish(0, 100)
	receive(100)
	var pids []string
	waitUntil(t, 30*time.Second, "two connections listed", func() bool {
		pids = pids[:0]
		for line := range strings.Lines(b.Ctl(t, "-q", "list_connections", "pid", "client_properties")) {
			if strings.Contains(line, "eventstream") {
				pids = append(pids, strings.Fields(line)[0])
			}
		}
		return len(pids) >= 2
	})
	for _, pid := range pids {
		b.Ctl(t, "close_connection", pid, "eventstream test")
	}
	publish(100, 200)
	receive(200)
}

// waitUntil polls cond every 20ms until it holds, failing t after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}
