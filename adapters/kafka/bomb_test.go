package kafka

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/segmentio/kafka-go/compress"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestConsumeBombStaysPut writes a record, a zstd batch decompressing to
// 4 MiB and a record to a partition and consumes it with a 1 MiB bound: the
// first record is delivered and committed, then the partition stays at the
// batch (logged at Error level, fetched again, nothing past it delivered or
// committed) until a member with a higher bound takes over and delivers the
// batch and the record after it.
func TestConsumeBombStaysPut(t *testing.T) {
	const topic, group = "bomb", "g-bomb"
	c := kafkatest.NewCluster(t, kfake.SeedTopics(1, topic))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kadmin.Client(t, c.Addrs(), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	bomb, _ := bombBatch(t, 0, compress.Zstd, 4<<20)
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	md, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, md.Topics[0].TopicID // by id from version 13
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = bomb
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("producing the crafted batch: error code %d", code)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cfg := Config{
		Brokers:                   c.Addrs(),
		SessionTimeout:            3 * time.Second,
		HeartbeatInterval:         100 * time.Millisecond,
		RebalanceTimeout:          5 * time.Second,
		RevokeTimeout:             time.Second,
		CommitInterval:            50 * time.Millisecond,
		FetchMaxWait:              100 * time.Millisecond,
		MaxDecompressedBatchBytes: 1 << 20,
	}
	var logs lockedBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
	committed := func() int64 { return kadmin.Committed(t, c.Addrs(), group, topic, 1)[0] }

	a, err := NewAdapter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ch, stop, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	var first *Message
	select {
	case m := <-ch:
		first = m.(*Message)
	case <-ctx.Done():
		t.Fatal("no first record")
	}
	if string(first.Value()) != "before" || first.Offset() != 0 {
		t.Fatalf("first delivery: offset %d %q", first.Offset(), first.Value())
	}
	if err := a.Ack(ctx, group, first); err != nil {
		t.Fatal(err)
	}
	// Two logged attempts: the batch was fetched again and still refused.
	for logs.count("record batch decompresses past") < 2 {
		select {
		case m := <-ch:
			t.Fatalf("delivered offset %d past the refused batch", m.(*Message).Offset())
		case <-ctx.Done():
			t.Fatalf("the refused batch was not logged twice; log: %q", logs.b.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if got := logs.count("offset=1 "); got < 2 {
		t.Errorf("the log does not name the batch's offset 1: %q", logs.b.String())
	}
	if got := committed(); got != 1 {
		t.Errorf("committed %d, want 1 (past the first record, not past the batch)", got)
	}
	stop()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.MaxDecompressedBatchBytes = 0 // the default, 64 MiB
	b, err := NewAdapter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch, stop, err = b.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for _, want := range []struct {
		offset int64
		size   int
	}{{1, 4 << 20}, {2, len("after")}} {
		select {
		case m := <-ch:
			if m.(*Message).Offset() != want.offset || len(m.Value()) != want.size {
				t.Fatalf("delivered offset %d (%d bytes), want %d (%d bytes)", m.(*Message).Offset(), len(m.Value()), want.offset, want.size)
			}
		case <-ctx.Done():
			t.Fatalf("offset %d not delivered with the default bound", want.offset)
		}
	}
}
