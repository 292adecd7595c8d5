package rabbitmq_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func brokerURL(t testing.TB) string {
	u := os.Getenv("RABBITMQ_URL")
	if u == "" {
		t.Skip("RABBITMQ_URL not set")
	}
	return u
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
