package adaptertest_test

import (
	"testing"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/adaptertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestRunMemory runs the suite against the reference adapter, which must
// pass every case.
func TestRunMemory(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		a, err := memory.New(memory.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}
