package inhouse_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adaptertest"
	"github.com/eventstream-go/eventstream/examples/custom_adapter/inhouse"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestContract checks the queue against the MQAdapter contract: this is the
// test every custom adapter should have.
func TestContract(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		return inhouse.New()
	})
}
