package kafka_test

import (
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adaptertest"
	"github.com/eventstream-go/eventstream/bustest"
	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// realBrokers holds the real Apache Kafka brokers shared by the tests of
// this package (one per release), closed by TestMain.
var realBrokers brokertest.Shared

// kafkaVersions are the Apache Kafka releases the adapter is tested on: the
// 4.x line (new group coordinator) and 3.9.x (the classic one).
var kafkaVersions = []string{"4.x", "3.9.x"}

// realKafka returns the shared real Kafka broker of version, with a SASL
// listener for the SASL tests. Tests on it use topic and group names of
// their own and never stop it.
func realKafka(t testing.TB, version string) *brokertest.Broker {
	t.Helper()
	return realBrokers.Get(t, "kafka-"+version, func(tb testing.TB) *brokertest.Broker {
		return brokertest.Kafka(tb, brokertest.KafkaVersion(version), brokertest.KafkaSASL())
	})
}

// realStarted is set once the first test started the shared brokers.
var realStarted atomic.Bool

// startRealKafka starts the shared broker of every release in parallel
// (each takes seconds), once per test binary.
func startRealKafka(t *testing.T) {
	if realStarted.Swap(true) {
		return
	}
	t.Run("start", func(t *testing.T) {
		for _, v := range kafkaVersions {
			t.Run("kafka"+v, func(t *testing.T) {
				t.Parallel()
				realKafka(t, v)
			})
		}
	})
}

// forEachKafka runs f as a subtest per Kafka release on the shared broker.
func forEachKafka(t *testing.T, f func(t *testing.T, b *brokertest.Broker)) {
	startRealKafka(t)
	for _, v := range kafkaVersions {
		t.Run("kafka"+v, func(t *testing.T) {
			f(t, realKafka(t, v))
		})
	}
}

// realConfig is testConfig for a real broker: auto-created topics with 3
// partitions, as the suites expect.
func realConfig(b *brokertest.Broker) kafka.Config {
	cfg := testConfig([]string{b.Addr()})
	cfg.AutoCreateTopics = true
	cfg.TopicPartitions = 3
	return cfg
}

// TestRealConformance runs the adapter contract suite on real Apache Kafka.
// Every case publishes to or subscribes on a topic right after creating it,
// which real Kafka answers with UNKNOWN_TOPIC_OR_PARTITION or
// LEADER_NOT_AVAILABLE until the partitions have leaders.
func TestRealConformance(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
			a, err := kafka.NewAdapter(realConfig(b))
			if err != nil {
				t.Fatal(err)
			}
			return a
		}, adaptertest.WithTimeout(30*time.Second), adaptertest.WithLargeMessageSize(900<<10))
	})
}

// TestRealBusContract runs the Bus contract suite over the adapter on real
// Apache Kafka (dead-letter topics are auto-created too).
func TestRealBusContract(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
			a, err := kafka.NewAdapter(realConfig(b))
			if err != nil {
				t.Fatal(err)
			}
			return a
		}, bustest.WithTimeout(30*time.Second), bustest.WithDrainTimeout(time.Second))
	})
}
