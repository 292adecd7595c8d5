package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	goredis "github.com/redis/go-redis/v9"
)

// TestInteropPlainProducer: entries written by a plain go-redis client in
// the adapter's layout arrive with value, key, headers and timestamp; an
// entry in any other layout arrives with its fields as a JSON object.
func TestInteropPlainProducer(t *testing.T) {
	b := sharedBroker(t)
	a := newAdapter(t, testConfig(b.Addr()))
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 20*time.Second)
	topic := uniqueTopic(t)
	key := a.StreamKey(topic)
	msgs, cancel, err := a.Subscribe(ctx, topic, "g")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	ts := time.UnixMilli(1700000000123)
	if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{
		"v", "hello", "k", "customer-7", "t", strconv.FormatInt(ts.UnixMilli(), 10), "h:trace", "abc",
	}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"name", "alice", "age", "3"}}).Err(); err != nil {
		t.Fatal(err)
	}
	m := recv(t, msgs, 10*time.Second).(*redis.Message)
	if string(m.Value()) != "hello" || string(m.Key()) != "customer-7" || !m.Timestamp().Equal(ts) ||
		len(m.Headers()) != 1 || m.Headers()["trace"] != "abc" || m.Topic() != topic || m.ID() == "" {
		t.Errorf("got value %q key %q time %v headers %v topic %q id %q", m.Value(), m.Key(), m.Timestamp(), m.Headers(), m.Topic(), m.ID())
	}
	before := time.Now()
	f := recv(t, msgs, 10*time.Second)
	if want := `{"age":"3","name":"alice"}`; string(f.Value()) != want || f.Key() != nil {
		t.Errorf("foreign entry: value %q key %q, want %s and no key", f.Value(), f.Key(), want)
	}
	if d := before.Sub(f.Timestamp()); d < -time.Minute || d > time.Minute {
		t.Errorf("foreign entry timestamp %v (from its ID) is not close to now", f.Timestamp())
	}
	for _, x := range []eventstream.Message{m, f} {
		if err := a.Ack(ctx, "g", x); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInteropPlainConsumer: what the adapter publishes, a plain go-redis
// consumer group reads in the documented layout and acknowledges.
func TestInteropPlainConsumer(t *testing.T) {
	b := sharedBroker(t)
	a := newAdapter(t, testConfig(b.Addr()))
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 20*time.Second)
	topic := uniqueTopic(t)
	key := a.StreamKey(topic)
	if err := rdb.XGroupCreateMkStream(ctx, key, "plain", "0").Err(); err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1700000000456)
	if err := a.PublishRecord(ctx, topic, eventstream.Record{
		Key: []byte("k1"), Value: []byte{0, 1, 0xff}, Headers: map[string]string{"trace": "t1"}, Time: ts,
	}); err != nil {
		t.Fatal(err)
	}
	res, err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "plain", Consumer: "c", Streams: []string{key, ">"}, Count: 10, Block: -1}).Result()
	if err != nil || len(res) != 1 || len(res[0].Messages) != 1 {
		t.Fatalf("XREADGROUP: %v %v", res, err)
	}
	e := res[0].Messages[0]
	want := map[string]any{"v": string([]byte{0, 1, 0xff}), "k": "k1", "t": "1700000000456", "h:trace": "t1"}
	if fmt.Sprint(e.Values) != fmt.Sprint(want) {
		t.Errorf("fields %v, want %v", e.Values, want)
	}
	if n, err := rdb.XAck(ctx, key, "plain", e.ID).Result(); err != nil || n != 1 {
		t.Errorf("XACK: %d %v", n, err)
	}
}

// TestDistributedBus runs the distributed bus over the Redis adapter with
// 8 workers: keyed events reach the group with their key and headers, in
// order per key.
func TestDistributedBus(t *testing.T) {
	b := sharedBroker(t)
	a := newAdapter(t, testConfig(b.Addr()))
	bus := newBus(t, a, nil)
	topic := uniqueTopic(t)
	type Order struct{ Customer, Seq int }
	const customers, perCustomer = 8, 100
	var mu sync.Mutex
	last := map[int]int{}
	got := 0
	done := make(chan struct{})
	sub, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
		var o Order
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if e.Key != fmt.Sprintf("c%d", o.Customer) {
			t.Errorf("event key %q for customer %d", e.Key, o.Customer)
		}
		if prev, ok := last[o.Customer]; ok && o.Seq != prev+1 || !ok && o.Seq != 0 {
			t.Errorf("customer %d: seq %d after %d", o.Customer, o.Seq, prev)
		}
		last[o.Customer] = o.Seq
		if got++; got == customers*perCustomer {
			close(done)
		}
		return nil
	}, eventstream.WithConsumerGroup("billing"), eventstream.WithConcurrency(8))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 30*time.Second)
	for s := range perCustomer {
		for cu := range customers {
			if err := bus.Emit(ctx, topic, Order{cu, s}, eventstream.WithKey(fmt.Sprintf("c%d", cu))); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("received %d events", got)
	}
	if err := bus.Off(sub); err != nil {
		t.Error(err)
	}
	// Everything was acknowledged: nothing pending in the group.
	rdb := plainClient(t, b.Addr())
	waitFor(t, 10*time.Second, "no pending entries", func() bool {
		p, err := rdb.XPending(ctx, a.StreamKey(topic), "billing").Result()
		return err == nil && p.Count == 0
	})
}

// TestConfigValidation checks that NewAdapter rejects unusable configs with
// an error wrapping eventstream.ErrInvalidConfig, and accepts the others.
func TestConfigValidation(t *testing.T) {
	bad := map[string]redis.Config{
		"no server":             {},
		"two servers":           {Addr: "127.0.0.1:1", URL: "redis://127.0.0.1:1"},
		"addr not host:port":    {Addr: "localhost"},
		"bad URL":               {URL: "http://x"},
		"URL with password":     {URL: "redis://127.0.0.1:1", Password: "x"},
		"sentinel without name": {SentinelAddrs: []string{"127.0.0.1:1"}},
		"name without sentinel": {MasterName: "m"},
		"sentinel creds alone":  {Addr: "127.0.0.1:1", SentinelPassword: "x"},
		"cluster DB":            {ClusterAddrs: []string{"127.0.0.1:1"}, DB: 1},
		"negative DB":           {Addr: "127.0.0.1:1", DB: -1},
		"client and TLS":        {Client: goredis.NewClient(&goredis.Options{}), Password: "x"},
		"ring client":           {Client: goredis.NewRing(&goredis.RingOptions{})},
		"negative Block":        {Addr: "127.0.0.1:1", Block: -1},
		"huge Block":            {Addr: "127.0.0.1:1", Block: time.Minute},
		"ClaimIdle below Block": {Addr: "127.0.0.1:1", Block: time.Second, ClaimIdle: 2 * time.Second},
		"interval over idle":    {Addr: "127.0.0.1:1", ClaimIdle: time.Second, ClaimInterval: 2 * time.Second},
		"expiry below idle":     {Addr: "127.0.0.1:1", ClaimIdle: time.Minute, ConsumerExpiry: time.Second},
		"negative ReadCount":    {Addr: "127.0.0.1:1", ReadCount: -1},
		"negative MaxInFlight":  {Addr: "127.0.0.1:1", MaxInFlight: -1},
		"negative AckBatch":     {Addr: "127.0.0.1:1", AckBatch: -1},
		"negative batch":        {Addr: "127.0.0.1:1", MaxPublishBatch: -1},
		"negative MaxLen":       {Addr: "127.0.0.1:1", MaxLen: -1},
		"lossy without MaxLen":  {Addr: "127.0.0.1:1", TrimUnacknowledged: true},
		"negative trim":         {Addr: "127.0.0.1:1", MaxLen: 10, TrimInterval: -1},
		"negative shutdown":     {Addr: "127.0.0.1:1", ShutdownTimeout: -1},
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			a, err := redis.NewAdapter(cfg)
			if !errors.Is(err, eventstream.ErrInvalidConfig) {
				t.Errorf("NewAdapter: %v, want an error wrapping ErrInvalidConfig", err)
			}
			if a != nil {
				_ = a.Close()
			}
			if c, ok := cfg.Client.(interface{ Close() error }); ok {
				_ = c.Close()
			}
		})
	}
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	good := map[string]redis.Config{
		"addr":     {Addr: "127.0.0.1:1"},
		"URL":      {URL: "rediss://user:pw@127.0.0.1:1/3"},
		"sentinel": {MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}},
		"cluster":  {ClusterAddrs: []string{"127.0.0.1:1", "127.0.0.1:2"}},
		"client":   {Client: client},
		"all set": {Addr: "127.0.0.1:1", Block: time.Second, ClaimIdle: 10 * time.Second, ClaimInterval: time.Second,
			ConsumerExpiry: time.Minute, ReadCount: 10, MaxInFlight: 10, AckBatch: 10, MaxPublishBatch: 10,
			MaxQueuedPublishes: 10, MaxLen: 1000, TrimInterval: time.Second, KeyPrefix: "app:"},
	}
	for name, cfg := range good {
		t.Run(name, func(t *testing.T) {
			a, err := redis.NewAdapter(cfg)
			if err != nil {
				t.Fatalf("NewAdapter: %v", err)
			}
			if a.MessagingSystem() != "redis" {
				t.Errorf("MessagingSystem() = %q", a.MessagingSystem())
			}
			if err := a.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	if err := client.Ping(context.Background()).Err(); errors.Is(err, goredis.ErrClosed) {
		t.Errorf("Close closed the caller's client: %v", err)
	}
}
