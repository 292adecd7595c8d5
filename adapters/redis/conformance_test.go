package redis_test

import (
	"testing"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	"github.com/eventstream-go/eventstream/adaptertest"
)

// TestConformance runs the adapter contract suite against a real
// redis-server.
func TestConformance(t *testing.T) {
	b := sharedBroker(t)
	adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		a, err := redis.NewAdapter(testConfig(b.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}
