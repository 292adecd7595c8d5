package e2e_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The helpers below ask the broker directly, through franz-go, so that the
// checks do not depend on the adapter under test.

func adminClient(tb testing.TB, brokers []string) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		tb.Fatalf("kgo.NewClient: %v", err)
	}
	return cl
}

// endOffsets returns the high watermark of each of the first partitions
// partitions of topic.
func endOffsets(tb testing.TB, brokers []string, topic string, partitions int32) map[int32]int64 {
	tb.Helper()
	cl := adminClient(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = -1 // latest
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("list offsets of %s: %v", topic, err)
	}
	out := make(map[int32]int64)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				tb.Fatalf("list offsets of %s[%d]: error code %d", topic, p.Partition, p.ErrorCode)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out
}

// committedOffsets returns the offsets group committed on the first
// partitions partitions of topic (absent when none).
func committedOffsets(tb testing.TB, brokers []string, group, topic string, partitions int32) map[int32]int64 {
	tb.Helper()
	cl := adminClient(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("offset fetch of %s/%s: %v", group, topic, err)
	}
	if resp.ErrorCode != 0 {
		tb.Fatalf("offset fetch of %s/%s: error code %d", group, topic, resp.ErrorCode)
	}
	out := make(map[int32]int64)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out
}

// createTopic creates topic with partitions partitions.
func createTopic(tb testing.TB, brokers []string, topic string, partitions int32) {
	tb.Helper()
	cl := adminClient(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = topic
	rt.NumPartitions = partitions
	rt.ReplicationFactor = 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("create topic %s: %v", topic, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			tb.Fatalf("create topic %s: %v", topic, err)
		}
	}
}
