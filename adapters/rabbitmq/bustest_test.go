package rabbitmq_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/bustest"
)

// TestBusContract runs the Bus contract suite over the adapter on a real
// RabbitMQ. A message reaches only the group queues bound when it is
// published, so the suite declares every subscription's group and a group
// on its dead-letter topic first (bustest.WithGroupDeclarer), as a
// deployment lists them in Config.Groups.
func TestBusContract(t *testing.T) {
	url := brokerURL(t)
	bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		return newAdapter(t, testConfig(url))
	}, bustest.WithTimeout(20*time.Second), bustest.WithDrainTimeout(time.Second),
		bustest.WithGroupDeclarer(declarer))
}
