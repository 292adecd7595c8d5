package kafka_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestLeaderMove moves partition leadership between brokers of a
// three-broker cluster while publishing and consuming.
func TestLeaderMove(t *testing.T) {
	const topic, group = "moving", "g-moving"
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(2, topic))
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 60*time.Second)
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	seen := newCollector()
	wait := consumeAll(t, a, group, ch, seen)
	const n = 40
	for i := 0; i < n; i++ {
		if i%10 == 5 {
			for p := int32(0); p < 2; p++ {
				leader := c.Fake.LeaderFor(topic, p)
				if err := c.Fake.MoveTopicPartition(topic, p, (leader+1)%3); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := a.Publish(ctx, topic, []byte(fmt.Sprintf("m-%d", i))); err != nil {
			t.Fatalf("publish after leader move: %v", err)
		}
	}
	waitFor(t, 30*time.Second, "every message", func() bool { return seen.distinct() == n })
	cancel()
	wait()
}

// TestStartLatest checks that a new group with StartLatest skips what was
// published before it joined.
func TestStartLatest(t *testing.T) {
	const topic, group = "latest", "g-latest"
	c := startCluster(t, 2, topic)
	cfg := testConfig(c.Addrs())
	cfg.StartOffset = kafka.StartLatest
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	for i := 0; i < 5; i++ {
		if err := a.Publish(ctx, topic, []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	// The join is asynchronous: publish fresh messages until one arrives.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case m := <-ch:
			if v := string(m.Value()); v == "old" {
				t.Fatal("StartLatest delivered a message published before the group joined")
			}
			return
		case <-tick.C:
			if err := a.Publish(ctx, topic, []byte("new")); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("nothing delivered")
		}
	}
}

func TestCompressionAndAcks(t *testing.T) {
	c := startCluster(t, 1, "codec")
	for _, tc := range []struct {
		name  string
		codec kafka.Compression
		acks  kafka.RequiredAcks
	}{
		{"gzip", kafka.CompressionGzip, kafka.AcksAll},
		{"snappy", kafka.CompressionSnappy, kafka.AcksLeader},
		{"lz4", kafka.CompressionLZ4, kafka.AcksAll},
		{"zstd", kafka.CompressionZstd, kafka.AcksAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(c.Addrs())
			cfg.Compression = tc.codec
			cfg.RequiredAcks = tc.acks
			a := newAdapter(t, cfg)
			ctx := ctxT(t, 20*time.Second)
			v := "payload-" + tc.name
			if err := a.Publish(ctx, "codec", []byte(v)); err != nil {
				t.Fatal(err)
			}
			ch, cancel, err := a.Subscribe(ctx, "codec", "g-"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			for {
				select {
				case m := <-ch:
					if string(m.Value()) == v {
						return
					}
				case <-ctx.Done():
					t.Fatal("timeout")
				}
			}
		})
	}
}

// TestPartitionsAdded adds partitions to a consumed topic: the group
// rebalances and the new partitions are consumed too.
func TestPartitionsAdded(t *testing.T) {
	const topic, group = "growing", "g-growing"
	c := startCluster(t, 1, topic)
	cfg := testConfig(c.Addrs())
	cfg.PartitionWatchInterval = 100 * time.Millisecond
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	seen := newCollector()
	wait := consumeAll(t, a, group, ch, seen)
	if err := a.Publish(ctx, topic, []byte("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "first message", func() bool { return seen.has("before") })

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic = topic
	rt.Count = 3
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("create partitions: %v %+v", err, resp)
	}
	for p := int32(1); p < 3; p++ {
		r := &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("new-%d", p))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "messages of the new partitions", func() bool { return seen.has("new-1") && seen.has("new-2") })
	cancel()
	wait()
}
