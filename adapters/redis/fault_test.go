package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	goredis "github.com/redis/go-redis/v9"
)

// logRecorder is a slog.Handler that keeps the messages of the records it
// sees (and passes them on to the test logger).
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
	next slog.Handler
}

func newLogRecorder() *logRecorder { return &logRecorder{next: logger().Handler()} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(ctx context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.msgs = append(r.msgs, b.String())
	r.mu.Unlock()
	if r.next.Enabled(ctx, rec.Level) {
		return r.next.Handle(ctx, rec)
	}
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// find returns the first recorded message containing s.
func (r *logRecorder) find(s string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			return m, true
		}
	}
	return "", false
}

// TestRestartWithAOF kills redis-server (SIGKILL) mid-stream and starts it
// again on the same AOF (appendfsync always) while 4 publishers and a
// subscription keep running: every Publish that returned nil is delivered,
// and Publish calls ongoing during the outage succeed once the server is
// back (they retry).
func TestRestartWithAOF(t *testing.T) {
	b := brokertest.Redis(t, brokertest.RedisAOF())
	const n, publishers = 4000, 4
	rec := newLogRecorder()
	cfg := testConfig(b.Addr())
	cfg.Logger = slog.New(rec)
	a := newAdapter(t, cfg)
	ctx := testContext(t, 90*time.Second)
	topic, group := "aof", "g"
	msgs, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	var published, failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	okSet := make([]atomic.Bool, n)
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := a.Publish(ctx, topic, fmt.Appendf(nil, "%d", i)); err != nil {
					t.Logf("publish %d: %v", i, err)
					failed.Add(1)
					continue
				}
				okSet[i].Store(true)
				published.Add(1)
			}
		}()
	}

	seen := make([]bool, n)
	distinct := 0
	tick := time.NewTicker(20 * time.Millisecond) // re-check until: publishers count after Publish returned
	defer tick.Stop()
	receive := func(until func() bool) {
		t.Helper()
		for !until() {
			select {
			case <-tick.C:
			case m, ok := <-msgs:
				if !ok {
					t.Fatal("subscription ended")
				}
				var i int
				if _, err := fmt.Sscan(string(m.Value()), &i); err != nil || i < 0 || i >= n {
					t.Fatalf("unexpected message %q", m.Value())
				}
				if !seen[i] {
					seen[i] = true
					distinct++
				}
				if err := a.Ack(ctx, group, m); err != nil {
					t.Errorf("Ack: %v", err)
				}
			case <-ctx.Done():
				t.Fatalf("timed out: %d distinct received, %d published", distinct, published.Load())
			}
		}
	}
	receive(func() bool { return distinct >= n/4 })
	b.Kill(t)
	t.Logf("killed redis-server after %d received, %d published", distinct, published.Load())
	b.Restart(t)
	t.Log("restarted redis-server")
	receive(func() bool { return published.Load()+failed.Load() == n && distinct >= int(published.Load()) })
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Errorf("%d publishes failed although the server came back", f)
	}
	for i := range n {
		if okSet[i].Load() && !seen[i] {
			t.Errorf("message %d was published (Publish returned nil) but never delivered", i)
		}
	}
	_, retried := rec.find("XADD failed; retrying")
	t.Logf("%d published, %d distinct received; publishes retried during the outage: %v", published.Load(), distinct, retried)
}

// TestRestartWithoutPersistenceRecreatesGroup restarts a redis-server that
// has no persistence: the stream and the group are gone. The subscription
// recreates the group, logs the loss at level Error, and receives what is
// published afterwards.
func TestRestartWithoutPersistenceRecreatesGroup(t *testing.T) {
	b := brokertest.Redis(t)
	rec := newLogRecorder()
	cfg := testConfig(b.Addr())
	cfg.Logger = slog.New(rec)
	a := newAdapter(t, cfg)
	ctx := testContext(t, 60*time.Second)
	msgs, cancel, err := a.Subscribe(ctx, "vanish", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := a.Publish(ctx, "vanish", []byte("before")); err != nil {
		t.Fatal(err)
	}
	m := recv(t, msgs, 10*time.Second)
	if string(m.Value()) != "before" {
		t.Fatalf("got %q", m.Value())
	}
	b.Kill(t)
	b.Restart(t)
	// The group is recreated when the reader sees NOGROUP; until then the
	// stream does not even exist, so publishing first would create it
	// without the group. Wait for the log line.
	waitFor(t, 20*time.Second, "the log about the vanished group", func() bool {
		_, ok := rec.find("consumer group vanished")
		return ok
	})
	if line, _ := rec.find("consumer group vanished"); !strings.HasPrefix(line, "ERROR") {
		t.Errorf("the loss is logged as %q, want level ERROR", line)
	}
	if err := a.Ack(ctx, "g", m); err != nil {
		t.Logf("Ack of an entry of the vanished group: %v (tolerated)", err)
	}
	if err := a.Publish(ctx, "vanish", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, msgs, 10*time.Second); string(m.Value()) != "after" {
		t.Fatalf("after the restart got %q, want \"after\"", m.Value())
	}
}

// TestTakeoverFromDeadConsumer leaves entries pending with a consumer that
// never comes back (a plain client's XREADGROUP): a subscription of the
// group takes them over once they were idle for ClaimIdle and marks them
// redelivered; after they were acknowledged the group has nothing pending.
func TestTakeoverFromDeadConsumer(t *testing.T) {
	b := sharedBroker(t)
	a := newAdapter(t, testConfig(b.Addr()))
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 30*time.Second)
	topic, group := uniqueTopic(t), "g"
	key := a.StreamKey(topic)
	if err := rdb.XGroupCreateMkStream(ctx, key, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := a.Publish(ctx, topic, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	dead := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "dead", Streams: []string{key, ">"}, Count: 5, Block: -1})
	if err := dead.Err(); err != nil || len(dead.Val()[0].Messages) != 5 {
		t.Fatalf("dead consumer read: %v %v", dead.Val(), err)
	}
	start := time.Now()
	msgs, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	got := map[string]bool{}
	for len(got) < 5 {
		m := recv(t, msgs, 10*time.Second)
		rm := m.(*redis.Message)
		if !rm.Redelivered() {
			t.Errorf("%q taken over but Redelivered() is false", m.Value())
		}
		got[string(m.Value())] = true
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("entries taken over after %v, before ClaimIdle (2s) minus the time they were idle before Subscribe", d)
	}
	waitFor(t, 10*time.Second, "the group to have nothing pending", func() bool {
		p, err := rdb.XPending(ctx, key, group).Result()
		return err == nil && p.Count == 0
	})
}

// TestInFlightNotStolen: a subscription that holds an entry longer than
// ClaimIdle without acknowledging it keeps refreshing it, so a sibling in
// the same group does not take it over.
func TestInFlightNotStolen(t *testing.T) {
	b := sharedBroker(t)
	cfg := testConfig(b.Addr())
	cfg.ClaimIdle = time.Second
	cfg.ClaimInterval = 100 * time.Millisecond
	a := newAdapter(t, cfg)
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 30*time.Second)
	topic, group := uniqueTopic(t), "g"
	first, cancel1, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel1()
	if err := a.Publish(ctx, topic, []byte("slow")); err != nil {
		t.Fatal(err)
	}
	m := recv(t, first, 10*time.Second)
	second, cancel2, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	// For 3 × ClaimIdle, the entry stays with the first consumer and its
	// idle time stays below ClaimIdle.
	key := a.StreamKey(topic)
	deadline := time.Now().Add(3 * cfg.ClaimIdle)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var owner string
	for time.Now().Before(deadline) {
		select {
		case m2 := <-second:
			t.Fatalf("sibling received %q while the first subscription still held it", m2.Value())
		case <-tick.C:
		}
		p, err := rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: 10}).Result()
		if err != nil || len(p) != 1 {
			t.Fatalf("XPENDING: %v %v", p, err)
		}
		if owner == "" {
			owner = p[0].Consumer
		}
		if p[0].Consumer != owner || p[0].Idle >= cfg.ClaimIdle {
			t.Fatalf("entry now with %s (was %s), idle %v", p[0].Consumer, owner, p[0].Idle)
		}
	}
	if err := a.Ack(ctx, group, m); err != nil {
		t.Fatal(err)
	}
}

// TestHandBackOnCancel: when a subscription ends it hands its pending
// entries back, so a sibling that is already running gets them at its next
// XAUTOCLAIM, long before ClaimIdle (30s here); a consumer left without
// pending entries is deleted from the group.
func TestHandBackOnCancel(t *testing.T) {
	b := sharedBroker(t)
	cfg := testConfig(b.Addr())
	cfg.ClaimIdle = 30 * time.Second
	cfg.ClaimInterval = 200 * time.Millisecond
	a := newAdapter(t, cfg)
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 30*time.Second)
	topic, group := uniqueTopic(t), "g"
	key := a.StreamKey(topic)
	for i := range 10 {
		if err := a.Publish(ctx, topic, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	first, cancel1, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		m := recv(t, first, 10*time.Second)
		if i < 4 {
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The sibling starts while the first still holds the entries, which
	// are far from idle for ClaimIdle; it can only get them handed back.
	// (recv waits 10s at most, a third of ClaimIdle.)
	second, cancel2, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	start := time.Now()
	cancel1()
	got := map[string]bool{}
	for len(got) < 6 {
		m := recv(t, second, 10*time.Second)
		got[string(m.Value())] = true
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("sibling got the 6 handed-back entries %v after cancel", time.Since(start).Round(time.Millisecond))
	for i := range 4 {
		if got[fmt.Sprintf("m%d", i)] {
			t.Errorf("acknowledged m%d delivered again", i)
		}
	}
	// The second cancel leaves nothing pending, so its consumer is deleted;
	// the first one's, emptied by the takeover, is left for the sweep.
	cancel2()
	cs, err := rdb.XInfoConsumers(ctx, key, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Pending != 0 {
			t.Errorf("consumer %s still has %d pending", c.Name, c.Pending)
		}
	}
	if len(cs) != 1 {
		t.Errorf("group has %d consumers after both subscriptions ended, want 1 (the one that handed entries back): %+v", len(cs), cs)
	}
}

// TestConsumerSweep: consumers without pending entries that were idle for
// ConsumerExpiry are deleted by a live subscription; one with pending
// entries is not (that would discard them) but its entries are taken over.
func TestConsumerSweep(t *testing.T) {
	b := sharedBroker(t)
	cfg := testConfig(b.Addr())
	cfg.ClaimIdle = 300 * time.Millisecond
	cfg.ClaimInterval = 100 * time.Millisecond
	cfg.ConsumerExpiry = 300 * time.Millisecond
	a := newAdapter(t, cfg)
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 30*time.Second)
	topic, group := uniqueTopic(t), "g"
	key := a.StreamKey(topic)
	if err := rdb.XGroupCreateMkStream(ctx, key, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XGroupCreateConsumer(ctx, key, group, "idle-empty").Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, topic, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: "dead-holder", Streams: []string{key, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	msgs, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	m := recv(t, msgs, 10*time.Second)
	if err := a.Ack(ctx, group, m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "both left-behind consumers to be deleted", func() bool {
		cs, err := rdb.XInfoConsumers(ctx, key, group).Result()
		if err != nil {
			return false
		}
		for _, c := range cs {
			if c.Name == "idle-empty" || c.Name == "dead-holder" {
				return false
			}
		}
		return true
	})
}

// TestPublishErrors: a permanent Redis error is returned at once, a
// canceled context is honoured, and both wrap what they report.
func TestPublishErrors(t *testing.T) {
	b := sharedBroker(t)
	a := newAdapter(t, testConfig(b.Addr()))
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 10*time.Second)
	topic := uniqueTopic(t)
	if err := rdb.Set(ctx, a.StreamKey(topic), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, topic, []byte("x")); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("Publish to a string key: %v, want a WRONGTYPE error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Publish(cctx, uniqueTopic(t), []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a canceled context: %v", err)
	}
	if err := a.Publish(ctx, "", []byte("x")); !errors.Is(err, eventstream.ErrEmptyTopic) {
		t.Errorf("Publish to an empty topic: %v", err)
	}
	if _, _, err := a.Subscribe(ctx, topic, ""); !errors.Is(err, redis.ErrEmptyGroup) {
		t.Errorf("Subscribe with an empty group: %v", err)
	}
	if err := a.Ack(ctx, "g", fakeMessage{}); !errors.Is(err, redis.ErrUnknownMessage) {
		t.Errorf("Ack of a foreign message: %v", err)
	}
}
