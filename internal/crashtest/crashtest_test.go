package crashtest_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"github.com/eventstream-go/eventstream/internal/crashtest"
)

const envAddr = "EVENTSTREAM_CRASHTEST_TEST_ADDR"

func TestMain(m *testing.M) {
	if crashtest.IsConsumer() {
		os.Exit(crashtest.Consume(newLossyAdapter))
	}
	goleak.VerifyTestMain(m)
}

func redisConfig(addr string, log *slog.Logger) redis.Config {
	return redis.Config{Addr: addr, Block: 100 * time.Millisecond, ClaimIdle: 2 * time.Second,
		ClaimInterval: 250 * time.Millisecond, Logger: log}
}

// newLossyAdapter is the consumer's adapter: Redis, with a defect that
// crashtest must catch: every 997th message it receives is acknowledged and
// never delivered.
func newLossyAdapter(log *slog.Logger) (eventstream.MQAdapter, error) {
	a, err := redis.NewAdapter(redisConfig(os.Getenv(envAddr), log))
	if err != nil {
		return nil, err
	}
	return &lossy{MQAdapter: a}, nil
}

type lossy struct {
	eventstream.MQAdapter
	mu sync.Mutex
	n  int
}

func (l *lossy) Subscribe(ctx context.Context, topic, group string) (<-chan eventstream.Message, func(), error) {
	in, cancel, err := l.MQAdapter.Subscribe(ctx, topic, group)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan eventstream.Message)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for m := range in {
			l.mu.Lock()
			l.n++
			drop := l.n%997 == 0
			l.mu.Unlock()
			if drop {
				_ = l.Ack(ctx, group, m)
				continue
			}
			select {
			case out <- m:
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { close(done); cancel() }) }, nil
}

// recorder is a testing.TB whose failures are recorded instead of failing
// the test; Fatal ends the goroutine as testing.T's does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (r *recorder) record(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, s)
}
func (r *recorder) Errorf(format string, args ...any) { r.record(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.record(fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.record(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.record(fmt.Sprint(args...)); runtime.Goexit() }
func (r *recorder) FailNow()          { r.record("FailNow"); runtime.Goexit() }

// TestRunCatchesLoss: Run fails when the consumers lose events (an adapter
// that acknowledges messages it never delivered), saying how many were
// handled.
func TestRunCatchesLoss(t *testing.T) {
	b := brokertest.Redis(t)
	a, err := redis.NewAdapter(redisConfig(b.Addr(), slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()

	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		crashtest.Run(r, crashtest.Config{
			Bus: bus, Topic: "lossy", Group: "g",
			Env:    []string{envAddr + "=" + b.Addr()},
			Events: 3000, Window: 1000, Kills: []int{1000}, Timeout: 10 * time.Second,
		})
	}()
	<-done
	if len(r.failed) == 0 {
		t.Fatal("Run passed over an adapter that dropped events")
	}
	got := strings.Join(r.failed, "\n")
	// Run waits for every event, so lost ones show as a time-out that says
	// how many were handled.
	if !strings.Contains(got, "timed out") || strings.Contains(got, "3000 of 3000 events handled") {
		t.Fatalf("Run failed, but not for the lost events: %s", got)
	}
	t.Logf("Run failed as it should: %s", r.failed[0])
}
