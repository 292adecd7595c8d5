package kafkatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewClusterServesKafka(t *testing.T) {
	brokers := kafkatest.Brokers(t, kfake.SeedTopics(2, "t"))
	if len(brokers) != 1 {
		t.Fatalf("brokers = %v, want one", brokers)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3))
	if n := len(c.Addrs()); n != 3 {
		t.Fatalf("%d brokers, want 3", n)
	}
	c.Close()
	c.Close() // and once more in Cleanup
}
