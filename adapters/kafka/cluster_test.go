package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
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

	cl := kgoClient(t, c.Addrs(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
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

// TestUnknownTopicErrorSaysHowToFix: the error for a missing topic names
// the topic and both fixes, and still wraps ErrUnknownTopic.
func TestUnknownTopicErrorSaysHowToFix(t *testing.T) {
	c := startCluster(t, 1, "known")
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 10*time.Second)
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, kafka.ErrUnknownTopic) {
			t.Fatalf("%s: %v, want ErrUnknownTopic", what, err)
		}
		for _, want := range []string{`"missing"`, "create it", "Config.AutoCreateTopics"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not mention %s", what, err, want)
			}
		}
	}
	check("Publish", a.Publish(ctx, "missing", []byte("x")))
	_, _, err := a.Subscribe(ctx, "missing", "g")
	check("Subscribe", err)
}

// TestExistenceCheckUnansweredDoesNotCreate: on a broker that creates
// topics on metadata requests, a topic is not created when the broker does
// not answer the existence check (DescribeConfigs) and AutoCreateTopics is
// off: the adapter reports the topic as missing from its cached metadata
// instead, and existing topics still work.
func TestExistenceCheckUnansweredDoesNotCreate(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(kmsg.Request) (kmsg.Response, error, bool)
	}{
		{"connection closed", func(kmsg.Request) (kmsg.Response, error, bool) {
			return nil, errors.New("injected: no answer"), true
		}},
		{"not authorized", func(req kmsg.Request) (kmsg.Response, error, bool) {
			dreq := req.(*kmsg.DescribeConfigsRequest)
			resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
			for _, r := range dreq.Resources {
				rr := kmsg.NewDescribeConfigsResponseResource()
				rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
				rr.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Resources = append(resp.Resources, rr)
			}
			return resp, nil, true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.NewCluster(t, kfake.AllowAutoTopicCreation(), kfake.SeedTopics(2, "known"))
			var failed atomic.Int64
			c.Fake.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.Fake.KeepControl()
				failed.Add(1)
				return tc.fail(req)
			})
			a := newAdapter(t, testConfig(c.Addrs()))
			ctx := ctxT(t, 20*time.Second)
			err := a.Publish(ctx, "never-created", []byte("x"))
			if !errors.Is(err, kafka.ErrUnknownTopic) {
				t.Fatalf("Publish: %v, want ErrUnknownTopic", err)
			}
			if !strings.Contains(err.Error(), "existence check failed") {
				t.Errorf("Publish error %q does not say that the existence check failed", err)
			}
			if _, _, err := a.Subscribe(ctx, "never-created", "g"); !errors.Is(err, kafka.ErrUnknownTopic) {
				t.Fatalf("Subscribe: %v, want ErrUnknownTopic", err)
			}
			if failed.Load() == 0 {
				t.Fatal("the existence check was never sent")
			}
			if topicExists(t, c.Addrs(), "never-created") {
				t.Fatal("the topic was created")
			}
			// A topic that exists is found in the cached metadata.
			if err := a.Publish(ctx, "known", []byte("x")); err != nil {
				t.Fatalf("Publish to an existing topic: %v", err)
			}
		})
	}
}

// topicExists asks the broker, without creating it, whether topic exists.
func topicExists(t *testing.T, brokers []string, topic string) bool {
	t.Helper()
	cl := kgoClient(t, brokers)
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic != nil && *mt.Topic == topic {
			switch mt.ErrorCode {
			case 0:
				return true
			case kerr.UnknownTopicOrPartition.Code:
				return false
			default:
				t.Fatalf("metadata of %s: error code %d", topic, mt.ErrorCode)
			}
		}
	}
	return false
}
