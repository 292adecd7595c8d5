package nats_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  nats.Config
	}{
		{"no URL", nats.Config{}},
		{"bad URL", nats.Config{URL: "127.0.0.1:4222"}},
		{"bad scheme", nats.Config{URL: "http://127.0.0.1:4222"}},
		{"user without password", nats.Config{URL: "nats://h:1", User: "u"}},
		{"two credentials", nats.Config{URL: "nats://h:1", Token: "t", User: "u", Password: "p"}},
		{"missing creds file", nats.Config{URL: "nats://h:1", CredentialsFile: "/nonexistent/user.creds"}},
		{"missing nkey file", nats.Config{URL: "nats://h:1", NKeySeedFile: "/nonexistent/user.nk"}},
		{"creds file is a dir", nats.Config{URL: "nats://h:1", CredentialsFile: t.TempDir()}},
		{"bad stream prefix", nats.Config{URL: "nats://h:1", StreamPrefix: "a.b"}},
		{"bad subject prefix", nats.Config{URL: "nats://h:1", SubjectPrefix: "a.*"}},
		{"unknown storage", nats.Config{URL: "nats://h:1", Storage: 7}},
		{"unknown discard", nats.Config{URL: "nats://h:1", Discard: 7}},
		{"replicas", nats.Config{URL: "nats://h:1", Replicas: 6}},
		{"negative replicas", nats.Config{URL: "nats://h:1", Replicas: -1}},
		{"negative max bytes", nats.Config{URL: "nats://h:1", MaxBytes: -1}},
		{"negative max msgs", nats.Config{URL: "nats://h:1", MaxMsgs: -1}},
		{"negative max age", nats.Config{URL: "nats://h:1", MaxAge: -time.Second}},
		{"max deliver 1", nats.Config{URL: "nats://h:1", MaxDeliver: 1}},
		{"negative max deliver", nats.Config{URL: "nats://h:1", MaxDeliver: -1}},
		{"short ack wait", nats.Config{URL: "nats://h:1", AckWait: 100 * time.Millisecond}},
		{"in-progress interval above ack wait", nats.Config{URL: "nats://h:1", AckWait: time.Second, InProgressInterval: time.Second}},
		{"short pull expiry", nats.Config{URL: "nats://h:1", PullExpiry: time.Millisecond}},
		{"heartbeat too long", nats.Config{URL: "nats://h:1", PullExpiry: 2 * time.Second, PullHeartbeat: time.Second}},
		{"pinned TTL not above pull expiry", nats.Config{URL: "nats://h:1", PullExpiry: 5 * time.Second, PinnedTTL: 5 * time.Second}},
		{"negative in-flight", nats.Config{URL: "nats://h:1", MaxInFlight: -1}},
		{"negative in-flight bytes", nats.Config{URL: "nats://h:1", MaxInFlightBytes: -1}},
		{"ack pending below in-flight", nats.Config{URL: "nats://h:1", MaxInFlight: 100, MaxAckPending: 10}},
		{"negative pending publishes", nats.Config{URL: "nats://h:1", MaxPendingPublishes: -1}},
		{"negative publish timeout", nats.Config{URL: "nats://h:1", PublishTimeout: -1}},
		{"duplicate window above max age", nats.Config{URL: "nats://h:1", MaxAge: time.Minute, DuplicateWindow: 2 * time.Minute}},
		{"TLS over plain websocket", nats.Config{URL: "ws://h:1", TLS: &tls.Config{}}},
		{"TLS max below min version", nats.Config{URL: "nats://h:1", TLS: &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}}},
		{"TLS max below 1.2", nats.Config{URL: "nats://h:1", TLS: &tls.Config{MaxVersion: tls.VersionTLS11}}},
		{"TLS certificate without key", nats.Config{URL: "tls://h:1", TLS: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{{1}}}}}}},
		{"conn options limit reconnects", nats.Config{URL: "nats://h:1", ConnOptions: []natsgo.Option{natsgo.MaxReconnects(5)}}},
		{"conn options disable reconnects", nats.Config{URL: "nats://h:1", ConnOptions: []natsgo.Option{natsgo.NoReconnect()}}},
		{"nil conn option", nats.Config{URL: "nats://h:1", ConnOptions: []natsgo.Option{nil}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := nats.NewAdapter(c.cfg)
			if !errors.Is(err, eventstream.ErrInvalidConfig) {
				t.Errorf("NewAdapter(%+v) = %v, want ErrInvalidConfig", c.cfg, err)
			}
			if a != nil {
				t.Error("NewAdapter returned an adapter with an error")
				_ = a.Close()
			}
		})
	}
	// Settings next to the refused ones that are fine.
	for _, cfg := range []nats.Config{
		{URL: "nats://127.0.0.1:1", MaxAge: time.Minute, DuplicateWindow: time.Minute},
		{URL: "nats://127.0.0.1:1", DuplicateWindow: time.Hour}, // no MaxAge: no bound
		{URL: "wss://127.0.0.1:1", TLS: &tls.Config{MinVersion: tls.VersionTLS12}},
		{URL: "nats://127.0.0.1:1", ConnOptions: []natsgo.Option{natsgo.MaxReconnects(-1), natsgo.ReconnectJitter(0, 0)}},
	} {
		cfg.ConnectTimeout = 200 * time.Millisecond
		if _, err := nats.NewAdapter(cfg); err == nil || errors.Is(err, eventstream.ErrInvalidConfig) {
			t.Errorf("NewAdapter(%+v) = %v, want a connection error (the settings are valid)", cfg, err)
		}
	}
	// A server that is not there is a connection error, not a config error.
	_, err := nats.NewAdapter(nats.Config{URL: "nats://127.0.0.1:1", ConnectTimeout: 200 * time.Millisecond})
	if err == nil || errors.Is(err, eventstream.ErrInvalidConfig) {
		t.Errorf("NewAdapter for an unreachable server = %v, want a connection error", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	a := newAdapter(t, testConfig(sharedURL(t)))
	ctx := ctxT(t, 10*time.Second)
	if err := a.Publish(ctx, "", nil); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Errorf("Publish to empty topic: %v, want ErrEmptyTopic", err)
	}
	if _, _, err := a.Subscribe(ctx, "", "g"); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Errorf("Subscribe to empty topic: %v, want ErrEmptyTopic", err)
	}
	if _, _, err := a.Subscribe(ctx, "t", ""); !errors.Is(err, eventstream.ErrNoConsumerGroup) {
		t.Errorf("Subscribe with empty group: %v, want ErrNoConsumerGroup", err)
	}
	long := strings.Repeat("x", 300)
	if err := a.Publish(ctx, long, nil); !errors.Is(err, nats.ErrInvalidTopic) {
		t.Errorf("Publish to a 300-byte topic: %v, want ErrInvalidTopic", err)
	}
	if _, _, err := a.Subscribe(ctx, "t", long); !errors.Is(err, nats.ErrInvalidTopic) {
		t.Errorf("Subscribe with a 300-byte group: %v, want ErrInvalidTopic", err)
	}
	for _, h := range []string{"Nats-Msg-Id", "nats-expected-stream", "es-key", "ES-anything", ""} {
		err := a.PublishRecord(ctx, "t", eventstream.Record{Headers: map[string]string{h: "v"}})
		if !errors.Is(err, nats.ErrInvalidHeader) {
			t.Errorf("PublishRecord with header %q: %v, want ErrInvalidHeader", h, err)
		}
	}
	big := make([]byte, a.Conn().MaxPayload()+1)
	if err := a.Publish(ctx, "t", big); !errors.Is(err, nats.ErrMessageTooLarge) {
		t.Errorf("Publish of %d bytes: %v, want ErrMessageTooLarge", len(big), err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Publish(done, "t", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with done context: %v, want context.Canceled", err)
	}
	if _, _, err := a.Subscribe(done, "t", "g"); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with done context: %v, want context.Canceled", err)
	}
	if a.MessagingSystem() != "nats" {
		t.Errorf("MessagingSystem() = %q", a.MessagingSystem())
	}
	// The adapter never gives up reconnecting.
	if o := a.Conn().Opts; o.MaxReconnect != -1 {
		t.Errorf("MaxReconnect = %d, want -1 (forever)", o.MaxReconnect)
	}
}

// TestAckErrors: Ack refuses foreign messages and wrong groups.
func TestAckErrors(t *testing.T) {
	url := sharedURL(t)
	a := newAdapter(t, testConfig(url))
	other := newAdapter(t, testConfig(url))
	topic := uniq(t, "t")
	publish(t, a, topic, "", "m")
	ch, _ := subscribe(t, a, topic, "g")
	m := recv(t, ch)
	ctx := ctxT(t, 10*time.Second)
	if err := other.Ack(ctx, "g", m); err == nil {
		t.Error("Ack by another adapter succeeded")
	}
	if err := a.Ack(ctx, "g", nil); err == nil {
		t.Error("Ack of nil succeeded")
	}
	if err := a.Ack(ctx, "other-group", m); err == nil {
		t.Error("Ack for another group succeeded")
	}
	ack(t, a, "g", m)
	ack(t, a, "g", m) // twice is fine
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Ack(ctx, "g", m); !errors.Is(err, eventstream.ErrAdapterClosed) {
		t.Errorf("Ack after Close: %v, want ErrAdapterClosed", err)
	}
}

// uniq returns a name unique to the test and this run.
func uniq(t testing.TB, kind string) string {
	return fmt.Sprintf("%s-%s-%d", strings.NewReplacer("/", "_").Replace(t.Name()), kind, time.Now().UnixNano())
}

// plainJS returns a plain nats.go JetStream client of url.
func plainJS(t testing.TB, url string) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// consumerInfo returns the server's view of group's consumer on topic.
func consumerInfo(t testing.TB, js jetstream.JetStream, a *nats.Adapter, topic, group string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	c, err := js.Consumer(ctx, a.StreamName(topic), a.ConsumerName(group))
	if err != nil {
		t.Fatalf("consumer %s: %v", group, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// TestNakOnCancel: messages a subscription held are delivered again at once
// when it ends, not after AckWait: the few it holds when the stream is idle,
// and the many it holds or has on the way (in the client's buffers, on the
// wire) when it ends while messages stream in.
func TestNakOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		streaming bool // publish while the first subscription ends
	}{
		{"idle", 5, false},
		{"backlog", 300, false},
		{"streaming", 300, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(sharedURL(t))
			cfg.AckWait = 2 * time.Minute
			a := newAdapter(t, cfg)
			topic, group := uniq(t, "t"), "g"
			before := tc.n
			if tc.streaming {
				before = 10
			}
			for i := range before {
				publish(t, a, topic, "", fmt.Sprint(i))
			}
			pubErr := make(chan error, 1)
			if tc.streaming {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					for i := before; i < tc.n; i++ {
						if err := a.Publish(ctx, topic, []byte(fmt.Sprint(i))); err != nil {
							pubErr <- err
							return
						}
					}
					pubErr <- nil
				}()
			} else {
				pubErr <- nil
			}
			ch, cancel := subscribe(t, a, topic, group)
			first := recv(t, ch)
			ack(t, a, group, first)
			recv(t, ch) // received, never acknowledged
			cancel()

			start := time.Now()
			ch2, _ := subscribe(t, a, topic, group)
			got := map[string]bool{}
			for len(got) < tc.n-1 {
				m := recv(t, ch2)
				if string(m.Value()) == string(first.Value()) {
					t.Fatalf("acknowledged message %q delivered again", m.Value())
				}
				got[string(m.Value())] = true
				ack(t, a, group, m)
			}
			// A message the first subscription did not hand back would
			// come only after AckWait (2 minutes): recv gives up after
			// 10s, and all of them must arrive well before AckWait.
			if d := time.Since(start); d > cfg.AckWait/4 {
				t.Errorf("redelivery took %v; with a Nak it must not wait for AckWait (%v)", d, cfg.AckWait)
			}
			if err := <-pubErr; err != nil {
				t.Fatalf("publish: %v", err)
			}
		})
	}
}

// TestEndKeepsReceived: when a subscription ends by its context or by Close,
// a message the reader received and did not acknowledge is not handed to
// another member while a handler may still work on it: the reader can still
// acknowledge it (by context) and the cancel function hands back the rest;
// only what the reader never received goes back to the group at once.
func TestEndKeepsReceived(t *testing.T) {
	for _, byClose := range []bool{false, true} {
		name := "context"
		if byClose {
			name = "close"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(sharedURL(t))
			cfg.AckWait = 2 * time.Minute
			cfg.MaxInFlight = 16
			a := newAdapter(t, cfg)
			b := newAdapter(t, cfg)
			topic, group := uniq(t, "t"), "g"
			const n = 40
			for i := range n {
				publish(t, b, topic, "", fmt.Sprint(i))
			}
			ctx, cancelCtx := context.WithCancel(context.Background())
			defer cancelCtx()
			ch, cancel, err := a.Subscribe(ctx, topic, group)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			inHandler := recv(t, ch) // a handler works on it while the subscription ends
			other := recv(t, ch)     // received, never acknowledged
			received := map[string]bool{string(inHandler.Value()): true, string(other.Value()): true}
			if byClose {
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				cancelCtx()
			}
			for m := range ch { // what the reader takes until the channel closes is received too
				received[string(m.Value())] = true
			}

			ch2, _ := subscribe(t, b, topic, group)
			got := map[string]bool{}
			take := func(want func() bool) {
				t.Helper()
				for !want() {
					m := recv(t, ch2)
					got[string(m.Value())] = true
					ack(t, b, group, m)
				}
			}
			// Everything the first reader never received comes at once.
			take(func() bool {
				for i := range n {
					if v := fmt.Sprint(i); !received[v] && !got[v] {
						return false
					}
				}
				return true
			})
			if byClose {
				if err := a.Ack(context.Background(), group, inHandler); !errors.Is(err, eventstream.ErrAdapterClosed) {
					t.Errorf("Ack after Close = %v, want ErrAdapterClosed", err)
				}
			} else {
				if err := a.Ack(context.Background(), group, inHandler); err != nil {
					t.Errorf("Ack of a received message after the end by context: %v", err)
				}
				cancel() // hands back the other received messages
				take(func() bool {
					for v := range received {
						if v != string(inHandler.Value()) && !got[v] {
							return false
						}
					}
					return true
				})
			}
			// Whatever was queued for this group is in front of a new
			// message: the one in the handler must not have been.
			publish(t, b, topic, "", "end")
			take(func() bool { return got["end"] })
			if got[string(inHandler.Value())] {
				t.Errorf("message %q was delivered to another member while its handler still ran", inHandler.Value())
			}
		})
	}
}

// TestPullBound: a subscription never holds more than MaxInFlight messages,
// and it pulls more as they are acknowledged.
func TestPullBound(t *testing.T) {
	url := sharedURL(t)
	cfg := testConfig(url)
	cfg.MaxInFlight = 8
	a := newAdapter(t, cfg)
	_, js := plainJS(t, url)
	topic, group := uniq(t, "t"), "g"
	const n = 50
	for i := range n {
		publish(t, a, topic, "", fmt.Sprint(i))
	}
	ch, _ := subscribe(t, a, topic, group)
	var held []eventstream.Message
	held = append(held, recv(t, ch), recv(t, ch), recv(t, ch))
	waitFor(t, timeout, "the subscription to fill its window", func() bool {
		return consumerInfo(t, js, a, topic, group).NumAckPending == cfg.MaxInFlight
	})
	// Reading more without acknowledging does not make it pull more: the
	// channel is unbuffered and the window is full.
	for range cfg.MaxInFlight - len(held) {
		held = append(held, recv(t, ch))
	}
	if info := consumerInfo(t, js, a, topic, group); info.NumAckPending != cfg.MaxInFlight || info.NumPending != n-uint64(cfg.MaxInFlight) {
		t.Fatalf("server shows %d pending acks and %d undelivered; want %d and %d", info.NumAckPending, info.NumPending, cfg.MaxInFlight, n-cfg.MaxInFlight)
	}
	select {
	case m := <-ch:
		t.Fatalf("received %q beyond MaxInFlight=%d unacknowledged messages", m.Value(), cfg.MaxInFlight)
	default:
	}
	for _, m := range held {
		ack(t, a, group, m)
	}
	seen := len(held)
	for seen < n {
		ack(t, a, group, recv(t, ch))
		seen++
		// Acks are fire-and-forget: the server may count the next pull's
		// message before it processed the ack that made room for it. Once
		// it has, it must show no more than the window (a pull beyond it
		// stays pending: the test receives nothing until the next round).
		waitFor(t, timeout, "the server's pending acks within MaxInFlight", func() bool {
			return consumerInfo(t, js, a, topic, group).NumAckPending <= cfg.MaxInFlight
		})
	}
}

// TestPullBytes: a subscription holds no more than MaxInFlightBytes of
// messages (as the server counts them: subjects, headers, payload), pulls
// again as soon as acknowledgements make room for the next message (also
// while it keeps one), and delivers a message larger than the whole cap
// alone. Every message arrives once, in order; every pull request it sends
// stays within the room it had, and it sends a few per message at most (no
// busy loop of refused requests). On both servers, and with Exclusive
// (pinned consumers, whose pin header the server does not count) on the
// embedded one. A server before 2.11 mishandles a redelivery that a pull
// refuses for its bytes, so there the adapter sends no max_bytes: the test
// checks that, and that every message arrives.
func TestPullBytes(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) { testPullBytes(t, url, false) })
	t.Run("exclusive", func(t *testing.T) { testPullBytes(t, sharedURL(t), true) })
}

func testPullBytes(t *testing.T, url string, exclusive bool) {
	cfg := testConfig(url)
	// 1 KiB payloads, about 1.2 KiB with the subjects: four fit in 5000
	// bytes, five do not. MaxInFlight does not bind.
	cfg.MaxInFlight, cfg.MaxInFlightBytes, cfg.Exclusive = 100, 5000, exclusive
	const fit = 4
	a := newAdapter(t, cfg)
	nc, js := plainJS(t, url)
	topic, group := uniq(t, "t"), "g"
	payload := func(i, size int) string {
		p := fmt.Sprintf("%03d", i)
		return p + strings.Repeat("x", size-len(p))
	}
	var want []string
	for i := range 5*fit - 1 { // two windows, a window and three while one is kept, a window
		want = append(want, payload(i, 1024))
	}
	want = append(want, payload(len(want), 20000)) // above the cap
	for i := range 3 {
		want = append(want, payload(len(want), 1024+i))
	}
	for _, v := range want {
		publish(t, a, topic, "", v)
	}
	n := uint64(len(want))

	// Every pull request the adapter sends, as the server receives it.
	type pullReq struct {
		Batch    int `json:"batch"`
		MaxBytes int `json:"max_bytes"`
	}
	spy, err := nc.SubscribeSync("$JS.API.CONSUMER.MSG.NEXT." + a.StreamName(topic) + "." + a.ConsumerName(group))
	if err == nil {
		err = spy.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		t.Fatal(err)
	}
	// sent is the number of pull requests the server received so far: the
	// spy's copies of them are queued once a round trip on its connection
	// is done.
	sent := func() int {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		n, _, err := spy.Pending()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pulls := func() []pullReq {
		t.Helper()
		var out []pullReq
		for range sent() {
			m, err := spy.NextMsg(time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var r pullReq
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("pull request %q: %v", m.Data, err)
			}
			out = append(out, r)
		}
		return out
	}

	ch, _ := subscribe(t, a, topic, group)
	if v := nc.ConnectedServerVersion(); strings.HasPrefix(v, "2.9.") || strings.HasPrefix(v, "2.10.") {
		for i := range want {
			m := recv(t, ch)
			if string(m.Value()) != want[i] {
				t.Fatalf("received %.8q…, want %.8q…", m.Value(), want[i])
			}
			ack(t, a, group, m)
		}
		for _, r := range pulls() {
			if r.MaxBytes != 0 {
				t.Errorf("server %s: a pull request with max_bytes %d", v, r.MaxBytes)
			}
		}
		return
	}
	// settled: the subscription holds held messages and has no pull
	// request outstanding.
	next := 0
	// Once there, with nothing acknowledged, it sends no pull request
	// (none can succeed): checked over five lingers, the only timer that
	// could make it pull.
	settled := func(held int) {
		t.Helper()
		waitFor(t, timeout, fmt.Sprintf("the subscription to hold %d messages and stop pulling", held), func() bool {
			info := consumerInfo(t, js, a, topic, group)
			return info.NumAckPending == held && info.NumWaiting == 0 && info.NumPending == n-uint64(next)
		})
		before := sent()
		<-time.After(100 * time.Millisecond)
		if after := sent(); after != before {
			t.Fatalf("holding %d messages with nothing acknowledged, it sent %d more pull requests", held, after-before)
		}
	}
	take := func(k int) []eventstream.Message {
		t.Helper()
		var got []eventstream.Message
		for range k {
			m := recv(t, ch)
			if v := string(m.Value()); v != want[next] {
				t.Fatalf("received %.8q… (%d bytes), want %.8q… (%d bytes)", v, len(v), want[next], len(want[next]))
			}
			next++
			got = append(got, m)
		}
		return got
	}
	none := func(what string) {
		t.Helper()
		select {
		case m := <-ch:
			t.Fatalf("%s: received %.8q… beyond MaxInFlightBytes", what, m.Value())
		default:
		}
	}
	// Two windows of four small messages: none beyond the bytes.
	for w := range 2 {
		held := take(fit)
		settled(fit)
		none(fmt.Sprintf("window %d", w))
		for _, m := range held {
			ack(t, a, group, m)
		}
	}
	// Keeping one message: acknowledging the other three makes room for
	// three more.
	held := take(fit)
	settled(fit)
	kept := held[0]
	for _, m := range held[1:] {
		ack(t, a, group, m)
	}
	held = take(fit - 1)
	settled(fit)
	none("keeping one")
	ack(t, a, group, kept)
	for _, m := range held {
		ack(t, a, group, m)
	}
	held = take(fit)
	settled(fit)
	for _, m := range held {
		ack(t, a, group, m)
	}
	// The oversized message comes alone, once nothing else is held.
	big := take(1)
	settled(1)
	none("the oversized message")
	ack(t, a, group, big[0])
	for _, m := range take(3) {
		ack(t, a, group, m)
	}
	waitFor(t, timeout, "every message acknowledged", func() bool {
		info := consumerInfo(t, js, a, topic, group)
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	reqs := pulls()
	for _, r := range reqs {
		if r.MaxBytes > cfg.MaxInFlightBytes || r.MaxBytes == 0 && r.Batch != 1 || r.Batch > cfg.MaxInFlight {
			t.Errorf("pull request for %d messages, max_bytes %d: beyond MaxInFlight %d, MaxInFlightBytes %d (0 only for one message)",
				r.Batch, r.MaxBytes, cfg.MaxInFlight, cfg.MaxInFlightBytes)
		}
	}
	if len(reqs) > 3*len(want) {
		t.Errorf("%d pull requests for %d messages", len(reqs), len(want))
	}
	t.Logf("%d pull requests for %d messages", len(reqs), len(want))
}

// TestPullBytesAboveConsumerLimit: a consumer created elsewhere that limits
// pull requests to fewer bytes than MaxInFlightBytes is refused at
// Subscribe, with ErrInvalidConfig, rather than failing every pull.
func TestPullBytesAboveConsumerLimit(t *testing.T) {
	url := sharedURL(t)
	a := newAdapter(t, testConfig(url))
	_, js := plainJS(t, url)
	topic, group := uniq(t, "t"), "g"
	publish(t, a, topic, "", "x") // creates the stream
	ctx := ctxT(t, 5*time.Second)
	if _, err := js.CreateConsumer(ctx, a.StreamName(topic), jetstream.ConsumerConfig{
		Durable: a.ConsumerName(group), AckPolicy: jetstream.AckExplicitPolicy, MaxRequestMaxBytes: 1 << 20,
	}); err != nil {
		t.Fatal(err)
	}
	_, _, err := a.Subscribe(ctx, topic, group)
	if !errors.Is(err, eventstream.ErrInvalidConfig) || !strings.Contains(err.Error(), "MaxRequestMaxBytes") {
		t.Fatalf("Subscribe = %v, want ErrInvalidConfig naming MaxRequestMaxBytes", err)
	}
	cfg := testConfig(url)
	cfg.MaxInFlightBytes = 1 << 20
	ch, cancel, err := newAdapter(t, cfg).Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatalf("Subscribe with MaxInFlightBytes at the consumer's limit: %v", err)
	}
	defer cancel()
	if m := recv(t, ch); string(m.Value()) != "x" {
		t.Fatalf("received %q", m.Value())
	}
}

// TestPullWindows: with small windows (MaxInFlight 1, 2 and 5, whose pull
// thresholds are 1, 1 and 2) a subscription keeps pulling as its messages
// are acknowledged: one at a time, a whole window at once, or one at a time
// while the reader keeps the rest of its window unacknowledged (room for a
// single message: the puller must wake at that room and pull it after its
// linger). Every message arrives once, in order; a puller that misses a
// wake-up stalls until its next heartbeat check, which this test puts
// beyond recv's timeout.
func TestPullWindows(t *testing.T) {
	eachServer(t, func(t *testing.T, url string) {
		for _, mif := range []int{1, 2, 5} {
			for _, mode := range []string{"one", "window", "keep"} {
				t.Run(fmt.Sprintf("MaxInFlight=%d/%s", mif, mode), func(t *testing.T) {
					cfg := testConfig(url)
					cfg.MaxInFlight = mif
					// No periodic wake-ups of the puller (heartbeat checks,
					// in-progress acks) within recv's timeout: only the
					// acknowledgements and the linger make it pull.
					cfg.PullExpiry, cfg.AckWait = time.Minute, time.Minute
					a := newAdapter(t, cfg)
					topic, group := uniq(t, "t"), "g"
					n := 10*mif + 3
					for i := range n {
						publish(t, a, topic, "", fmt.Sprint(i))
					}
					ch, _ := subscribe(t, a, topic, group)
					var unacked []*nats.Message
					for i := range n {
						m := recv(t, ch)
						if string(m.Value()) != fmt.Sprint(i) {
							t.Fatalf("received %q, want %d", m.Value(), i)
						}
						unacked = append(unacked, m)
						var ackN int
						switch {
						case mode == "one":
							ackN = 1
						case mode == "window" && (len(unacked) == mif || i == n-1):
							ackN = len(unacked)
						case mode == "keep" && len(unacked) == mif:
							ackN = 1
						}
						for _, m := range unacked[:ackN] {
							ack(t, a, group, m)
						}
						unacked = unacked[ackN:]
					}
					for _, m := range unacked {
						ack(t, a, group, m)
					}
				})
			}
		}
	})
}

// TestSlowHandler: a message held longer than AckWait is not redelivered
// while its subscription lives (in-progress acknowledgements), on the
// embedded server and on the nats-server binary.
func TestSlowHandler(t *testing.T) { eachServer(t, testSlowHandler) }

func testSlowHandler(t *testing.T, url string) {
	cfg := testConfig(url)
	cfg.AckWait = time.Second
	a := newAdapter(t, cfg)
	_, js := plainJS(t, url)
	topic, group := uniq(t, "t"), "g"
	chA, _ := subscribe(t, a, topic, group)
	chB, _ := subscribe(t, a, topic, group) // a competing member that would get a redelivery
	publish(t, a, topic, "", "slow")
	var slow *nats.Message
	var slowCh, otherCh <-chan eventstream.Message
	select {
	case m := <-chA:
		slow, slowCh, otherCh = m.(*nats.Message), chA, chB
	case m := <-chB:
		slow, slowCh, otherCh = m.(*nats.Message), chB, chA
	case <-time.After(timeout):
		t.Fatal("no delivery")
	}
	// "Handle" it for 4×AckWait, watching both members.
	deadline := time.After(4 * cfg.AckWait)
	for watching := true; watching; {
		select {
		case m := <-slowCh:
			t.Fatalf("%q delivered again to the same member while it was being handled", m.Value())
		case m := <-otherCh:
			t.Fatalf("%q delivered to the other member while it was being handled", m.Value())
		case <-deadline:
			watching = false
		}
	}
	info := consumerInfo(t, js, a, topic, group)
	if info.NumRedelivered != 0 || info.NumAckPending != 1 {
		t.Fatalf("after 4×AckWait: %d redelivered, %d pending, want 0 and 1", info.NumRedelivered, info.NumAckPending)
	}
	ack(t, a, group, slow)
	if slow.NumDelivered() != 1 {
		t.Errorf("NumDelivered = %d, want 1", slow.NumDelivered())
	}
	publish(t, a, topic, "", "sentinel")
	select {
	case m := <-chA:
		if string(m.Value()) != "sentinel" {
			t.Fatalf("received %q, want the sentinel", m.Value())
		}
	case m := <-chB:
		if string(m.Value()) != "sentinel" {
			t.Fatalf("received %q, want the sentinel", m.Value())
		}
	case <-time.After(timeout):
		t.Fatal("sentinel not delivered")
	}
}

// TestConsumerRecreated: a group's consumer deleted behind the adapter's
// back is created again and the subscription goes on.
func TestConsumerRecreated(t *testing.T) {
	url := sharedURL(t)
	a := newAdapter(t, testConfig(url))
	_, js := plainJS(t, url)
	topic, group := uniq(t, "t"), "g"
	ch, _ := subscribe(t, a, topic, group)
	publish(t, a, topic, "", "before")
	ack(t, a, group, recv(t, ch))
	ctx := ctxT(t, 10*time.Second)
	if err := js.DeleteConsumer(ctx, a.StreamName(topic), a.ConsumerName(group)); err != nil {
		t.Fatal(err)
	}
	publish(t, a, topic, "", "after")
	// The new consumer starts at the first retained message again: that is
	// at-least-once; "after" must come.
	for {
		m := recv(t, ch)
		ack(t, a, group, m)
		if string(m.Value()) == "after" {
			break
		}
	}
}

// TestStreamRecreated: a stream deleted behind the adapter's back is created
// again by the next publish and subscriptions go on.
func TestStreamRecreated(t *testing.T) {
	url := sharedURL(t)
	a := newAdapter(t, testConfig(url))
	_, js := plainJS(t, url)
	topic, group := uniq(t, "t"), "g"
	ch, _ := subscribe(t, a, topic, group)
	publish(t, a, topic, "", "before")
	ack(t, a, group, recv(t, ch))
	ctx := ctxT(t, 20*time.Second)
	if err := js.DeleteStream(ctx, a.StreamName(topic)); err != nil {
		t.Fatal(err)
	}
	publish(t, a, topic, "", "after")
	m := recv(t, ch)
	if string(m.Value()) != "after" {
		t.Fatalf("received %q, want after", m.Value())
	}
	ack(t, a, group, m)
}

// TestInterop: a plain nats.go client and the adapter read each other's
// messages, on the embedded server and on the nats-server binary.
func TestInterop(t *testing.T) { eachServer(t, testInterop) }

func testInterop(t *testing.T, url string) {
	a := newAdapter(t, testConfig(url))
	_, js := plainJS(t, url)
	ctx := ctxT(t, 20*time.Second)
	topic, group := uniq(t, "t"), "g"

	// Adapter → plain client.
	ts := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: []byte("k1"), Value: []byte("from-adapter"),
		Headers: map[string]string{"trace": "abc"}, Time: ts}); err != nil {
		t.Fatal(err)
	}
	oc, err := js.OrderedConsumer(ctx, a.StreamName(topic), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if string(pm.Data()) != "from-adapter" || pm.Subject() != a.Subject(topic) ||
		pm.Headers().Get("trace") != "abc" || pm.Headers().Get(nats.HeaderKey) != "k1" ||
		pm.Headers().Get(nats.HeaderTime) != fmt.Sprint(ts.UnixNano()) {
		t.Errorf("plain client read %q on %q with headers %v", pm.Data(), pm.Subject(), pm.Headers())
	}

	// Plain client → adapter, with a repeated header and a server header.
	msg := natsgo.NewMsg(a.Subject(topic))
	msg.Data = []byte("from-plain")
	msg.Header.Add("multi", "first")
	msg.Header.Add("multi", "second")
	msg.Header.Set("Nats-Msg-Id", "id-1")
	before := time.Now()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	ch, _ := subscribe(t, a, topic, group)
	first := recv(t, ch)
	ack(t, a, group, first)
	if !bytes.Equal(first.Key(), []byte("k1")) || !first.Timestamp().Equal(ts) || first.Headers()["trace"] != "abc" {
		t.Errorf("adapter read key %q time %v headers %v", first.Key(), first.Timestamp(), first.Headers())
	}
	m := recv(t, ch)
	ack(t, a, group, m)
	if string(m.Value()) != "from-plain" || m.Key() != nil {
		t.Errorf("adapter read %q with key %q", m.Value(), m.Key())
	}
	if want := map[string]string{"multi": "first"}; !maps.Equal(m.Headers(), want) {
		t.Errorf("headers %v, want %v (first value, no Nats-* headers)", m.Headers(), want)
	}
	if ts := m.Timestamp(); ts.Before(before.Add(-time.Minute)) || ts.After(time.Now().Add(time.Minute)) {
		t.Errorf("timestamp %v of a plain message is not the store time", ts)
	}
	if m.Sequence() != 2 || m.NumDelivered() != 1 {
		t.Errorf("sequence %d, delivered %d; want 2 and 1", m.Sequence(), m.NumDelivered())
	}
}

// TestEncodedHeaders: headers NATS cannot carry as they are arrive intact,
// binary keys too.
func TestEncodedHeaders(t *testing.T) {
	a := newAdapter(t, testConfig(sharedURL(t)))
	topic := uniq(t, "t")
	h := map[string]string{"ünï": "v", "sp ace": "x", "lead": "  padded  ", "crlf": "a\r\nb", "colon:name": "c", "plain": "p"}
	key := []byte{0, 1, 2, 0xff, '\n'}
	ctx := ctxT(t, 10*time.Second)
	if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: key, Value: []byte("v"), Headers: h}); err != nil {
		t.Fatal(err)
	}
	ch, _ := subscribe(t, a, topic, "g")
	m := recv(t, ch)
	if !maps.Equal(m.Headers(), h) {
		t.Errorf("headers %q, want %q", m.Headers(), h)
	}
	if !bytes.Equal(m.Key(), key) {
		t.Errorf("key %q, want %q", m.Key(), key)
	}
}

// TestCloseServerDown: with the server gone, Close does not wait for
// round trips per subscription: it returns after about CloseTimeout (its
// final flush) however many subscriptions holding messages it ends.
func TestCloseServerDown(t *testing.T) {
	b := brokertest.NATS(t)
	cfg := testConfig(b.URL())
	cfg.CloseTimeout = time.Second
	a, err := nats.NewAdapter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	topic := uniq(t, "t")
	for i := range 3 {
		publish(t, a, topic, "", fmt.Sprint(i))
	}
	const subs = 4
	for i := range subs {
		ch, _, err := a.Subscribe(context.Background(), topic, fmt.Sprint("g", i))
		if err != nil {
			t.Fatal(err)
		}
		recv(t, ch) // held, not acknowledged
	}
	b.Kill(t)
	waitFor(t, timeout, "the adapter to notice the server is gone", func() bool { return !a.Conn().IsConnected() })
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if d, limit := time.Since(start), cfg.CloseTimeout+cfg.RequestTimeout; d > limit {
		t.Errorf("Close took %v with the server down; want at most %v (not a round trip timeout per subscription)", d, limit)
	}
}
