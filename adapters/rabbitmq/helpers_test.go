package rabbitmq_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"github.com/eventstream-go/eventstream/internal/crashtest"
	"go.uber.org/goleak"
)

// brokers holds the RabbitMQ node shared by the tests of this binary; fault
// tests start their own with brokertest.RabbitMQ.
var brokers brokertest.Shared

func TestMain(m *testing.M) {
	if crashtest.IsConsumer() {
		os.Exit(crashtest.Consume(newCrashAdapter))
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		brokers.Close()
		os.Exit(code)
	}))
}

// brokerURL returns the URL of the shared broker (RABBITMQ_URL when set).
func brokerURL(t testing.TB) string {
	t.Helper()
	return brokers.Get(t, "rabbitmq", brokertest.RabbitMQ).URL()
}

func testConfig(url string) rabbitmq.Config {
	cfg := rabbitmq.Config{
		URL:          url,
		ReconnectMin: 50 * time.Millisecond,
		ReconnectMax: 500 * time.Millisecond,
	}
	if os.Getenv("RABBITMQ_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return cfg
}

func newAdapter(t testing.TB, cfg rabbitmq.Config) *rabbitmq.Adapter {
	t.Helper()
	a, err := rabbitmq.NewAdapter(cfg)
	if err != nil {
		t.Fatalf("NewAdapter: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
