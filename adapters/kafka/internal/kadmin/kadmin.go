// Package kadmin is the Kafka adapter tests' own view of a broker: topics
// created, log end offsets and committed offsets asked for through franz-go,
// so that what the tests check does not depend on the adapter under test.
// Every function fails the test on an error it cannot carry on from.
package kadmin

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestTimeout bounds every request of this package.
const requestTimeout = 15 * time.Second

// Client returns a franz-go client of brokers with opts; the caller closes
// it.
func Client(tb testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		tb.Fatalf("kadmin: kgo.NewClient: %v", err)
	}
	return cl
}

// CreateTopic creates topic with partitions partitions and replication
// factor 1.
func CreateTopic(tb testing.TB, brokers []string, topic string, partitions int32) {
	tb.Helper()
	cl := Client(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("kadmin: create topic %s: %v", topic, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			tb.Fatalf("kadmin: create topic %s: %v", topic, err)
		}
	}
}

// DeleteTopic deletes topic.
func DeleteTopic(tb testing.TB, brokers []string, topic string) {
	tb.Helper()
	cl := Client(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrDeleteTopicsRequest()
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.TopicNames = []string{topic}
	req.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("kadmin: delete topic %s: %v", topic, err)
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			tb.Fatalf("kadmin: delete topic %s: %v", topic, err)
		}
	}
}

// Partitions returns how many partitions the metadata lists for topic, 0
// when the topic does not exist (it is never created).
func Partitions(tb testing.TB, brokers []string, topic string) int {
	tb.Helper()
	cl := Client(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("kadmin: metadata of %s: %v", topic, err)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		return 0
	}
	return len(resp.Topics[0].Partitions)
}

// EndOffsets returns the high watermark of each of the first partitions
// partitions of topic.
func EndOffsets(tb testing.TB, brokers []string, topic string, partitions int32) map[int32]int64 {
	tb.Helper()
	cl := Client(tb, brokers)
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
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("kadmin: list offsets of %s: %v", topic, err)
	}
	out := make(map[int32]int64)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				tb.Fatalf("kadmin: list offsets of %s[%d]: %v", topic, p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
			out[p.Partition] = p.Offset
		}
	}
	return out
}

// Committed returns the offsets group committed on the first partitions
// partitions of topic; a partition without one is absent. When the group
// coordinator answers with an error (it may be loading after a restart)
// the map is empty and the error is logged, so that a caller polling for
// offsets asks again.
func Committed(tb testing.TB, brokers []string, group, topic string, partitions int32) map[int32]int64 {
	tb.Helper()
	cl := Client(tb, brokers)
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rt.Partitions = append(rt.Partitions, p)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		tb.Fatalf("kadmin: offset fetch of %s/%s: %v", group, topic, err)
	}
	out := make(map[int32]int64)
	if resp.ErrorCode != 0 {
		tb.Logf("kadmin: offset fetch of %s/%s: %v", group, topic, kerr.ErrorForCode(resp.ErrorCode))
		return out
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 && p.Offset >= 0 {
				out[p.Partition] = p.Offset
			}
		}
	}
	return out
}
