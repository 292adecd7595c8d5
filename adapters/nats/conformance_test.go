package nats_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/adaptertest"
)

// TestConformance runs the adapter contract suite against the embedded
// server (in a helper process, so that the server's goroutines do not count
// as leaks) and against the nats-server binary.
func TestConformance(t *testing.T) {
	for _, srv := range []struct {
		name      string
		url       func(testing.TB) string
		exclusive bool
	}{
		{"embedded", sharedURL, false},
		{"nats-server", systemServer, false},
		// Pinned consumers (Config.Exclusive) need 2.11+: the embedded
		// server has them.
		{"embedded-exclusive", sharedURL, true},
	} {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.url(t)
			adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
				cfg := testConfig(url)
				cfg.Exclusive = srv.exclusive
				a, err := nats.NewAdapter(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}, adaptertest.WithTimeout(15*time.Second), adaptertest.WithLargeMessageSize(1<<20-4<<10))
		})
	}
}
