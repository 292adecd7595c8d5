package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

func TestPublishSubscribeRoundTrip(t *testing.T) {
	c := startCluster(t, 3, "rt")
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)

	ts := time.UnixMilli(1700000000123)
	if err := a.PublishRecord(ctx, "rt", eventstream.Record{
		Key: []byte("k1"), Value: []byte("v1"), Headers: map[string]string{"h": "x"}, Time: ts,
	}); err != nil {
		t.Fatalf("PublishRecord: %v", err)
	}
	if err := a.Publish(ctx, "rt", nil); err != nil {
		t.Fatalf("Publish nil: %v", err)
	}
	ch, cancel, err := a.Subscribe(ctx, "rt", "g1")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	got := map[string]*kafka.Message{}
	for len(got) < 2 {
		select {
		case m := <-ch:
			km := m.(*kafka.Message)
			got[string(km.Value())] = km
			if err := a.Ack(ctx, "g1", m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("timeout; got %d", len(got))
		}
	}
	m := got["v1"]
	if m == nil || string(m.Key()) != "k1" || m.Headers()["h"] != "x" || !m.Timestamp().Equal(ts) || m.Topic() != "rt" {
		t.Fatalf("bad message %+v", m)
	}
	if e := got[""]; e == nil || e.Key() != nil || len(e.Value()) != 0 {
		t.Fatalf("bad empty message %+v", e)
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed after cancel")
	}
	offs := committed(t, c.Addrs(), "g1", "rt")
	var total int64
	for _, o := range offs {
		total += o
	}
	if total != 2 {
		t.Fatalf("committed offsets %v, want total 2", offs)
	}
}

func TestClosedAdapter(t *testing.T) {
	c := startCluster(t, 1, "closed")
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 10*time.Second)
	ch, _, err := a.Subscribe(ctx, "closed", "g")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel open after Close")
	}
	if err := a.Publish(ctx, "closed", []byte("x")); !errors.Is(err, eventstream.ErrAdapterClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, _, err := a.Subscribe(ctx, "closed", "g"); !errors.Is(err, eventstream.ErrAdapterClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestUnknownTopic(t *testing.T) {
	c := startCluster(t, 1, "known")
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 10*time.Second)
	if err := a.Publish(ctx, "nope", []byte("x")); !errors.Is(err, kafka.ErrUnknownTopic) {
		t.Fatalf("Publish: %v", err)
	}
	if _, _, err := a.Subscribe(ctx, "nope", "g"); !errors.Is(err, kafka.ErrUnknownTopic) {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := a.Publish(ctx, "", []byte("x")); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Fatalf("Publish empty topic: %v", err)
	}
	if _, _, err := a.Subscribe(ctx, "known", ""); !errors.Is(err, eventstream.ErrNoConsumerGroup) {
		t.Fatalf("Subscribe without group: %v", err)
	}
	// Invalid names fail fast with an error, not by the context deadline.
	for _, bad := range []string{"bad topic!", "..", string(make([]byte, 300))} {
		start := time.Now()
		if err := a.Publish(ctx, bad, []byte("x")); !errors.Is(err, kafka.ErrInvalidTopic) {
			t.Errorf("Publish to %q: %v", bad, err)
		}
		if _, _, err := a.Subscribe(ctx, bad, "g"); !errors.Is(err, kafka.ErrInvalidTopic) {
			t.Errorf("Subscribe to %q: %v", bad, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("invalid topic %q took %v to fail", bad, d)
		}
	}
}

func TestAutoCreateTopic(t *testing.T) {
	c := startCluster(t, 1, "seed")
	cfg := testConfig(c.Addrs())
	cfg.AutoCreateTopics = true
	cfg.TopicPartitions = 4
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 20*time.Second)
	if err := a.Publish(ctx, "fresh", []byte("x")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ch, cancel, err := a.Subscribe(ctx, "fresh", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	select {
	case m := <-ch:
		if string(m.Value()) != "x" {
			t.Fatalf("got %q", m.Value())
		}
	case <-ctx.Done():
		t.Fatal("timeout")
	}
}

func TestPublishBrokerDown(t *testing.T) {
	c := startCluster(t, 1, "down")
	addrs := c.Addrs()
	a := newAdapter(t, testConfig(addrs))
	ctx := ctxT(t, 10*time.Second)
	if err := a.Publish(ctx, "down", []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	pctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.Publish(pctx, "down", []byte("y"))
	if err == nil {
		t.Fatal("publish succeeded with the broker down")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline error, got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("publish took %v past a 500ms deadline", d)
	}
}

// TestUnknownTopicNotCreatedByLookup checks that looking a topic up does
// not create it on a broker that auto-creates topics on metadata requests.
func TestUnknownTopicNotCreatedByLookup(t *testing.T) {
	c := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation())
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 10*time.Second)
	if err := a.Publish(ctx, "never-created", []byte("x")); !errors.Is(err, kafka.ErrUnknownTopic) {
		t.Fatalf("Publish: %v", err)
	}
	if _, _, err := a.Subscribe(ctx, "never-created", "g"); !errors.Is(err, kafka.ErrUnknownTopic) {
		t.Fatalf("Subscribe: %v", err)
	}
}
