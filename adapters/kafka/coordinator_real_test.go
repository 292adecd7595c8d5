package kafka_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// TestRealFreshBrokerCommits subscribes on a broker started a moment ago,
// whose coordinator may answer the first commits with NOT_COORDINATOR
// while __consumer_offsets is being created (seen on 3.9.x): the member
// looks the coordinator up again and its commits succeed within the same
// generation, without a rebalance.
func TestRealFreshBrokerCommits(t *testing.T) {
	if os.Getenv("KAFKA_BROKERS") != "" {
		t.Skip("needs a broker of its own, started by the test")
	}
	for _, v := range kafkaVersions {
		t.Run("kafka"+v, func(t *testing.T) {
			b := brokertest.Kafka(t, brokertest.KafkaVersion(v))
			brokers := addrs(b.Addr())
			topic := uniqueTopic("fresh-commits")
			group := "g-" + topic
			logs := &logRecorder{info: true}
			cfg := realConfig(b)
			cfg.Logger = slog.New(logs)
			a := newAdapter(t, cfg)
			ctx := ctxT(t, 90*time.Second)
			ch, cancel, err := a.Subscribe(ctx, topic, group)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			want := vals("fresh", 30)
			for _, v := range want {
				if err := a.Publish(ctx, topic, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			receiveValues(t, ctx, a, group, ch, want)
			waitFor(t, 60*time.Second, "the acks to be committed", func() bool {
				var sum int64
				for _, off := range committed(t, brokers, group, topic) {
					sum += max(off, 0)
				}
				return sum == int64(len(want))
			})
			t.Logf("%d commit failures (NOT_COORDINATOR: %d) before the offsets were committed",
				logs.count("committing offsets failed"), logs.count("Not Coordinator"))
			if n := logs.count("joined consumer group generation"); n != 1 {
				t.Errorf("%d generations joined, want 1: the commits recovered only through a rebalance", n)
			}
		})
	}
}
