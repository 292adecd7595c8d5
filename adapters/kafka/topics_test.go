package kafka_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// admin sends one admin request to b with a franz-go client.
func admin[R kmsg.Response](t testing.TB, b *brokertest.Broker, req kmsg.Request) R {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs(b.Addr())...))
	if err != nil {
		t.Fatalf("kgo client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.Request(ctx, req)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return resp.(R)
}

// deleteTopicOn deletes topic on b with an admin client.
func deleteTopicOn(t testing.TB, b *brokertest.Broker, topic string) {
	t.Helper()
	req := kmsg.NewPtrDeleteTopicsRequest()
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.TopicNames = []string{topic}
	req.TimeoutMillis = 20000
	resp := admin[*kmsg.DeleteTopicsResponse](t, b, req)
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("deleting %s: %v", topic, err)
	}
}

// partitionCount returns how many partitions the metadata of b lists for
// topic (without creating it).
func partitionCount(t testing.TB, b *brokertest.Broker, topic string) int {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp := admin[*kmsg.MetadataResponse](t, b, req)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		return 0
	}
	return len(resp.Topics[0].Partitions)
}

// uniqueTopic returns a topic name of this test run.
func uniqueTopic(kind string) string {
	return fmt.Sprintf("%s-%d", kind, time.Now().UnixNano())
}

// receiveValues reads from ch, acking, until every value of want arrived
// (other values fail the test) or ctx ends.
func receiveValues(t testing.TB, ctx context.Context, a eventstream.MQAdapter, group string, ch <-chan eventstream.Message, want []string) {
	t.Helper()
	left := map[string]bool{}
	for _, v := range want {
		left[v] = true
	}
	for len(left) > 0 {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("subscription ended with %d of %d values missing", len(left), len(want))
			}
			v := string(m.Value())
			if !slices.Contains(want, v) {
				t.Fatalf("unexpected value %.40q", v)
			}
			delete(left, v)
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d values not received: %v", len(left), len(want), ctx.Err())
		}
	}
}

// TestRealAutoCreateTopic: with AutoCreateTopics, the first publishes to a
// new topic (many at once) and a subscription to a new topic work on real
// Kafka, although a fresh topic is unknown to the broker, then has
// partitions without leaders, for a moment; the topic gets TopicPartitions
// partitions, not the broker's num.partitions (3).
func TestRealAutoCreateTopic(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		cfg := realConfig(b)
		cfg.TopicPartitions = 5
		a := newAdapter(t, cfg)
		ctx := ctxT(t, time.Minute)

		t.Run("PublishFirst", func(t *testing.T) {
			topic := uniqueTopic("autocreate-pub")
			want := vals("first", 16)
			begin := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, len(want))
			for i, v := range want {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- a.PublishRecord(ctx, topic, eventstream.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v)})
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("first publish to a new topic: %v", err)
				}
			}
			t.Logf("%d concurrent first publishes to a new topic took %v", len(want), time.Since(begin).Round(time.Millisecond))
			if n := partitionCount(t, b, topic); n != 5 {
				t.Fatalf("auto-created topic has %d partitions, want TopicPartitions = 5", n)
			}
			ch, cancel, err := a.Subscribe(ctx, topic, "g-"+topic)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			receiveValues(t, ctx, a, "g-"+topic, ch, want)
		})

		t.Run("SubscribeFirst", func(t *testing.T) {
			topic := uniqueTopic("autocreate-sub")
			begin := time.Now()
			ch, cancel, err := a.Subscribe(ctx, topic, "g-"+topic)
			if err != nil {
				t.Fatalf("subscribe to a new topic: %v", err)
			}
			defer cancel()
			t.Logf("subscribe to a new topic took %v", time.Since(begin).Round(time.Millisecond))
			if n := partitionCount(t, b, topic); n != 5 {
				t.Fatalf("auto-created topic has %d partitions, want 5", n)
			}
			want := vals("sub", 5)
			for _, v := range want {
				if err := a.Publish(ctx, topic, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			receiveValues(t, ctx, a, "g-"+topic, ch, want)
		})

		t.Run("CreatedElsewhere", func(t *testing.T) {
			// Without AutoCreateTopics, a topic an admin created a moment
			// ago is published to and subscribed at once, although the
			// broker may still call it unknown (1 to 2 times in 40 before
			// the adapter looked again).
			plain := newAdapter(t, testConfig(addrs(b.Addr())))
			for i := range 20 {
				topic := uniqueTopic(fmt.Sprintf("admin-created-%d", i))
				createTopicOn(t, addrs(b.Addr()), topic, 1)
				if err := plain.Publish(ctx, topic, []byte("x")); err != nil {
					t.Fatalf("publish right after topic %d was created: %v", i, err)
				}
			}
			topic := uniqueTopic("admin-created")
			createTopicOn(t, addrs(b.Addr()), topic, 2)
			if err := plain.Publish(ctx, topic, []byte("a")); err != nil {
				t.Fatalf("publish right after the topic was created: %v", err)
			}
			ch, cancel, err := plain.Subscribe(ctx, topic, "g-"+topic)
			if err != nil {
				t.Fatalf("subscribe right after the topic was created: %v", err)
			}
			defer cancel()
			receiveValues(t, ctx, plain, "g-"+topic, ch, []string{"a"})
		})
	})
}

// TestRealTopicDeleted deletes a topic under a live subscription. Without
// AutoCreateTopics, publishing to it and subscribing to it fail at once
// with ErrUnknownTopic, and the live subscription ends: its channel is
// closed, with one ERROR log, after few warnings (no retry loop spins).
// With AutoCreateTopics the live subscription ends as well and does not
// create the topic again; the next publish does.
func TestRealTopicDeleted(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		t.Run("NoAutoCreate", func(t *testing.T) {
			topic := uniqueTopic("deleted")
			group := "g-" + topic
			createTopicOn(t, addrs(b.Addr()), topic, 3)
			logs := &logRecorder{}
			cfg := testConfig(addrs(b.Addr()))
			cfg.Logger = slog.New(logs)
			a := newAdapter(t, cfg)
			ctx := ctxT(t, time.Minute)
			ch, cancel, err := a.Subscribe(ctx, topic, group)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			want := vals("before", 5)
			for _, v := range want {
				if err := a.Publish(ctx, topic, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			receiveValues(t, ctx, a, group, ch, want)

			deleteTopicOn(t, b, topic)
			waitFor(t, 30*time.Second, "the topic to disappear from the metadata", func() bool {
				return partitionCount(t, b, topic) == 0
			})
			before := len(logs.all())
			// Publish: the cached partitions are stale; the broker's
			// UNKNOWN_TOPIC_OR_PARTITION makes the adapter look again.
			pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
			defer pcancel()
			begin := time.Now()
			err = a.Publish(pctx, topic, []byte("after"))
			t.Logf("publish to the deleted topic: %v after %v", err, time.Since(begin).Round(time.Millisecond))
			if !errors.Is(err, kafka.ErrUnknownTopic) {
				t.Fatalf("publish to a deleted topic: %v, want an error wrapping ErrUnknownTopic", err)
			}
			if _, _, err := a.Subscribe(ctx, topic, group+"-new"); !errors.Is(err, kafka.ErrUnknownTopic) {
				t.Fatalf("subscribe to a deleted topic: %v, want an error wrapping ErrUnknownTopic", err)
			}

			// The live subscription ends, once the broker called the
			// topic unknown for a few seconds. Until then no busy loop:
			// fetches back off to one a second per partition and warn on
			// the 1st and every 20th failure; commits warn once per
			// CommitInterval at most.
			select {
			case m, ok := <-ch:
				if ok {
					t.Fatalf("delivery from a deleted topic: %q", m.Value())
				}
			case <-ctx.Done():
				t.Fatalf("the subscription did not end after its topic was deleted: %v", ctx.Err())
			}
			took := time.Since(begin)
			t.Logf("the subscription ended %v after the publish failed", took.Round(time.Millisecond))
			errs := logs.errors()
			if len(errs) != 1 || !strings.Contains(errs[0], "topic="+topic) || !strings.Contains(errs[0], "group="+group) {
				t.Fatalf("ERROR logs %q, want one naming the topic and the group", errs)
			}
			n := int64(len(logs.all())-before) - 1
			limit := int64(took/cfg.CommitInterval) + 3*4
			t.Logf("%d warnings until the end", n)
			if n > limit {
				t.Errorf("%d warnings in %v after the topic was deleted, want at most %d: a retry loop spins", n, took, limit)
			}
			begin = time.Now()
			cancel()
			if d := time.Since(begin); d > 10*time.Second {
				t.Errorf("cancel took %v", d)
			}
		})

		t.Run("AutoCreateLive", func(t *testing.T) {
			topic := uniqueTopic("deleted-live")
			group := "g-" + topic
			logs := &logRecorder{}
			cfg := realConfig(b)
			cfg.Logger = slog.New(logs)
			cfg.PartitionWatchInterval = 200 * time.Millisecond
			a := newAdapter(t, cfg)
			ctx := ctxT(t, time.Minute)
			ch, cancel, err := a.Subscribe(ctx, topic, group)
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			want := vals("before", 5)
			for _, v := range want {
				if err := a.Publish(ctx, topic, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			receiveValues(t, ctx, a, group, ch, want)
			deleteTopicOn(t, b, topic)
			begin := time.Now()
			select {
			case m, ok := <-ch:
				if ok {
					t.Fatalf("delivery from a deleted topic: %q", m.Value())
				}
			case <-ctx.Done():
				t.Fatalf("the subscription did not end after its topic was deleted: %v", ctx.Err())
			}
			t.Logf("the subscription ended %v after the deletion", time.Since(begin).Round(time.Millisecond))
			if errs := logs.errors(); len(errs) != 1 {
				t.Fatalf("ERROR logs %q, want one", errs)
			}
			cancel()
			if n := partitionCount(t, b, topic); n != 0 {
				t.Fatalf("the deleted topic exists again with %d partitions: the subscription created it", n)
			}
		})

		t.Run("AutoCreate", func(t *testing.T) {
			topic := uniqueTopic("recreated")
			a := newAdapter(t, realConfig(b))
			ctx := ctxT(t, time.Minute)
			if err := a.Publish(ctx, topic, []byte("before")); err != nil {
				t.Fatal(err)
			}
			deleteTopicOn(t, b, topic)
			waitFor(t, 30*time.Second, "the topic to disappear from the metadata", func() bool {
				return partitionCount(t, b, topic) == 0
			})
			begin := time.Now()
			if err := a.Publish(ctx, topic, []byte("after")); err != nil {
				t.Fatalf("publish to a deleted topic with AutoCreateTopics: %v", err)
			}
			t.Logf("publish re-created the deleted topic in %v", time.Since(begin).Round(time.Millisecond))
			if n := partitionCount(t, b, topic); n != 3 {
				t.Fatalf("re-created topic has %d partitions, want 3", n)
			}
		})
	})
}

// TestRealOversizedMessage publishes records larger than the broker's
// message.max.bytes (the default, 1048588 bytes): Publish fails at once with
// ErrMessageTooLarge, whether the adapter knew the limit (uncompressed) or
// the broker refused the batch (compressed, incompressible data), records
// sharing the partition go through, and nothing is stuck afterwards.
func TestRealOversizedMessage(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		for _, tc := range []struct {
			name        string
			compression kafka.Compression
			broker      bool // the broker's answer, not the adapter's check
		}{
			{"Uncompressed", kafka.CompressionNone, false},
			{"Gzip", kafka.CompressionGzip, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				topic := uniqueTopic("oversized")
				cfg := realConfig(b)
				cfg.Compression = tc.compression
				a := newAdapter(t, cfg)
				ctx := ctxT(t, time.Minute)
				if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil {
					t.Fatal(err)
				}
				big := make([]byte, 2<<20)
				if _, err := rand.Read(big); err != nil { // incompressible
					t.Fatal(err)
				}
				key := []byte("same-partition")
				var wg sync.WaitGroup
				small := vals("small", 20)
				errs := make(chan error, len(small))
				for _, v := range small {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- a.PublishRecord(ctx, topic, eventstream.Record{Key: key, Value: []byte(v)})
					}()
				}
				begin := time.Now()
				err := a.PublishRecord(ctx, topic, eventstream.Record{Key: key, Value: big})
				took := time.Since(begin)
				wg.Wait()
				close(errs)
				t.Logf("2 MiB record: %v after %v", err, took.Round(time.Millisecond))
				if !errors.Is(err, kafka.ErrMessageTooLarge) {
					t.Fatalf("publish of a 2 MiB record: %v, want an error wrapping ErrMessageTooLarge", err)
				}
				if got := errors.Is(err, kafkago.MessageSizeTooLarge); got != tc.broker {
					t.Errorf("error wraps the broker's MESSAGE_TOO_LARGE: %v, want %v", got, tc.broker)
				}
				if took > 10*time.Second {
					t.Errorf("the oversized publish took %v", took)
				}
				for err := range errs {
					if err != nil {
						t.Fatalf("small record next to the oversized one: %v", err)
					}
				}
				if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: key, Value: []byte("last")}); err != nil {
					t.Fatalf("publish after the oversized record: %v", err)
				}
				ch, cancel, err := a.Subscribe(ctx, topic, "g-"+topic)
				if err != nil {
					t.Fatal(err)
				}
				defer cancel()
				receiveValues(t, ctx, a, "g-"+topic, ch, append(append(small, "warm-up"), "last"))
			})
		}
	})
}

// TestRealPartitionsAdded adds partitions to a topic that is being
// published to: within the adapter's metadata refresh, unkeyed records
// reach the new partitions too (which real Kafka lists before they have
// leaders), and no publish fails meanwhile.
func TestRealPartitionsAdded(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		topic := uniqueTopic("grown")
		createTopicOn(t, addrs(b.Addr()), topic, 2)
		a := newAdapter(t, testConfig(addrs(b.Addr())))
		ctx := ctxT(t, time.Minute)
		if err := a.Publish(ctx, topic, []byte("before")); err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrCreatePartitionsRequest()
		rt := kmsg.NewCreatePartitionsRequestTopic()
		rt.Topic, rt.Count = topic, 4
		req.Topics = append(req.Topics, rt)
		req.TimeoutMillis = 20000
		resp := admin[*kmsg.CreatePartitionsResponse](t, b, req)
		if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
			t.Fatalf("adding partitions: %v", err)
		}
		begin := time.Now()
		n := 0
		waitFor(t, 45*time.Second, "records on the added partitions", func() bool {
			for range 8 {
				if err := a.Publish(ctx, topic, []byte(fmt.Sprint(n))); err != nil {
					t.Fatalf("publish while partitions are added: %v", err)
				}
				n++
			}
			ends := endOffsets(t, addrs(b.Addr()), topic, 4)
			return ends[2] > 0 && ends[3] > 0
		})
		t.Logf("the added partitions got records %v after they were created (%d publishes)", time.Since(begin).Round(time.Millisecond), n)
	})
}
