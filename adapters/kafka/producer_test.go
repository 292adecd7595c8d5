package kafka_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
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
