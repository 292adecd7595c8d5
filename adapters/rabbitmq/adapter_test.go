package rabbitmq_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestConfigValidation(t *testing.T) {
	ok := "amqp://guest:guest@127.0.0.1:5672/"
	for _, tc := range []struct {
		name string
		cfg  rabbitmq.Config
		want string
	}{
		{"no URL", rabbitmq.Config{}, "URL is empty"},
		{"bad scheme", rabbitmq.Config{URL: "http://x/"}, "URL"},
		{"TLS without amqps", rabbitmq.Config{URL: ok, TLS: &tls.Config{}}, "TLS is set"},
		{"queue type", rabbitmq.Config{URL: ok, QueueType: "stream"}, "QueueType"},
		{"negative prefetch", rabbitmq.Config{URL: ok, Prefetch: -1}, "Prefetch is negative"},
		{"prefetch too large", rabbitmq.Config{URL: ok, Prefetch: 70000}, "Prefetch is 70000"},
		{"negative partitions", rabbitmq.Config{URL: ok, Partitions: -2}, "Partitions"},
		{"negative timeout", rabbitmq.Config{URL: ok, DialTimeout: -time.Second}, "DialTimeout"},
		{"heartbeat below 1s", rabbitmq.Config{URL: ok, Heartbeat: time.Millisecond}, "Heartbeat"},
		{"backoff order", rabbitmq.Config{URL: ok, ReconnectMin: time.Minute, ReconnectMax: time.Second}, "ReconnectMin"},
		{"empty group", rabbitmq.Config{URL: ok, Groups: map[string][]string{"t": {""}}}, "empty group"},
		{"empty topic", rabbitmq.Config{URL: ok, Groups: map[string][]string{"": {"g"}}}, "empty topic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := rabbitmq.NewAdapter(tc.cfg)
			if err == nil {
				_ = a.Close()
				t.Fatalf("NewAdapter(%+v) = nil error, want one containing %q", tc.cfg, tc.want)
			}
			if !errors.Is(err, eventstream.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewAdapter: %v, want ErrInvalidConfig mentioning %q", err, tc.want)
			}
		})
	}
	a, err := rabbitmq.NewAdapter(rabbitmq.Config{URL: "amqps://u:p@example.invalid/vh"})
	if err != nil {
		t.Fatalf("amqps URL without TLS config: %v", err)
	}
	_ = a.Close()
}

func TestBadInput(t *testing.T) {
	a := newAdapter(t, testConfig(brokerURL(t)))
	ctx := ctxT(t, 30*time.Second)
	if err := a.Publish(ctx, "", nil); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Errorf("Publish to empty topic: %v, want ErrEmptyTopic", err)
	}
	if _, _, err := a.Subscribe(ctx, "t", ""); !errors.Is(err, rabbitmq.ErrInvalidName) {
		t.Errorf("Subscribe with empty group: %v, want ErrInvalidName", err)
	}
	if err := a.Publish(ctx, strings.Repeat("x", 300), nil); !errors.Is(err, rabbitmq.ErrInvalidName) {
		t.Errorf("Publish to a 300-byte topic: %v, want ErrInvalidName", err)
	}
	err := a.PublishRecord(ctx, "t", eventstream.Record{Headers: map[string]string{"es-key": "x"}})
	if !errors.Is(err, rabbitmq.ErrReservedHeader) {
		t.Errorf("PublishRecord with header es-key: %v, want ErrReservedHeader", err)
	}
	if err := a.Ack(ctx, "g", fakeMessage{}); !errors.Is(err, rabbitmq.ErrForeignMessage) {
		t.Errorf("Ack of a foreign message: %v, want ErrForeignMessage", err)
	}
	bad := newAdapter(t, rabbitmq.Config{URL: strings.Replace(brokerURL(t), "guest:guest", "guest:wrong", 1)})
	if err := bad.Publish(ctx, "t", nil); err == nil || !errors.Is(err, amqp.ErrCredentials) {
		t.Errorf("Publish with a wrong password: %v, want an error wrapping amqp.ErrCredentials", err)
	}
}

type fakeMessage struct{}

func (fakeMessage) Topic() string        { return "t" }
func (fakeMessage) Value() []byte        { return nil }
func (fakeMessage) Timestamp() time.Time { return time.Time{} }
func (fakeMessage) Key() []byte          { return nil }

// TestUnroutable: a message published before any group exists is an error,
// not a silent loss; Config.Groups and DeclareGroup make the group exist.
func TestUnroutable(t *testing.T) {
	url := brokerURL(t)
	ctx := ctxT(t, 30*time.Second)
	a := newAdapter(t, testConfig(url))
	err := a.Publish(ctx, "unroutable", []byte("lost?"))
	if !errors.Is(err, rabbitmq.ErrUnroutable) {
		t.Fatalf("Publish with no group: %v, want ErrUnroutable", err)
	}
	cfg := testConfig(url)
	cfg.Groups = map[string][]string{"unroutable": {"early"}}
	b := newAdapter(t, cfg)
	if err := b.Publish(ctx, "unroutable", []byte("kept")); err != nil {
		t.Fatalf("Publish with Config.Groups: %v", err)
	}
	ch, cancel, err := b.Subscribe(ctx, "unroutable", "early")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	m := recv(t, ch, 20*time.Second, "kept")
	if string(m.Value()) != "kept" {
		t.Fatalf("got %q, want kept", m.Value())
	}
	if err := b.Ack(ctx, "early", m); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(ctx, "other", m); !errors.Is(err, rabbitmq.ErrForeignMessage) {
		t.Errorf("Ack for another group: %v, want ErrForeignMessage", err)
	}

	// Concurrent publishes, routable and not, with identical bodies, share
	// the confirm channel: each one gets its own outcome.
	if err := b.DeclareGroup(ctx, "routable", "g"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			topic, want := "routable", error(nil)
			if i%2 == 1 {
				topic, want = "unroutable-mixed", rabbitmq.ErrUnroutable
			}
			err := b.Publish(ctx, topic, []byte("same body"))
			if want == nil && err != nil || want != nil && !errors.Is(err, want) {
				t.Errorf("Publish %d to %s: %v, want %v", i, topic, err, want)
			}
		})
	}
	wg.Wait()

	// Partitioned mode: every partition queue exists once the group does.
	pcfg := testConfig(url)
	pcfg.Partitions = 4
	p := newAdapter(t, pcfg)
	if err := p.PublishRecord(ctx, "unroutable-p", eventstream.Record{Key: []byte("k")}); !errors.Is(err, rabbitmq.ErrUnroutable) {
		t.Fatalf("partitioned Publish with no group: %v, want ErrUnroutable", err)
	}
	if err := p.DeclareGroup(ctx, "unroutable-p", "g"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := p.PublishRecord(ctx, "unroutable-p", eventstream.Record{Key: fmt.Appendf(nil, "k%d", i)}); err != nil {
			t.Fatalf("partitioned Publish after DeclareGroup: %v", err)
		}
	}
}

// TestInterop: a plain amqp091 client publishes a bare JSON body with
// non-string headers (numbers, bytes, an x-death-like array of tables)
// that the bus handles, and reads what the bus published.
func TestInterop(t *testing.T) {
	url := brokerURL(t)
	ctx := ctxT(t, 60*time.Second)
	a := newAdapter(t, testConfig(url))
	bus := newBus(t, a)
	const topic, group = "interop", "svc"

	type order struct {
		ID int `json:"id"`
	}
	got := make(chan *eventstream.Event, 1)
	sub, err := bus.On(topic, func(_ context.Context, e *eventstream.Event) error {
		got <- e
		return nil
	}, eventstream.WithConsumerGroup(group))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bus.Off(sub) }()

	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "es."+topic, "", true, false, amqp.Publishing{
		ContentType: "application/json",
		Body:        []byte(`{"id":42}`),
		Headers: amqp.Table{
			"count":   int32(7),
			"ratio":   1.5,
			"flag":    true,
			"raw":     []byte("bytes"),
			"x-death": []any{amqp.Table{"count": int64(1), "queue": "q", "reason": "rejected"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("confirm: %v %v", ok, err)
	}
	select {
	case e := <-got:
		var o order
		if err := e.Unmarshal(&o); err != nil || o.ID != 42 {
			t.Fatalf("bare JSON event: %+v, %v", o, err)
		}
		for k, want := range map[string]string{"count": "7", "ratio": "1.5", "flag": "true", "raw": "bytes"} {
			if e.Headers[k] != want {
				t.Errorf("header %s = %q, want %q (all: %q)", k, e.Headers[k], want, e.Headers)
			}
		}
		var death []map[string]any
		if err := json.Unmarshal([]byte(e.Headers["x-death"]), &death); err != nil || len(death) != 1 || death[0]["reason"] != "rejected" {
			t.Errorf("x-death header %q: %v", e.Headers["x-death"], err)
		}
	case <-ctx.Done():
		t.Fatal("bare JSON message not handled")
	}

	// The other way: the bus publishes, a plain client reads the group
	// queue es.<topic>/<group>.
	if err := a.DeclareGroup(ctx, "interop-out", "plain"); err != nil {
		t.Fatal(err)
	}
	if err := bus.Emit(ctx, "interop-out", order{ID: 7}, eventstream.WithKey("k1")); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume("es.interop-out/plain", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if !strings.Contains(string(d.Body), `"id":7`) {
			t.Errorf("body %q does not carry the event data", d.Body)
		}
		if k, _ := d.Headers["es-key"].([]byte); string(k) != "k1" {
			t.Errorf("es-key header = %v, want k1", d.Headers["es-key"])
		}
		for h := range d.Headers {
			if h != "es-key" && h != "es-time" && !strings.HasPrefix(h, "ce_") && h != "content-type" {
				t.Errorf("plain client sees header %q (%v)", h, d.Headers)
			}
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("delivery mode %d, want persistent", d.DeliveryMode)
		}
		if d.ContentType != eventstream.CloudEventsContentType {
			t.Errorf("content-type property %q, want %q", d.ContentType, eventstream.CloudEventsContentType)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("plain client received nothing")
	}
}

// TestContentTypeProperty: a record's "content-type" header travels as the
// AMQP content-type property (not as a table entry, which the broker would
// parse) and comes back as the "content-type" header.
func TestContentTypeProperty(t *testing.T) {
	url := brokerURL(t)
	ctx := ctxT(t, 60*time.Second)
	a := newAdapter(t, testConfig(url))
	const topic = "content-type"
	for _, g := range []string{"adapter", "plain"} {
		if err := a.DeclareGroup(ctx, topic, g); err != nil {
			t.Fatal(err)
		}
	}
	rec := eventstream.Record{Value: []byte("v"), Headers: map[string]string{"content-type": "text/plain", "h": "x"}}
	if err := a.PublishRecord(ctx, topic, rec); err != nil {
		t.Fatal(err)
	}
	msgs, cancel, err := a.Subscribe(ctx, topic, "adapter")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	m := recv(t, msgs, 20*time.Second, "the record")
	if h := m.Headers(); len(h) != 2 || h["content-type"] != "text/plain" || h["h"] != "x" {
		t.Errorf("Headers() = %q, want content-type text/plain and h x", h)
	}
	if err := a.Ack(ctx, "adapter", m); err != nil {
		t.Fatal(err)
	}

	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get("es."+topic+"/plain", true)
	if err != nil || !ok {
		t.Fatalf("basic.get: %v, %v", ok, err)
	}
	if d.ContentType != "text/plain" {
		t.Errorf("content-type property %q, want text/plain", d.ContentType)
	}
	if _, ok := d.Headers["content-type"]; ok || d.Headers["h"] != "x" {
		t.Errorf("header table %v, want h but no content-type", d.Headers)
	}
}

func newBus(t *testing.T, a eventstream.MQAdapter) eventstream.Bus {
	t.Helper()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.DrainTimeout = 5 * time.Second
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bus.Close(); err != nil {
			t.Errorf("bus.Close: %v", err)
		}
	})
	return bus
}

// TestBusDeadLetter: an event whose handler fails for good reaches the
// dead-letter topic (whose group the application declares), and only then
// is the original acknowledged.
func TestBusDeadLetter(t *testing.T) {
	url := brokerURL(t)
	const topic, group = "dl-orders", "billing"
	dlq := eventstream.DeadLetterTopicName(topic, group)
	cfg := testConfig(url)
	cfg.Groups = map[string][]string{dlq: {"ops"}}
	a := newAdapter(t, cfg)
	bus := newBus(t, a)
	ctx := ctxT(t, 60*time.Second)
	var mu sync.Mutex
	calls := 0
	sub, err := bus.On(topic, func(context.Context, *eventstream.Event) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return errors.New("always fails")
	}, eventstream.WithConsumerGroup(group), eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bus.Off(sub) }()
	if err := bus.Emit(ctx, topic, map[string]int{"n": 1}, eventstream.WithKey("k")); err != nil {
		t.Fatal(err)
	}
	ch, cancel, err := a.Subscribe(ctx, dlq, "ops")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	m := recv(t, ch, 30*time.Second, "dead letter")
	if m.Headers()[eventstream.HeaderDeadLetterGroup] != group {
		t.Errorf("dead letter headers %q, want group %q", m.Headers(), group)
	}
	if err := a.Ack(ctx, "ops", m); err != nil {
		t.Fatal(err)
	}
}
