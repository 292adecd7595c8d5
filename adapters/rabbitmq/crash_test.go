package rabbitmq_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	"github.com/eventstream-go/eventstream/internal/crashtest"
)

// envURL gives the crash test's consumer processes the broker URL.
const envURL = "EVENTSTREAM_RABBITMQ_URL"

// newCrashAdapter is the adapter of a crash-test consumer process (see
// TestMain).
func newCrashAdapter(log *slog.Logger) (eventstream.MQAdapter, error) {
	cfg := testConfig(os.Getenv(envURL))
	cfg.Logger = log
	return rabbitmq.NewAdapter(cfg)
}

// TestCrashConsumer runs the whole bus across processes
// (internal/crashtest): this process emits 10,000 keyed events while two
// consumer processes (one group, concurrency 8 each) handle them; three
// times mid-stream the member that handled the most in its current life is
// killed with SIGKILL and started again. The broker requeues what a killed
// member had not acknowledged, so every event must be handled at least
// once; duplicates are reported.
func TestCrashConsumer(t *testing.T) {
	const topic, group = "crash", "crash-group"
	url := brokerURL(t)
	a := newAdapter(t, testConfig(url))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.DrainTimeout = 5 * time.Second
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	crashtest.Run(t, crashtest.Config{
		Bus: bus, Topic: topic, Group: group,
		Env:     []string{envURL + "=" + url},
		Window:  2000,
		Timeout: 170 * time.Second,
	})
	if got := bus.Stats().Emitted; got != 10000 {
		t.Errorf("emitted %d, want 10000", got)
	}
}
