package kafka_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/bustest"
)

// TestBusContract runs the Bus contract suite over the Kafka adapter on the
// embedded broker. Topics (including dead-letter topics) are created on first
// use.
func TestBusContract(t *testing.T) {
	c := kafkatest.NewCluster(t)
	bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		cfg := testConfig(c.Addrs())
		cfg.AutoCreateTopics = true
		cfg.TopicPartitions = 3
		a, err := kafka.NewAdapter(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}, bustest.WithTimeout(20*time.Second), bustest.WithDrainTimeout(time.Second))
}
