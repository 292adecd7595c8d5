package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// countProduce counts produce requests and the records they carry.
func countProduce(c *kafkatest.Cluster) (requests, records *atomic.Int64) {
	requests, records = new(atomic.Int64), new(atomic.Int64)
	c.Fake.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.ProduceRequest)
		requests.Add(1)
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(p.Records); err == nil {
					records.Add(int64(b.NumRecords))
				}
			}
		}
		return nil, nil, false
	})
	return requests, records
}

// TestProducerLatencyAndBatching checks that a lone publish is sent at once
// (no batch timer) and that concurrent publishes share produce requests.
func TestProducerLatencyAndBatching(t *testing.T) {
	const topic = "batching"
	c := startCluster(t, 1, topic)
	requests, records := countProduce(c)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)

	if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	const seq = 50
	r0 := requests.Load()
	start := time.Now()
	for i := 0; i < seq; i++ {
		if err := a.Publish(ctx, topic, []byte("s")); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	if got := requests.Load() - r0; got != seq {
		t.Errorf("%d sequential publishes took %d produce requests, want one each", seq, got)
	}
	// kafka-go's Writer would wait for its 1s batch timeout per publish.
	if elapsed > 5*time.Second {
		t.Errorf("%d sequential publishes took %v", seq, elapsed)
	}
	t.Logf("sequential: %v per publish", elapsed/seq)

	const conc = 400
	r0, n0 := requests.Load(), records.Load()
	var wg sync.WaitGroup
	startCh := make(chan struct{})
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startCh
			if err := a.Publish(ctx, topic, []byte("c")); err != nil {
				t.Error(err)
			}
		}()
	}
	close(startCh)
	wg.Wait()
	reqs, recs := requests.Load()-r0, records.Load()-n0
	if recs != conc {
		t.Errorf("broker saw %d records, want %d", recs, conc)
	}
	if reqs > conc/2 {
		t.Errorf("%d concurrent publishes took %d produce requests; expected batching", conc, reqs)
	}
	t.Logf("concurrent: %d records in %d produce requests", recs, reqs)
}

// TestKeyPartitioning checks that keys land on the partition the Java
// client's default partitioner picks, and that unkeyed records spread.
func TestKeyPartitioning(t *testing.T) {
	const topic = "keys"
	c := startCluster(t, 7, topic)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)
	// toPositive(murmur2(key)) % 7 with the Java client's murmur2.
	want := map[string]int{"21": 3, "foobar": 0, "a-little-bit-long-string": 1, "abc": 4}
	for k := range want {
		if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: []byte(k), Value: []byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 14; i++ {
		if err := a.Publish(ctx, topic, []byte("unkeyed")); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, "g-keys")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	unkeyed := map[int]int{}
	for got := 0; got < len(want)+14; got++ {
		select {
		case m := <-ch:
			km := m.(*kafka.Message)
			if km.Key() == nil {
				unkeyed[km.Partition()]++
			} else if p := want[string(km.Key())]; p != km.Partition() {
				t.Errorf("key %q on partition %d, want %d", km.Key(), km.Partition(), p)
			}
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	if len(unkeyed) < 2 {
		t.Errorf("unkeyed records not spread: %v", unkeyed)
	}
}

// produceStats observes the produce requests a cluster receives.
type produceStats struct {
	mu            sync.Mutex
	requests      int
	records       map[string]map[int32]int // topic -> partition -> records
	maxPartitions int                      // most partitions in one request
	maxTopics     int                      // most topics in one request
	mixedLeaders  int                      // requests with partitions of several leaders
}

func observeProduce(c *kafkatest.Cluster) *produceStats {
	s := &produceStats{records: map[string]map[int32]int{}}
	c.Fake.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.ProduceRequest)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests++
		s.maxTopics = max(s.maxTopics, len(req.Topics))
		parts := 0
		leaders := map[int32]bool{}
		for _, t := range req.Topics {
			if s.records[t.Topic] == nil {
				s.records[t.Topic] = map[int32]int{}
			}
			for _, p := range t.Partitions {
				parts++
				leaders[c.Fake.LeaderFor(t.Topic, p.Partition)] = true
				var b kmsg.RecordBatch
				if err := b.ReadFrom(p.Records); err == nil {
					s.records[t.Topic][p.Partition] += int(b.NumRecords)
				}
			}
		}
		s.maxPartitions = max(s.maxPartitions, parts)
		if len(leaders) > 1 {
			s.mixedLeaders++
		}
		return nil, nil, false
	})
	return s
}

// retryCounter is a slog.Handler counting the adapter's publish retries.
type retryCounter struct{ n atomic.Int64 }

func (h *retryCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *retryCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "publish failed, retrying") {
		h.n.Add(1)
	}
	return nil
}
func (h *retryCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *retryCounter) WithGroup(string) slog.Handler      { return h }

// publishAll publishes perTopic records with distinct keys to every topic
// from many goroutines at once.
func publishAll(t *testing.T, a *kafka.Adapter, ctx context.Context, perTopic int, topics ...string) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, topic := range topics {
		for i := 0; i < perTopic; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				k := []byte(fmt.Sprintf("k-%d", i))
				if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: k, Value: k}); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
}

// TestProducerSharesRequestsAcrossPartitions checks that concurrent
// publishes to the partitions of several topics led by one broker share
// multi-topic, multi-partition produce requests, while sequential publishes
// spread over partitions still take one request each.
func TestProducerSharesRequestsAcrossPartitions(t *testing.T) {
	c := startCluster(t, 6, "multi-a", "multi-b")
	stats := observeProduce(c)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)

	for _, topic := range []string{"multi-a", "multi-b"} {
		if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil {
			t.Fatal(err)
		}
	}
	stats.mu.Lock()
	r0 := stats.requests
	stats.mu.Unlock()
	const seq = 24
	for i := 0; i < seq; i++ {
		if err := a.Publish(ctx, "multi-a", []byte("s")); err != nil { // round-robin over 6 partitions
			t.Fatal(err)
		}
	}
	stats.mu.Lock()
	if got := stats.requests - r0; got != seq {
		t.Errorf("%d sequential publishes took %d produce requests, want one each", seq, got)
	}
	r0 = stats.requests
	stats.maxPartitions, stats.maxTopics = 0, 0
	stats.mu.Unlock()

	const perTopic = 300
	publishAll(t, a, ctx, perTopic, "multi-a", "multi-b")
	stats.mu.Lock()
	defer stats.mu.Unlock()
	reqs := stats.requests - r0
	if reqs > perTopic/2 {
		t.Errorf("%d concurrent publishes took %d produce requests; expected batching", 2*perTopic, reqs)
	}
	if stats.maxPartitions < 2 || stats.maxTopics < 2 {
		t.Errorf("no request carried several partitions and topics: at most %d partitions, %d topics",
			stats.maxPartitions, stats.maxTopics)
	}
	t.Logf("concurrent: %d records in %d requests, up to %d partitions of %d topics in one",
		2*perTopic, reqs, stats.maxPartitions, stats.maxTopics)
}

// TestProducerGroupsByLeader checks, on a three-broker cluster, that every
// request only carries partitions of one leader and no publish needs a
// retry.
func TestProducerGroupsByLeader(t *testing.T) {
	const topic = "leaders"
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(9, topic))
	stats := observeProduce(c)
	retries := &retryCounter{}
	cfg := testConfig(c.Addrs())
	cfg.Logger = slog.New(retries)
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)

	publishAll(t, a, ctx, 500, topic)
	stats.mu.Lock()
	defer stats.mu.Unlock()
	total := 0
	for _, n := range stats.records[topic] {
		total += n
	}
	if total != 500 || stats.mixedLeaders > 0 || retries.n.Load() > 0 {
		t.Errorf("broker saw %d records (want 500), %d requests with several leaders, %d retries",
			total, stats.mixedLeaders, retries.n.Load())
	}
	if stats.maxPartitions < 2 {
		t.Errorf("no request carried several partitions")
	}
	t.Logf("%d records in %d requests", total, stats.requests)
}

// TestProducerRetriesOnlyFailedPartitions fails one partition of shared
// requests: only its records are sent again, the other partitions' records
// are written exactly once.
func TestProducerRetriesOnlyFailedPartitions(t *testing.T) {
	const topic, per = "partial", 200
	c := startCluster(t, 4, topic)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)
	if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	stats := observeProduce(c)
	fault := c.Fake.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{2},
		Err: kerr.NotLeaderForPartition, Count: 3,
	})

	// Keyed records with a known partition each.
	want := map[int32]int{}
	var wg sync.WaitGroup
	for i := 0; i < per; i++ {
		k := []byte(fmt.Sprintf("key-%d", i))
		want[int32(kafka.KeyPartition(k, 4))]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: k, Value: k}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := fault.Wait(ctx, 3); err != nil {
		t.Fatalf("fault not hit: %v", err)
	}
	stats.mu.Lock()
	defer stats.mu.Unlock()
	got := stats.records[topic]
	for p := int32(0); p < 4; p++ {
		switch {
		case p == 2 && got[p] <= want[p]:
			t.Errorf("partition 2: %d records sent, want more than %d (retries)", got[p], want[p])
		case p != 2 && got[p] != want[p]:
			t.Errorf("partition %d: %d records sent, want exactly %d", p, got[p], want[p])
		}
	}
	t.Logf("sent per partition %v, published %v", got, want)
}

// TestProducerBatchLimits checks that Config.MaxBatchRecords caps whole
// multi-partition requests and that a rejected oversized batch is resent
// record by record, so each record gets its own verdict.
func TestProducerBatchLimits(t *testing.T) {
	const topic = "limits"
	c := startCluster(t, 3, topic)
	cfg := testConfig(c.Addrs())
	cfg.MaxBatchRecords = 5
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	var most atomic.Int64
	c.Fake.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		n := 0
		for _, t := range r.(*kmsg.ProduceRequest).Topics {
			for _, p := range t.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(p.Records); err == nil {
					n += int(b.NumRecords)
				}
			}
		}
		for {
			if m := most.Load(); int64(n) <= m || most.CompareAndSwap(m, int64(n)) {
				break
			}
		}
		return nil, nil, false
	})
	// The first batch of several records for partition 0 is rejected as
	// too large as a whole.
	fault := c.Fake.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{0}, Err: kerr.MessageTooLarge,
		When: func(r kmsg.Request) bool {
			for _, t := range r.(*kmsg.ProduceRequest).Topics {
				for _, p := range t.Partitions {
					var b kmsg.RecordBatch
					if p.Partition == 0 && b.ReadFrom(p.Records) == nil && b.NumRecords > 1 {
						return true
					}
				}
			}
			return false
		},
	})
	publishAll(t, a, ctx, 200, topic)
	if fault.Hits() != 1 {
		t.Errorf("oversized batch fault hit %d times, want 1", fault.Hits())
	}
	if m := most.Load(); m > 5 || m < 2 {
		t.Errorf("largest request carried %d records, want 2 to 5", m)
	}
}

// TestProducerLeaderMovesUnderLoad moves partition leaders while many
// goroutines publish: partitions queued at the old leader's writer must
// follow to the new one, and every publish must succeed.
func TestProducerLeaderMovesUnderLoad(t *testing.T) {
	const topic = "moving-load"
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(6, topic))
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 60*time.Second)
	if err := a.Publish(ctx, topic, []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var published atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := []byte(fmt.Sprintf("g%d-%d", g, i))
				if err := a.PublishRecord(ctx, topic, eventstream.Record{Key: k, Value: k}); err != nil {
					t.Error(err)
					return
				}
				published.Add(1)
			}
		}()
	}
	// Each round waits for publishing to make progress, then moves every
	// leader; after the last move publishes must keep succeeding.
	progress := func(what string) {
		from := published.Load()
		waitFor(t, 30*time.Second, what, func() bool { return published.Load() >= from+200 })
	}
	for round := 0; round < 4; round++ {
		progress(fmt.Sprintf("publishes before leader move %d", round+1))
		for p := int32(0); p < 6; p++ {
			if err := c.Fake.MoveTopicPartition(topic, p, (c.Fake.LeaderFor(topic, p)+1)%3); err != nil {
				t.Fatal(err)
			}
		}
	}
	progress("publishes after the last leader move")
	close(stop)
	wg.Wait()
	t.Logf("%d publishes", published.Load())
}

// TestProducerAcksNone publishes concurrently without acknowledgements.
func TestProducerAcksNone(t *testing.T) {
	const topic = "acks-none"
	c := startCluster(t, 3, topic)
	stats := observeProduce(c)
	cfg := testConfig(c.Addrs())
	cfg.RequiredAcks = kafka.AcksNone
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	publishAll(t, a, ctx, 100, topic)
	waitFor(t, 10*time.Second, "every record at the broker", func() bool {
		stats.mu.Lock()
		defer stats.mu.Unlock()
		n := 0
		for _, k := range stats.records[topic] {
			n += k
		}
		return n == 100
	})
}
