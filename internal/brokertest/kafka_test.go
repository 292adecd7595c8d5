package brokertest

import (
	"context"
	"strings"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// kafkaRoundTrip writes one message to an auto-created topic (retrying while
// the new topic has no leader yet) and checks the topic got num.partitions.
func kafkaRoundTrip(t *testing.T, addr, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, AllowAutoTopicCreation: true,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: tr}
	defer w.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("writing to %s: %v", topic, err)
		}
		<-tick.C
	}
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil || len(parts) != 3 {
		t.Fatalf("partitions of %s: %d, %v; want 3 (num.partitions)", topic, len(parts), err)
	}
}

// saslMetadata authenticates with m on addr and lists the brokers.
func saslMetadata(ctx context.Context, addr string, m sasl.Mechanism) error {
	d := &kafka.Dialer{Timeout: 10 * time.Second, SASLMechanism: m}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Brokers()
	return err
}

func TestKafkaSASLKillRestartStop(t *testing.T) {
	for _, v := range []string{"4.x", "3.9.x"} {
		t.Run(v, func(t *testing.T) {
			b := Kafka(t, KafkaVersion(v), KafkaSASL())
			if b.External() || b.URL() != b.Addr() || b.SASLAddr() == "" || b.SASLAddr() == b.Addr() {
				t.Fatalf("addr %q url %q sasl %q", b.Addr(), b.URL(), b.SASLAddr())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s256, err := scram.Mechanism(scram.SHA256, KafkaSASLUser, KafkaSASLPassword)
			if err != nil {
				t.Fatal(err)
			}
			s512, err := scram.Mechanism(scram.SHA512, KafkaSASLUser, KafkaSASLPassword)
			if err != nil {
				t.Fatal(err)
			}
			for name, m := range map[string]sasl.Mechanism{
				"PLAIN":         plain.Mechanism{Username: KafkaSASLUser, Password: KafkaSASLPassword},
				"SCRAM-SHA-256": s256,
				"SCRAM-SHA-512": s512,
			} {
				if err := saslMetadata(ctx, b.SASLAddr(), m); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			wrong, err := scram.Mechanism(scram.SHA512, KafkaSASLUser, "wrong")
			if err != nil {
				t.Fatal(err)
			}
			if err := saslMetadata(ctx, b.SASLAddr(), wrong); err == nil {
				t.Error("SCRAM-SHA-512 with a wrong password succeeded")
			}
			if err := saslMetadata(ctx, b.SASLAddr(), plain.Mechanism{Username: KafkaSASLUser, Password: "wrong"}); err == nil {
				t.Error("PLAIN with a wrong password succeeded")
			}

			kafkaRoundTrip(t, b.Addr(), "before")
			if out := b.KafkaTool(t, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", b.Addr(), "--list"); !strings.Contains(out, "before") {
				t.Errorf("TopicCommand --list: %q lacks the topic", out)
			}
			b.Kill(t)
			b.Restart(t)
			t.Logf("kafka %s restart after SIGKILL: %v", v, b.StartTime())
			conn, err := kafka.DialContext(ctx, "tcp", b.Addr())
			if err != nil {
				t.Fatal(err)
			}
			parts, err := conn.ReadPartitions("before")
			conn.Close()
			if err != nil || len(parts) != 3 {
				t.Fatalf("topic after restart: %d partitions, %v", len(parts), err)
			}
			begin := time.Now()
			b.Stop(t)
			t.Logf("kafka %s graceful stop: %v", v, time.Since(begin))
			if !strings.Contains(b.Log(), "shut down completed") {
				t.Errorf("log lacks the shutdown line after Stop")
			}
		})
	}
}
