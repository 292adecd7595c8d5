package kafka_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
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
// their own and never stop it. With KAFKA_BROKERS set it is that cluster,
// with a SASL listener only when KAFKA_SASL_BROKERS names one.
func realKafka(t testing.TB, version string) *brokertest.Broker {
	t.Helper()
	return realBrokers.Get(t, "kafka-"+version, func(tb testing.TB) *brokertest.Broker {
		opts := []brokertest.KafkaOption{brokertest.KafkaVersion(version)}
		if os.Getenv("KAFKA_BROKERS") == "" || os.Getenv("KAFKA_SASL_BROKERS") != "" {
			opts = append(opts, brokertest.KafkaSASL())
		}
		return brokertest.Kafka(tb, opts...)
	})
}

// addrs splits a broker address list ("host:port,host:port").
func addrs(list string) []string { return strings.Split(list, ",") }

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

// forEachKafka runs f as a subtest per Kafka release on the shared broker
// (once, on the cluster KAFKA_BROKERS names, when it is set).
func forEachKafka(t *testing.T, f func(t *testing.T, b *brokertest.Broker)) {
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Run("external", func(t *testing.T) { f(t, realKafka(t, kafkaVersions[0])) })
		return
	}
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
	cfg := testConfig(addrs(b.Addr()))
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

// TestRealProduceOptions publishes keyed records with headers through every
// compression codec and both acknowledgement levels that wait for the
// broker, and reads them back: real Kafka validates and decompresses every
// batch (the embedded broker does not).
func TestRealProduceOptions(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		for _, tc := range []struct {
			name string
			c    kafka.Compression
			acks kafka.RequiredAcks
		}{
			{"gzip", kafka.CompressionGzip, kafka.AcksAll},
			{"snappy", kafka.CompressionSnappy, kafka.AcksAll},
			{"lz4", kafka.CompressionLZ4, kafka.AcksAll},
			{"zstd", kafka.CompressionZstd, kafka.AcksAll},
			{"leader-acks", kafka.CompressionNone, kafka.AcksLeader},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := realConfig(b)
				cfg.Compression, cfg.RequiredAcks = tc.c, tc.acks
				a := newAdapter(t, cfg)
				ctx := ctxT(t, time.Minute)
				topic := uniqueTopic("options-" + tc.name)
				want := vals(tc.name, 40)
				var wg sync.WaitGroup
				errs := make(chan error, len(want))
				for i, v := range want {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- a.PublishRecord(ctx, topic, eventstream.Record{
							Key:     []byte(fmt.Sprintf("key-%d", i%7)),
							Value:   []byte(v),
							Headers: map[string]string{"n": v, "codec": tc.name},
						})
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("publish: %v", err)
					}
				}
				group := "g-" + topic
				ch, cancel, err := a.Subscribe(ctx, topic, group)
				if err != nil {
					t.Fatal(err)
				}
				defer cancel()
				seen := map[string]bool{}
				for len(seen) < len(want) {
					select {
					case m := <-ch:
						km := m.(*kafka.Message)
						v := string(km.Value())
						h := km.Headers()
						if h["n"] != v || h["codec"] != tc.name {
							t.Fatalf("record %q has headers %v", v, h)
						}
						var i int
						if _, err := fmt.Sscanf(v, tc.name+"-%d", &i); err != nil || string(km.Key()) != fmt.Sprintf("key-%d", i%7) {
							t.Fatalf("record %q has key %q", v, km.Key())
						}
						seen[v] = true
						if err := a.Ack(ctx, group, m); err != nil {
							t.Fatal(err)
						}
					case <-ctx.Done():
						t.Fatalf("received %d of %d records", len(seen), len(want))
					}
				}
			})
		}
	})
}
