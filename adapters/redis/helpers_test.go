package redis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"github.com/eventstream-go/eventstream/internal/crashtest"
	goredis "github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	if crashtest.IsConsumer() {
		os.Exit(crashtest.Consume(newCrashAdapter))
	}
	code := m.Run()
	brokers.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// brokers holds the redis-server most tests of the package share (fault
// tests start their own); closed in TestMain.
var brokers brokertest.Shared

// sharedBroker returns the package's shared broker.
func sharedBroker(t testing.TB) *brokertest.Broker {
	t.Helper()
	return brokers.Get(t, "redis", func(t testing.TB) *brokertest.Broker { return brokertest.Redis(t) })
}

// logger returns the logger of adapters in tests: quiet unless REDIS_TEST_LOG
// is set (REDIS_TEST_LOG=debug for everything).
func logger() *slog.Logger {
	switch os.Getenv("REDIS_TEST_LOG") {
	case "":
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// testConfig is an adapter config for addr with short timings, so that
// takeovers happen within seconds.
func testConfig(addr string) redis.Config {
	return redis.Config{
		Addr:          addr,
		Block:         100 * time.Millisecond,
		ClaimIdle:     2 * time.Second,
		ClaimInterval: 250 * time.Millisecond,
		Logger:        logger(),
	}
}

func newAdapter(tb testing.TB, cfg redis.Config) *redis.Adapter {
	tb.Helper()
	a, err := redis.NewAdapter(cfg)
	if err != nil {
		tb.Fatalf("redis.NewAdapter: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return a
}

// plainClient returns a go-redis client for addr, closed at the end of the
// test.
func plainClient(tb testing.TB, addr string) *goredis.Client {
	tb.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// newBus returns a distributed bus over a, closed before a (cleanups run
// last-in first-out).
func newBus(tb testing.TB, a eventstream.MQAdapter, change func(*eventstream.Config)) eventstream.Bus {
	tb.Helper()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.Logger = logger()
	cfg.DrainTimeout = 5 * time.Second
	if change != nil {
		change(&cfg)
	}
	bus, err := eventstream.New(cfg)
	if err != nil {
		tb.Fatalf("eventstream.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := bus.Close(); err != nil {
			tb.Errorf("bus.Close: %v", err)
		}
	})
	return bus
}

// testContext returns a context ended after d or at the end of the test.
func testContext(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 10ms until it holds, failing the test after d.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// recv receives one message from ch within d.
func recv(tb testing.TB, ch <-chan eventstream.Message, d time.Duration) eventstream.Message {
	tb.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			tb.Fatal("subscription channel closed")
		}
		return m
	case <-time.After(d):
		tb.Fatalf("no message within %v", d)
		return nil
	}
}

// uniqueTopic returns a topic name unique to this test run.
func uniqueTopic(t testing.TB) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
}

// fakeMessage is a message of no adapter.
type fakeMessage struct{}

func (fakeMessage) Topic() string        { return "t" }
func (fakeMessage) Value() []byte        { return nil }
func (fakeMessage) Key() []byte          { return nil }
func (fakeMessage) Timestamp() time.Time { return time.Time{} }
