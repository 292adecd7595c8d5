package redis_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	goredis "github.com/redis/go-redis/v9"
)

// TestTrimUnderSlowGroupLosesNothing bounds the stream at 100 entries while
// one group keeps up and another holds 1,000 entries unacknowledged and lags
// 1,000 more behind: the stream keeps everything the slow group still
// needs, the slow group receives all 2,000 entries, and once both groups
// acknowledged everything the stream is trimmed to about MaxLen.
func TestTrimUnderSlowGroupLosesNothing(t *testing.T) {
	b := sharedBroker(t)
	cfg := testConfig(b.Addr())
	cfg.MaxLen = 100
	cfg.TrimInterval = 20 * time.Millisecond
	a := newAdapter(t, cfg)
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 60*time.Second)
	topic := uniqueTopic(t)
	key := a.StreamKey(topic)
	const half = 1000

	fast, cancelFast, err := a.Subscribe(ctx, topic, "fast")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelFast()
	slow, cancelSlow, err := a.Subscribe(ctx, topic, "slow")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelSlow()

	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := a.Publish(ctx, topic, fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	fastGot := 0
	drainFast := func(until int) {
		t.Helper()
		for fastGot < until {
			m := recv(t, fast, 10*time.Second)
			if err := a.Ack(ctx, "fast", m); err != nil {
				t.Fatal(err)
			}
			fastGot++
		}
	}
	publish(0, half)
	drainFast(half)
	// The slow group receives the first half and acknowledges nothing.
	var held []eventstream.Message
	for range half {
		held = append(held, recv(t, slow, 10*time.Second))
	}
	publish(half, 2*half)
	drainFast(2 * half)
	// Trimming rounds run meanwhile (every 20ms, and the stream is marked
	// by every publish); wait until a round surely ran after the last
	// publish: a new group-less stream published to now is trimmed.
	probe := uniqueTopic(t) + "-probe"
	for i := range 300 {
		if err := a.Publish(ctx, probe, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the group-less probe stream to be trimmed", func() bool {
		return rdb.XLen(ctx, a.StreamKey(probe)).Val() <= 200
	})
	if n := rdb.XLen(ctx, key).Val(); n != 2*half {
		t.Fatalf("stream has %d entries while the slow group acknowledged none of them, want %d", n, 2*half)
	}

	// Now the slow group acknowledges and reads everything.
	seen := map[string]bool{}
	for _, m := range held {
		seen[string(m.Value())] = true
		if err := a.Ack(ctx, "slow", m); err != nil {
			t.Fatal(err)
		}
	}
	for len(seen) < 2*half {
		m := recv(t, slow, 10*time.Second)
		seen[string(m.Value())] = true
		if err := a.Ack(ctx, "slow", m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 * half {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("slow group never received %d", i)
		}
	}
	waitFor(t, 10*time.Second, "the stream to be trimmed once every group acknowledged everything", func() bool {
		return rdb.XLen(ctx, key).Val() <= cfg.MaxLen+100
	})
	t.Logf("stream length after both groups caught up: %d (MaxLen %d)", rdb.XLen(ctx, key).Val(), cfg.MaxLen)
}

// TestTrimUnacknowledgedReportsLoss: with TrimUnacknowledged the stream is
// cut to exactly MaxLen although a group read nothing, and the loss is
// logged with its count and the group.
func TestTrimUnacknowledgedReportsLoss(t *testing.T) {
	b := sharedBroker(t)
	rec := newLogRecorder()
	cfg := testConfig(b.Addr())
	cfg.MaxLen = 50
	cfg.TrimInterval = 20 * time.Millisecond
	cfg.TrimUnacknowledged = true
	cfg.Logger = slog.New(rec)
	a := newAdapter(t, cfg)
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 30*time.Second)
	topic := uniqueTopic(t)
	key := a.StreamKey(topic)
	if err := rdb.XGroupCreateMkStream(ctx, key, "idle-group", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// Pipelined, so that all 500 entries exist before the first trim.
	pipe := rdb.Pipeline()
	for i := range 500 {
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"v", fmt.Sprint(i)}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx, topic, []byte("500")); err != nil { // marks the stream for trimming
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stream to be cut to MaxLen", func() bool {
		return rdb.XLen(ctx, key).Val() == cfg.MaxLen
	})
	waitFor(t, 5*time.Second, "the loss to be logged", func() bool {
		_, ok := rec.find("had not acknowledged")
		return ok
	})
	line, _ := rec.find("had not acknowledged")
	if !strings.HasPrefix(line, "WARN") || !strings.Contains(line, "unacknowledged=451") || !strings.Contains(line, "idle-group") {
		t.Errorf("loss reported as %q, want WARN with unacknowledged=451 and the group", line)
	}
}

// TestTrimWithoutGroups trims a stream no group reads to about MaxLen.
func TestTrimWithoutGroups(t *testing.T) {
	b := sharedBroker(t)
	cfg := testConfig(b.Addr())
	cfg.MaxLen = 100
	cfg.TrimInterval = 20 * time.Millisecond
	a := newAdapter(t, cfg)
	rdb := plainClient(t, b.Addr())
	ctx := testContext(t, 30*time.Second)
	topic := uniqueTopic(t)
	for i := range 1000 {
		if err := a.Publish(ctx, topic, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the stream to be trimmed", func() bool {
		return rdb.XLen(ctx, a.StreamKey(topic)).Val() <= cfg.MaxLen+100
	})
}
