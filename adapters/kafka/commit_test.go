package kafka_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitLog records every OffsetCommit request the broker sees for a group.
type commitLog struct {
	mu      sync.Mutex
	commits map[int32][]int64
}

func observeCommits(c *kafkatest.Cluster, group string) *commitLog {
	l := &commitLog{commits: make(map[int32][]int64)}
	c.Fake.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.OffsetCommitRequest)
		if req.Group != group {
			return nil, nil, false
		}
		l.mu.Lock()
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				l.commits[p.Partition] = append(l.commits[p.Partition], p.Offset)
			}
		}
		l.mu.Unlock()
		return nil, nil, false
	})
	return l
}

func (l *commitLog) last(p int32) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.commits[p]
	if len(s) == 0 {
		return -1
	}
	return s[len(s)-1]
}

func (l *commitLog) all(p int32) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.commits[p]...)
}

// TestCommitContiguous acknowledges out of order and checks, through the
// broker, that the committed offset only ever reaches just past the highest
// contiguous acknowledged offset and never moves backwards.
func TestCommitContiguous(t *testing.T) {
	const topic, group = "contig", "g-contig"
	c := startCluster(t, 1, topic)
	commits := observeCommits(c, group)
	cfg := testConfig(c.Addrs())
	cfg.CommitCount = 1 // commit after every ack: exposes any premature commit
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)

	for i := 0; i < 10; i++ {
		if err := a.Publish(ctx, topic, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]eventstream.Message, 0, 10)
	for len(msgs) < 10 {
		select {
		case m := <-ch:
			if got := m.(*kafka.Message).Offset(); got != int64(len(msgs)) {
				t.Fatalf("offset %d delivered at position %d", got, len(msgs))
			}
			msgs = append(msgs, m)
		case <-ctx.Done():
			t.Fatalf("received %d of 10", len(msgs))
		}
	}
	acked := make([]bool, 10)
	bound := func() int64 { // just past the contiguous acked prefix
		n := 0
		for n < 10 && acked[n] {
			n++
		}
		return int64(n)
	}
	steps := []struct {
		ack  []int
		want int64 // committed offset to wait for; -1: no commit may happen
	}{
		{[]int{2, 3, 5}, -1},
		{[]int{0}, 1},
		{[]int{1}, 4},
		{[]int{9, 7, 8}, 4}, // still a gap at 4
		{[]int{4}, 6},
		{[]int{6}, 10},
	}
	for _, s := range steps {
		for _, i := range s.ack {
			acked[i] = true
			if err := a.Ack(ctx, group, msgs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if s.want >= 0 {
			waitFor(t, 10*time.Second, fmt.Sprintf("commit of %d", s.want), func() bool {
				return committed(t, c.Addrs(), group, topic)[0] == s.want
			})
		}
		for _, o := range commits.all(0) {
			if o > bound() {
				t.Fatalf("committed %d past the gap (contiguous bound %d); commits %v", o, bound(), commits.all(0))
			}
		}
	}
	// Duplicate acks change nothing.
	if err := a.Ack(ctx, group, msgs[3]); err != nil {
		t.Fatal(err)
	}
	cancel()
	all := commits.all(0)
	for i := 1; i < len(all); i++ {
		if all[i] < all[i-1] {
			t.Fatalf("commit went backwards: %v", all)
		}
	}
	if got := committed(t, c.Addrs(), group, topic)[0]; got != 10 {
		t.Fatalf("final committed offset %d, want 10", got)
	}
}

// TestCancelThenResubscribe checks that unacknowledged messages of a
// cancelled subscription go to the next subscription of the group, and that
// nothing acknowledged is delivered again.
func TestCancelThenResubscribe(t *testing.T) {
	const topic, group = "resub", "g-resub"
	c := startCluster(t, 3, topic)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 60*time.Second)
	const n = 60
	for _, v := range vals("m", n) {
		if err := a.Publish(ctx, topic, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	ackedVals := map[string]bool{}
	for i := 0; i < 30; i++ {
		select {
		case m := <-ch:
			if i < 15 { // a prefix of every partition: committable exactly
				ackedVals[string(m.Value())] = true
				if err := a.Ack(ctx, group, m); err != nil {
					t.Fatal(err)
				}
			}
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	cancel()
	for range ch { // closed by cancel
	}
	ch2, cancel2, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	need := n - len(ackedVals)
	got := map[string]bool{}
	for len(got) < need {
		select {
		case m := <-ch2:
			v := string(m.Value())
			if ackedVals[v] {
				// The final commit on cancel covered it.
				t.Fatalf("acknowledged %q delivered again", v)
			}
			got[v] = true
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("second subscription got %d of %d", len(got), need)
		}
	}
}

// TestCloseFlushesCommits: with periodic commits effectively off, Close
// still commits everything that was acknowledged.
func TestCloseFlushesCommits(t *testing.T) {
	const topic, group = "flush", "g-flush"
	c := startCluster(t, 2, topic)
	cfg := testConfig(c.Addrs())
	cfg.CommitInterval = time.Hour
	cfg.CommitCount = 1 << 30
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	const n = 20
	for _, v := range vals("f", n) {
		if err := a.Publish(ctx, topic, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	ch, _, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case m := <-ch:
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("timeout")
		}
	}
	if got := committed(t, c.Addrs(), group, topic); len(got) != 0 {
		t.Fatalf("committed %v before Close with periodic commits off", got)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, o := range committed(t, c.Addrs(), group, topic) {
		total += o
	}
	if total != n {
		t.Fatalf("committed %d after Close, want %d", total, n)
	}
}

// TestCommitsByTopicID: where the broker takes commits naming the topic by
// id (kfake does, as Kafka 4.1 and later), every commit does, and the
// metadata is not asked before each commit (the broker itself refuses a
// commit to a topic deleted meanwhile, even one created again).
func TestCommitsByTopicID(t *testing.T) {
	const topic, group = "byid", "g-byid"
	c := startCluster(t, 1, topic)
	var byID, byName, metadata atomic.Int64
	c.Fake.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		if req := r.(*kmsg.OffsetCommitRequest); req.Group == group {
			if req.GetVersion() >= 10 && req.Topics[0].TopicID != ([16]byte{}) {
				byID.Add(1)
			} else {
				byName.Add(1)
			}
		}
		return nil, nil, false
	})
	c.Fake.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		metadata.Add(1)
		return nil, nil, false
	})
	cfg := testConfig(c.Addrs())
	cfg.CommitCount = 1 // a commit per ack
	cfg.PartitionWatchInterval = time.Hour
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	want := vals("m", 20)
	for _, v := range want {
		if err := a.Publish(ctx, topic, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	m0 := metadata.Load()
	for i := range want {
		select {
		case m := <-ch:
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("received %d of %d", i, len(want))
		}
		// One ack at a time, each committed before the next (counted
		// by the broker hook, not asked with a client that would send
		// metadata requests of its own).
		waitFor(t, 10*time.Second, "the ack to be committed", func() bool {
			return byID.Load()+byName.Load() >= int64(i+1)
		})
	}
	if byName.Load() != 0 || byID.Load() < int64(len(want)) {
		t.Fatalf("%d commits by topic id and %d by name, want at least %d and 0", byID.Load(), byName.Load(), len(want))
	}
	if n := metadata.Load() - m0; n >= int64(len(want)) {
		t.Errorf("%d metadata requests for %d commits: the metadata is still asked before each commit", n, len(want))
	}
}
