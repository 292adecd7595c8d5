package esotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
)

// newKafkaAdapter starts an embedded broker with the topics seeded and
// returns its addresses and an adapter on it, both closed at the end of
// the test.
func newKafkaAdapter(t *testing.T, topics ...string) ([]string, *kafka.Adapter) {
	t.Helper()
	addrs := kafkatest.NewCluster(t, kfake.SeedTopics(3, topics...)).Addrs()
	a, err := kafka.NewAdapter(kafka.Config{
		Brokers:           addrs,
		SessionTimeout:    3 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		RebalanceTimeout:  5 * time.Second,
		RevokeTimeout:     2 * time.Second,
		CommitInterval:    100 * time.Millisecond,
		FetchMaxWait:      100 * time.Millisecond,
		ProduceTimeout:    3 * time.Second,
		MetadataMaxAge:    500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return addrs, a
}

// TestKafka runs the scenario over the Kafka adapter and the embedded
// broker, in structured and binary mode, then reads the topic with a plain
// franz-go client: every record carries a traceparent header naming the
// send span of its event.
func TestKafka(t *testing.T) {
	for _, binary := range []bool{false, true} {
		name := map[bool]string{false: "structured", true: "binary"}[binary]
		t.Run(name, func(t *testing.T) {
			const topic = "orders"
			dlq := eventstream.DeadLetterTopicName(topic, "billing")
			addrs, a := newKafkaAdapter(t, topic, dlq)
			cfg := eventstream.DefaultDistributedConfig()
			cfg.Distributed.MQAdapter = a
			cfg.Distributed.BinaryMode = binary
			runScenario(t, scenario{
				cfg:        cfg,
				topic:      topic,
				dlqTopic:   dlq,
				wantSystem: "kafka",
				positioned: true,
				timeout:    60 * time.Second,
				settle: func(t *testing.T, r *rig) {
					sends := map[trace.SpanID]bool{}
					for _, s := range r.ended("send " + topic) {
						sends[s.SpanContext().SpanID()] = true
					}
					checkRecordHeaders(t, addrs, topic, sends)
				},
			})
		})
	}
}

// checkRecordHeaders reads every record of topic with a plain Kafka client
// and checks that each carries a W3C traceparent header whose span is one
// of sends, and no CloudEvents-prefixed copy of it.
func checkRecordHeaders(t *testing.T, addrs []string, topic string, sends map[trace.SpanID]bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	found := map[trace.SpanID]bool{}
	read := 0
	for read < len(sends) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records before the deadline", read, len(sends))
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("fetch: %v", fe.Err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			read++
			h := propagation.MapCarrier{}
			for _, kv := range rec.Headers {
				h[kv.Key] = string(kv.Value)
			}
			if h["traceparent"] == "" {
				t.Errorf("record at %d/%d has no traceparent header: %v", rec.Partition, rec.Offset, h)
				return
			}
			if _, dup := h["ce_traceparent"]; dup {
				t.Errorf("record at %d/%d has both traceparent and ce_traceparent", rec.Partition, rec.Offset)
			}
			sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), h))
			if !sc.IsValid() || !sends[sc.SpanID()] {
				t.Errorf("record at %d/%d: traceparent %q is not a send span of the test", rec.Partition, rec.Offset, h["traceparent"])
				return
			}
			found[sc.SpanID()] = true
		})
	}
	if len(found) != len(sends) {
		t.Errorf("records name %d distinct send spans, want %d", len(found), len(sends))
	}
}
