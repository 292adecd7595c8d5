package kafka_test

import (
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/adaptertest"
)

// TestConformance runs the adapter contract suite against the embedded
// broker. Topics are created on first use (AutoCreateTopics).
func TestConformance(t *testing.T) {
	c := kafkatest.NewCluster(t)
	adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
		cfg := testConfig(c.Addrs())
		cfg.AutoCreateTopics = true
		cfg.TopicPartitions = 3
		a, err := kafka.NewAdapter(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}, adaptertest.WithTimeout(15*time.Second), adaptertest.WithLargeMessageSize(900<<10))
}
