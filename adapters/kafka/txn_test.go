package kafka_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTransactionMarkers consumes a topic written by a transactional
// producer: the records arrive, the commit marker is not delivered, and a
// consumer caught up behind a trailing marker does not spin on fetches.
func TestTransactionMarkers(t *testing.T) {
	const topic, group = "txn", "g-txn"
	c := startCluster(t, 1, topic)
	ctx := ctxT(t, 30*time.Second)

	cl := kgoClient(t, c.Addrs(), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("tx-1"))
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b", "c"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	var fetches atomic.Int64
	c.Fake.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		fetches.Add(1)
		return nil, nil, false
	})
	a := newAdapter(t, testConfig(c.Addrs()))
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	for _, want := range []string{"a", "b", "c"} {
		select {
		case m := <-ch:
			if string(m.Value()) != want {
				t.Fatalf("got %q, want %q", m.Value(), want)
			}
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	// Caught up behind the marker: fetches wait for data (FetchMaxWait
	// 200ms) instead of returning the marker again and again.
	before := fetches.Load()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %q (offset %v)", m.Value(), m)
	case <-time.After(time.Second):
	}
	if n := fetches.Load() - before; n > 20 {
		t.Fatalf("%d fetches in one second while idle: spinning on the transaction marker", n)
	}
}
