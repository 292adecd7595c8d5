package bustest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/bustest"
	"github.com/eventstream-go/eventstream/examples/custom_adapter/inhouse"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryBus(t *testing.T) { bustest.Run(t, nil) }

func TestDistributedOverMemoryAdapter(t *testing.T) {
	bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		a, err := memory.New(memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}

// TestDistributedBinaryMode runs the suite with CloudEvents binary mode.
func TestDistributedBinaryMode(t *testing.T) {
	bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		a, err := memory.New(memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}, bustest.WithConfig(func(c *eventstream.Config) { c.Distributed.BinaryMode = true }))
}

// TestDistributedOverPlainAdapter runs the suite over an adapter with only
// the four MQAdapter methods (no keys, no headers).
func TestDistributedOverPlainAdapter(t *testing.T) {
	bustest.Run(t, func(t *testing.T) eventstream.MQAdapter { return inhouse.New() })
}
