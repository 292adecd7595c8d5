package redis_test

import (
	"testing"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/bustest"
)

// BenchmarkBusConsume measures a distributed bus draining preloaded
// 100-byte events through the adapter, structured and binary
// (bustest.BenchmarkConsume).
func BenchmarkBusConsume(b *testing.B) {
	bustest.BenchmarkConsume(b, func(b *testing.B) eventstream.MQAdapter {
		return newAdapter(b, testConfig(sharedBroker(b).Addr()))
	})
}
