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

// Environment of the consumer processes: the Redis address, and whether the
// adapter is the lossy one.
const (
	envAddr  = "EVENTSTREAM_CRASHTEST_TEST_ADDR"
	envLossy = "EVENTSTREAM_CRASHTEST_TEST_LOSSY"
)

func TestMain(m *testing.M) {
	if crashtest.IsConsumer() {
		os.Exit(crashtest.Consume(newConsumerAdapter))
	}
	goleak.VerifyTestMain(m)
}

func redisConfig(addr string, log *slog.Logger) redis.Config {
	return redis.Config{Addr: addr, Block: 100 * time.Millisecond, ClaimIdle: 2 * time.Second,
		ClaimInterval: 250 * time.Millisecond, Logger: log}
}

// newConsumerAdapter is the consumer's adapter: Redis, and with envLossy
// set, with a defect that crashtest must catch: every 997th message it
// receives is acknowledged and never delivered.
func newConsumerAdapter(log *slog.Logger) (eventstream.MQAdapter, error) {
	a, err := redis.NewAdapter(redisConfig(os.Getenv(envAddr), log))
	if err != nil || os.Getenv(envLossy) == "" {
		return a, err
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
	bus := newBus(t, b.Addr())

	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		crashtest.Run(r, crashtest.Config{
			Bus: bus, Topic: "lossy", Group: "g",
			Env:    []string{envAddr + "=" + b.Addr(), envLossy + "=1"},
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

// newBus returns a distributed bus over Redis at addr, closed at the end of
// the test.
func newBus(t *testing.T, addr string) eventstream.Bus {
	t.Helper()
	a, err := redis.NewAdapter(redisConfig(addr, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	return bus
}

// TestRunReadyAndSurvivors: each kill waits until Config.Ready reports
// true, Ready is told how many members are live, it is asked again after
// the last kill (Result.ReadyAgain), and with SurvivorsFinish the member
// killed last is not replaced.
func TestRunReadyAndSurvivors(t *testing.T) {
	b := brokertest.Redis(t)
	bus := newBus(t, b.Addr())

	// Before a kill Ready says yes to every third question only; after
	// the last kill it always does.
	var asked, askedAlone int
	ready := func(ctx context.Context, live int) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		switch live {
		case 2:
			asked++
			return asked%3 == 0, nil
		case 1:
			askedAlone++
			return true, nil
		default:
			return false, fmt.Errorf("Ready asked with %d live members", live)
		}
	}
	res := crashtest.Run(t, crashtest.Config{
		Bus: bus, Topic: "ready", Group: "g",
		Env:    []string{envAddr + "=" + b.Addr()},
		Events: 6000, Window: 800, Kills: []int{600, 1400}, MinHandled: 50, AllHandled: true, Sync: true,
		Ready: ready, SurvivorsFinish: true, Timeout: 60 * time.Second,
	})
	// Three questions before the emitters pass the first window (every
	// member joined), then two kills, three questions each; the kill came
	// right after the yes.
	if asked != 9 {
		t.Errorf("Ready was asked %d times with 2 live members, want 9 (3 at the start, 3 per kill)", asked)
	}
	// The survivor (with a handler that fsyncs) has thousands of events
	// left, and the killed member's pending ones wait ClaimIdle (2s) for a
	// claim: it is asked well before the stream is finished.
	if askedAlone != 1 || res.ReadyAgain <= 0 || res.ReadyAgain > res.SinceLastKill {
		t.Errorf("after the last kill Ready was asked %d times, ready again after %v (stream finished after %v); want once, before the end",
			askedAlone, res.ReadyAgain, res.SinceLastKill)
	}
	// Only the survivor left gracefully.
	if len(res.Stats) != 1 {
		t.Errorf("%d members left gracefully, want 1 (the survivor)", len(res.Stats))
	}
}
