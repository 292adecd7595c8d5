package redis_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/bustest"
)

// TestBusContract runs the Bus contract suite over the adapter on a real
// redis-server. Streams and groups (including those of dead-letter topics)
// are created on first use, and a new group reads the stream from its
// start, so the suite needs no declarations.
func TestBusContract(t *testing.T) {
	b := sharedBroker(t)
	bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		return newAdapter(t, testConfig(b.Addr()))
	}, bustest.WithTimeout(20*time.Second), bustest.WithDrainTimeout(time.Second))
}
