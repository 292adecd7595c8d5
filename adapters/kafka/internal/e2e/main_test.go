package e2e_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/internal/crashtest"
)

func TestMain(m *testing.M) {
	if crashtest.IsConsumer() {
		os.Exit(crashtest.Consume(newCrashAdapter))
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		cleanupBench()
		os.Exit(code)
	}))
}

// logger returns the logger of buses and adapters in this package: quiet
// unless E2E_LOG is set (E2E_LOG=debug for everything).
func logger() *slog.Logger {
	switch os.Getenv("E2E_LOG") {
	case "":
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// fastGroupConfig is an adapter config with short consumer-group timeouts,
// so that the partitions of a member that died move within about a second
// (kafkatest lowers the broker's session-timeout floor to 100ms).
func fastGroupConfig(brokers []string) kafka.Config {
	return kafka.Config{
		Brokers:           brokers,
		SessionTimeout:    1500 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond,
		RebalanceTimeout:  3 * time.Second,
		RevokeTimeout:     700 * time.Millisecond,
		CommitInterval:    100 * time.Millisecond,
		FetchMaxWait:      100 * time.Millisecond,
		MetadataMaxAge:    time.Second,
		Logger:            logger(),
	}
}

func newAdapter(tb testing.TB, cfg kafka.Config) *kafka.Adapter {
	tb.Helper()
	a, err := kafka.NewAdapter(cfg)
	if err != nil {
		tb.Fatalf("kafka.NewAdapter: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return a
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
