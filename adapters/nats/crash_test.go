package nats_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/internal/crashtest"
)

// envURL gives the crash test's consumer processes the server URL.
const envURL = "EVENTSTREAM_NATS_TEST_URL"

// crashAckWait is the AckWait of the crash test: how long the messages a
// killed member held stay invisible to the group.
const crashAckWait = 2 * time.Second

// newCrashAdapter is the adapter of a crash-test consumer process (see
// TestMain).
func newCrashAdapter(log *slog.Logger) (eventstream.MQAdapter, error) {
	cfg := testConfig(os.Getenv(envURL))
	cfg.AckWait = crashAckWait
	cfg.Logger = log
	return nats.NewAdapter(cfg)
}

// TestCrashConsumer runs the whole bus across processes
// (internal/crashtest): this process emits 10,000 keyed events while two
// consumer processes (one consumer group, concurrency 8 each) handle them;
// three times mid-stream the member that handled the most events in its
// current life is killed with SIGKILL and started again. The messages a
// killed member held come back after AckWait. In the end every event must
// have been handled at least once (duplicates are reported) and nothing is
// pending for the group. It runs on the embedded server and on nats-server.
func TestCrashConsumer(t *testing.T) {
	for _, srv := range []struct {
		name string
		url  func(testing.TB) string
	}{
		{"embedded", sharedURL},
		{"nats-server", systemServer},
	} {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.url(t)
			topic, group := uniq(t, "crash"), "crash-group"
			a := newAdapter(t, testConfig(url))
			cfg := eventstream.DefaultDistributedConfig()
			cfg.Distributed.MQAdapter = a
			bus, err := eventstream.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = bus.Close() })
			crashtest.Run(t, crashtest.Config{
				Bus: bus, Topic: topic, Group: group,
				Env: []string{envURL + "=" + url},
			})
			if got := bus.Stats().Emitted; got != 10000 {
				t.Errorf("emitted %d, want 10000", got)
			}
			// The graceful leave acknowledged everything: nothing is
			// pending for the group.
			_, js := plainJS(t, url)
			info := consumerInfo(t, js, a, topic, group)
			if info.NumAckPending != 0 || info.NumPending != 0 {
				t.Errorf("after the last members left: %d messages unacknowledged, %d undelivered", info.NumAckPending, info.NumPending)
			}
		})
	}
}
