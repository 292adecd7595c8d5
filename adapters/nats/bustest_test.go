package nats_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/bustest"
)

// TestBusContract runs the Bus contract suite over the adapter, on the
// embedded server (in a helper process) and on the nats-server binary, in
// JSON and in binary mode. Streams (dead-letter topics' included) are
// created on first use.
func TestBusContract(t *testing.T) {
	for _, srv := range []struct {
		name string
		url  func(testing.TB) string
	}{
		{"embedded", sharedURL},
		{"nats-server", systemServer},
	} {
		for _, binary := range []bool{false, true} {
			name := srv.name + "/json"
			if binary {
				name = srv.name + "/binary"
			}
			t.Run(name, func(t *testing.T) {
				url := srv.url(t)
				bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
					a, err := nats.NewAdapter(testConfig(url))
					if err != nil {
						t.Fatal(err)
					}
					return a
				}, bustest.WithTimeout(20*time.Second), bustest.WithDrainTimeout(time.Second),
					bustest.WithConfig(func(c *eventstream.Config) { c.Distributed.BinaryMode = binary }))
			})
		}
	}
}
