package nats_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/nats"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReconnectsForever proves that the adapter keeps trying to reconnect
// past nats.go's default limit of 60 attempts: with the server down and a
// 5ms ReconnectWait (no jitter), well over 60 attempts fail (counted by a
// nats.ReconnectErrHandler given in Config.ConnOptions) while the connection
// stays open and RECONNECTING; once the server is back on the same port and
// store, the connection is restored, a Publish returns nil and the
// subscription made before the outage receives the message. It runs on the
// embedded server and on the nats-server binary.
func TestReconnectsForever(t *testing.T) { eachOwnServer(t, false, reconnectsForever) }

func reconnectsForever(t *testing.T, url string, down, up func()) {
	const (
		wait   = 5 * time.Millisecond
		wanted = 100 // failed attempts to wait for, well above the default limit
	)
	if wanted <= natsgo.DefaultMaxReconnect {
		t.Fatalf("wanted %d must exceed nats.go's default limit %d", wanted, natsgo.DefaultMaxReconnect)
	}
	var failed atomic.Int64
	cfg := testConfig(url)
	cfg.ReconnectWait = wait
	cfg.ConnOptions = []natsgo.Option{
		// The default jitter adds up to 100ms to every wait; without it
		// the attempts come every ReconnectWait.
		natsgo.ReconnectJitter(0, 0),
		natsgo.ReconnectErrHandler(func(*natsgo.Conn, error) { failed.Add(1) }),
	}
	a := newAdapter(t, cfg)
	if got := a.Conn().Opts.ReconnectWait; got != wait {
		t.Fatalf("connection ReconnectWait = %v, want the configured %v", got, wait)
	}
	topic, group := uniq(t, "t"), "g"
	ch, _ := subscribe(t, a, topic, group)
	publish(t, a, topic, "", "before")
	if m := recv(t, ch); string(m.Value()) != "before" {
		t.Fatalf("received %q, want %q", m.Value(), "before")
	} else {
		ack(t, a, group, m)
	}

	down()
	begin := time.Now()
	waitFor(t, 10*time.Second, "the adapter to notice the outage", func() bool {
		return a.Conn().Status() != natsgo.CONNECTED
	})
	waitFor(t, 30*time.Second, fmt.Sprintf("%d failed reconnection attempts", wanted), func() bool {
		return failed.Load() >= wanted || a.Conn().IsClosed()
	})
	n := failed.Load()
	t.Logf("%d failed reconnection attempts in %v", n, time.Since(begin).Round(time.Millisecond))
	if a.Conn().IsClosed() {
		t.Fatalf("connection closed after %d failed reconnection attempts", n)
	}
	if st := a.Conn().Status(); st != natsgo.RECONNECTING {
		t.Fatalf("connection status %v after %d failed reconnection attempts, want RECONNECTING", st, n)
	}
	reconnects := a.Conn().Stats().Reconnects

	up()
	waitFor(t, 15*time.Second, "the adapter to reconnect", func() bool {
		return a.Conn().IsConnected() && a.Conn().Stats().Reconnects > reconnects
	})
	ctx := ctxT(t, 10*time.Second)
	if err := a.Publish(ctx, topic, []byte("after")); err != nil {
		t.Fatalf("Publish after the server came back: %v", err)
	}
	m := recv(t, ch)
	if string(m.Value()) != "after" {
		t.Fatalf("received %q after the restart, want %q", m.Value(), "after")
	}
	ack(t, a, group, m)
}

// TestAckAfterReconnect proves that acknowledgements sent on a new
// connection for messages delivered on the old one are harmless and
// effective: messages received (and not acknowledged) before a server
// restart on the same store are acknowledged after the adapter reconnected;
// every Ack returns nil, a second Ack of one returns nil, the server's
// consumer then has nothing pending and its ack floor at the last message,
// nothing was redelivered, and the next message the subscription gets is a
// sentinel published afterwards, not a redelivery. AckWait is 30s, so no
// redelivery by timeout can hide or fake the result. It runs on the
// embedded server and on the nats-server binary.
func TestAckAfterReconnect(t *testing.T) { eachOwnServer(t, false, ackAfterReconnect) }

func ackAfterReconnect(t *testing.T, url string, down, up func()) {
	const n = 5
	cfg := testConfig(url)
	cfg.AckWait = 30 * time.Second
	cfg.ReconnectWait = 20 * time.Millisecond
	cfg.ConnOptions = []natsgo.Option{natsgo.ReconnectJitter(0, 0)}
	a := newAdapter(t, cfg)
	topic, group := uniq(t, "t"), "g"
	for i := range n {
		publish(t, a, topic, "", fmt.Sprintf("m-%d", i))
	}
	ch, _ := subscribe(t, a, topic, group)
	msgs := make([]*nats.Message, n)
	for i := range n {
		msgs[i] = recv(t, ch)
		if want := fmt.Sprintf("m-%d", i); string(msgs[i].Value()) != want {
			t.Fatalf("message %d is %q, want %q", i, msgs[i].Value(), want)
		}
		if d := msgs[i].NumDelivered(); d != 1 {
			t.Fatalf("message %q delivered %d times before the restart, want 1", msgs[i].Value(), d)
		}
	}
	last := msgs[n-1].Sequence()

	// The server holds them as delivered and not acknowledged.
	nc, js := plainJS(t, url)
	var info *jetstream.ConsumerInfo
	waitFor(t, 10*time.Second, fmt.Sprintf("%d acks pending before the restart", n), func() bool {
		info = consumerInfo(t, js, a, topic, group)
		return info.NumAckPending == n
	})
	if info.AckFloor.Stream != 0 || info.Delivered.Stream != last {
		t.Fatalf("before the restart: ack floor %d, delivered %d; want 0 and %d", info.AckFloor.Stream, info.Delivered.Stream, last)
	}
	nc.Close()

	reconnects := a.Conn().Stats().Reconnects
	down()
	up()
	waitFor(t, 15*time.Second, "the adapter to reconnect", func() bool {
		return a.Conn().IsConnected() && a.Conn().Stats().Reconnects > reconnects
	})

	// The restarted server still holds them as pending: only the acks
	// below can clear them.
	_, js = plainJS(t, url)
	info = consumerInfo(t, js, a, topic, group)
	if info.NumAckPending != n || info.AckFloor.Stream != 0 {
		t.Fatalf("after the restart: %d acks pending, ack floor %d; want %d and 0", info.NumAckPending, info.AckFloor.Stream, n)
	}

	ctx := ctxT(t, 10*time.Second)
	for _, m := range msgs {
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatalf("Ack(%q) after the reconnect: %v", m.Value(), err)
		}
	}
	if err := a.Ack(ctx, group, msgs[0]); err != nil {
		t.Fatalf("second Ack(%q): %v", msgs[0].Value(), err)
	}

	waitFor(t, 10*time.Second, "the server to process the acks sent on the new connection", func() bool {
		info = consumerInfo(t, js, a, topic, group)
		return info.NumAckPending == 0 && info.AckFloor.Stream == last
	})
	if info.AckFloor.Consumer != n || info.NumRedelivered != 0 {
		t.Fatalf("after the acks: consumer ack floor %d (want %d), %d redelivered (want 0)", info.AckFloor.Consumer, n, info.NumRedelivered)
	}

	// Nothing comes back: the next message is one published now.
	publish(t, a, topic, "", "sentinel")
	m := recv(t, ch)
	if string(m.Value()) != "sentinel" || m.NumDelivered() != 1 {
		t.Fatalf("after the acks received %q (delivery %d), want the sentinel (delivery 1)", m.Value(), m.NumDelivered())
	}
	if m.Sequence() != last+1 {
		t.Fatalf("sentinel has sequence %d, want %d", m.Sequence(), last+1)
	}
	ack(t, a, group, m)
	waitFor(t, 10*time.Second, "the sentinel's ack", func() bool {
		info = consumerInfo(t, js, a, topic, group)
		return info.NumAckPending == 0 && info.AckFloor.Stream == last+1
	})
	if info.NumRedelivered != 0 {
		t.Fatalf("%d messages redelivered, want 0", info.NumRedelivered)
	}
}
