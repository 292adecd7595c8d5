package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/internal/testutil"
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

// writeBomb writes to partition 0 of topic a record "before", a zstd batch
// decompressing to 4 MiB and a record "after", and returns the crafted
// batch.
func writeBomb(ctx context.Context, t *testing.T, addrs []string, topic string) []byte {
	t.Helper()
	cl := kadmin.Client(t, addrs, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
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
	return bomb
}

// waitCommitted waits until group committed offset want on partition 0 of
// topic (past the record before the bomb, the bomb and the record after it).
func waitCommitted(t *testing.T, addrs []string, group, topic string, want int64) {
	t.Helper()
	var got int64
	testutil.Eventually(t, 30*time.Second, func() bool {
		got = kadmin.Committed(t, addrs, group, topic, 1)[0]
		return got == want
	}, func() string { return fmt.Sprintf("group %s committed %d on %s[0], want %d", group, got, topic, want) })
}

// bombConfig is the adapter configuration of the bomb tests: a 1 MiB bound.
func bombConfig(addrs []string, logs *lockedBuffer) Config {
	return Config{
		Brokers:                   addrs,
		SessionTimeout:            3 * time.Second,
		HeartbeatInterval:         100 * time.Millisecond,
		RebalanceTimeout:          5 * time.Second,
		RevokeTimeout:             time.Second,
		CommitInterval:            50 * time.Millisecond,
		FetchMaxWait:              100 * time.Millisecond,
		MaxDecompressedBatchBytes: 1 << 20,
		Logger:                    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError})),
	}
}

// TestConsumeBombStandIn: with a 1 MiB bound, the batch past it is
// delivered as one stand-in — DecodeError wrapping errBatchTooLarge, the
// batch's offset, the crafted bytes as its value, logged at Error level —
// between the records before and after it; acknowledging everything
// commits past all three. Nothing is skipped, nothing blocks the partition.
func TestConsumeBombStandIn(t *testing.T) {
	const topic, group = "bomb", "g-bomb"
	c := kafkatest.NewCluster(t, kfake.SeedTopics(1, topic))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bomb := writeBomb(ctx, t, c.Addrs(), topic)
	var logs lockedBuffer
	a, err := NewAdapter(bombConfig(c.Addrs(), &logs))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ch, stop, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i, want := range []string{"before", "", "after"} {
		var m *Message
		select {
		case got := <-ch:
			m = got.(*Message)
		case <-ctx.Done():
			t.Fatalf("delivery %d missing", i)
		}
		if m.Offset() != int64(i) {
			t.Fatalf("delivery %d at offset %d", i, m.Offset())
		}
		if i == 1 {
			if err := m.DecodeError(); !errors.Is(err, errBatchTooLarge) {
				t.Fatalf("the stand-in's DecodeError is %v, want errBatchTooLarge", err)
			}
			// The broker assigns the base offset (and the leader epoch):
			// the rest of the batch is as crafted.
			if got := m.Value(); len(got) != len(bomb) || !bytes.Equal(got[12+batchMagic:], bomb[12+batchMagic:]) {
				t.Errorf("the stand-in's value (%d bytes) is not the crafted batch (%d bytes)", len(got), len(bomb))
			}
			want := map[string]string{HeaderStandInOffsets: "1-1", HeaderStandInBytes: strconv.Itoa(len(bomb))}
			if m.Key() != nil || !maps.Equal(m.Headers(), want) {
				t.Errorf("the stand-in has key %q, headers %v; want none, %v", m.Key(), m.Headers(), want)
			}
		} else if err := m.DecodeError(); err != nil || string(m.Value()) != want {
			t.Fatalf("delivery %d: %q, DecodeError %v; want %q, nil", i, m.Value(), err, want)
		}
		if err := a.Ack(ctx, group, m); err != nil {
			t.Fatal(err)
		}
	}
	if logs.count("record batch decompresses past") == 0 || logs.count("offsets=1-1") == 0 {
		t.Errorf("the stand-in was not logged with its offsets: %q", logs.b.String())
	}
	waitCommitted(t, c.Addrs(), group, topic, 3)
}

// TestBusDeadLettersBomb: through the bus, the handler gets the records
// before and after the batch; the batch reaches the dead-letter topic as
// it was fetched, with the decode error in its headers.
func TestBusDeadLettersBomb(t *testing.T) {
	const topic, group = "bomb", "g-bomb"
	c := kafkatest.NewCluster(t, kfake.SeedTopics(1, topic, eventstream.DeadLetterTopicName(topic, group)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bomb := writeBomb(ctx, t, c.Addrs(), topic)
	var logs lockedBuffer
	a, err := NewAdapter(bombConfig(c.Addrs(), &logs))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Logger = testutil.Quiet
	cfg.Distributed.MQAdapter = a
	cfg.Distributed.Serializer = eventstream.RawSerializer{}
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	handled := make(chan string, 3)
	if _, err := bus.On(topic, func(_ context.Context, e *eventstream.Event) error {
		handled <- string(e.Data.([]byte))
		return nil
	}, eventstream.WithConsumerGroup(group)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"before", "after"} {
		select {
		case got := <-handled:
			if got != want {
				t.Fatalf("handled %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("%q not handled", want)
		}
	}
	dlq, stop, err := a.Subscribe(ctx, eventstream.DeadLetterTopicName(topic, group), "inspect")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case m := <-dlq:
		dl := m.(*Message)
		if !bytes.Equal(dl.Value()[12+batchMagic:], bomb[12+batchMagic:]) {
			t.Errorf("the dead letter (%d bytes) is not the batch (%d bytes)", len(dl.Value()), len(bomb))
		}
		if reason := dl.Headers()[eventstream.HeaderDeadLetterError]; !strings.Contains(reason, "decompresses past") {
			t.Errorf("the dead letter's error header is %q", reason)
		}
		if got := dl.Headers()[HeaderStandInOffsets]; got != "1-1" {
			t.Errorf("the dead letter's %s header is %q, want 1-1", HeaderStandInOffsets, got)
		}
	case <-ctx.Done():
		t.Fatal("no dead letter")
	}
	waitCommitted(t, c.Addrs(), group, topic, 3)
	select {
	case got := <-handled:
		t.Errorf("the handler also got %q", got)
	default:
	}
}
