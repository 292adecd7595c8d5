package redis_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"github.com/eventstream-go/eventstream/internal/crashtest"
	goredis "github.com/redis/go-redis/v9"
)

// envAddr gives the crash test's consumer processes the broker address.
const envAddr = "EVENTSTREAM_REDIS_ADDR"

// newCrashAdapter is the adapter of a crash-test consumer process (see
// TestMain): a dead member's entries are taken over after testConfig's
// short ClaimIdle.
func newCrashAdapter(log *slog.Logger) (eventstream.MQAdapter, error) {
	cfg := testConfig(os.Getenv(envAddr))
	cfg.Logger = log
	return redis.NewAdapter(cfg)
}

// TestCrashConsumerTakeover runs the whole bus across processes
// (internal/crashtest): this process emits 12,000 keyed events while three
// consumer processes (one consumer group, concurrency 8 each, a handler
// that fsyncs) handle them; three times mid-stream the member that handled
// the most in its current life is killed with SIGKILL, so its pending
// entries stay with a consumer that never comes back, and a new process
// takes its slot. The live members must take those entries over
// (XAUTOCLAIM after ClaimIdle): in the end every event was handled at least
// once, and after the last members left gracefully the group has no
// pending entry but handed-back duplicates.
func TestCrashConsumerTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consumer processes; skipped with -short")
	}
	b := brokertest.Redis(t)
	topic, group := "crash", "crash-group"
	a := newAdapter(t, testConfig(b.Addr()))
	bus := newBus(t, a, nil)
	res := crashtest.Run(t, crashtest.Config{
		Bus: bus, Topic: topic, Group: group,
		Env:     []string{envAddr + "=" + b.Addr()},
		Events:  12000,
		Members: 3,
		Window:  2500,
		Kills:   []int{1500, 5000, 8500},
		Sync:    true, // a slow handler: the members hold many entries when killed
	})
	if got := bus.Stats().Emitted; got != 12000 {
		t.Errorf("emitted %d, want 12000", got)
	}

	// The members that left gracefully acknowledged or handed back
	// everything, and the dead members' entries were taken over: whatever
	// is still pending was handed back (idle far beyond ClaimIdle) and is a
	// duplicate of an event that was handled, waiting for the next member.
	ctx := testContext(t, 30*time.Second)
	rdb := plainClient(t, b.Addr())
	key := a.StreamKey(topic)
	pend, err := rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: 10000}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pend {
		es, err := rdb.XRange(ctx, key, p.ID, p.ID).Result()
		if err != nil || len(es) != 1 {
			t.Fatalf("XRANGE %s: %v %v", p.ID, es, err)
		}
		var env struct {
			Data crashtest.Payload `json:"data"`
		}
		v, _ := es[0].Values["v"].(string)
		if err := json.Unmarshal([]byte(v), &env); err != nil {
			t.Fatalf("entry %s: %v", p.ID, err)
		}
		if res.Counts[env.Data.Seq] == 0 || p.Idle < time.Hour {
			t.Errorf("entry %s (seq %d, handled %d times) pending with %s, idle %v: not a handed-back duplicate",
				p.ID, env.Data.Seq, res.Counts[env.Data.Seq], p.Consumer, p.Idle)
		}
	}
	t.Logf("entries handed back at the end (handled already, delivered again to the next member): %d", len(pend))
	if dlq := a.StreamKey(eventstream.DeadLetterTopicName(topic, group)); rdb.Exists(ctx, dlq).Val() != 0 {
		t.Errorf("events were dead-lettered: %d in %s", rdb.XLen(ctx, dlq).Val(), dlq)
	}
	// The test is only meaningful if live members did take entries over.
	takenOver := 0
	for _, log := range res.Logs {
		for line := range strings.Lines(log) {
			if !strings.Contains(line, "took over pending entries") {
				continue
			}
			_, after, _ := strings.Cut(line, " entries=")
			k, _ := strconv.Atoi(strings.TrimSpace(after))
			takenOver += k
		}
	}
	t.Logf("entries taken over from dead members: %d", takenOver)
	if takenOver == 0 {
		t.Error("no member logged a takeover: the kills left nothing pending, so the test proved nothing")
	}
}
