package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupLog records, through the embedded broker's request hooks, the
// JoinGroup member ids and the heartbeats of a group.
type groupLog struct {
	mu         sync.Mutex
	joins      []string               // member id of every JoinGroup, in order
	heartbeats map[string][]time.Time // member id -> when it heartbeated
}

func (l *groupLog) heartbeatsBetween(id string, from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.heartbeats[id] {
		if !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

// TestRejoinHeldLongerThanSessionTimeout: the coordinator holds a member's
// rejoin for longer than the session timeout plus the connection timeout
// (here: the broker's hook sleeps it), as it may while it waits for other
// members. The member waits for the answer instead of timing out and
// asking again, and keeps heartbeating meanwhile, so it is not expired,
// keeps its member id and gets partitions again once the rebalance
// completes; a client that stopped heartbeating while rejoining would be
// dropped from the group and have to start over as a new member.
func TestRejoinHeldLongerThanSessionTimeout(t *testing.T) {
	const topic, group = "held-join", "g-held-join"
	c := startCluster(t, 2, topic)
	cfg := testConfig(c.Addrs()) // SessionTimeout 3s
	// Held longer than a client that gives a join its connection timeout
	// plus the session timeout would wait, and within the rebalance
	// timeout, so the coordinator still waits for the member.
	cfg.DialTimeout = time.Second
	cfg.RebalanceTimeout = 10 * time.Second
	hold := cfg.SessionTimeout + cfg.DialTimeout + time.Second
	log := &groupLog{heartbeats: make(map[string][]time.Time)}

	var holdID string // the member whose next rejoin is held
	var heldFrom, heldTo time.Time
	c.Fake.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		jr := req.(*kmsg.JoinGroupRequest)
		if jr.Group != group {
			return nil, nil, false
		}
		log.mu.Lock()
		log.joins = append(log.joins, jr.MemberID)
		sleep := jr.MemberID != "" && jr.MemberID == holdID
		if sleep {
			holdID = "" // once
			heldFrom = time.Now()
		}
		log.mu.Unlock()
		if sleep {
			c.Fake.SleepControl(func() { time.Sleep(hold) })
			log.mu.Lock()
			heldTo = time.Now()
			log.mu.Unlock()
		}
		return nil, nil, false
	})
	c.Fake.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		hr := req.(*kmsg.HeartbeatRequest)
		log.mu.Lock()
		log.heartbeats[hr.MemberID] = append(log.heartbeats[hr.MemberID], time.Now())
		log.mu.Unlock()
		return nil, nil, false
	})
	ctx := ctxT(t, 60*time.Second)
	pub := newAdapter(t, cfg)
	publish := func(prefix string, n int) { publishVals(t, ctx, pub, topic, prefix, n) }
	seen1, stop1 := subscribeMember(t, ctx, cfg, topic, group)
	publish("a", 20)
	waitFor(t, 20*time.Second, "member 1 consuming", func() bool { return seen1.distinct() >= 20 })

	log.mu.Lock()
	id1 := log.joins[len(log.joins)-1]
	holdID = id1
	log.mu.Unlock()
	if id1 == "" {
		t.Fatal("member 1 joined without a member id")
	}

	// A second member makes the group rebalance; member 1's rejoin is held.
	seen2, stop2 := subscribeMember(t, ctx, cfg, topic, group)
	waitFor(t, 30*time.Second, "member 1's rejoin to be held and released", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return !heldTo.IsZero()
	})
	publish("b", 200)
	waitFor(t, 30*time.Second, "every message consumed after the rebalance", func() bool {
		return seen1.distinct()+seen2.distinct() >= 220
	})
	if seen1.distinct() == 20 || seen2.distinct() == 0 {
		t.Errorf("after the rebalance member 1 consumed %d and member 2 %d messages, want both some", seen1.distinct()-20, seen2.distinct())
	}

	log.mu.Lock()
	from, to := heldFrom, heldTo
	var joins1 []string
	sawNew := 0
	for _, id := range log.joins {
		if id == id1 {
			joins1 = append(joins1, id)
		}
		if id == "" {
			sawNew++
		}
	}
	log.mu.Unlock()
	// Two members joined as new ones (member 1 and member 2), nobody again:
	// a member that was expired would show up as one more JoinGroup without
	// a member id.
	if sawNew != 2 {
		t.Errorf("%d JoinGroup requests without a member id, want 2 (a member was expired and started over)", sawNew)
	}
	// Its first join with the id and the held rejoin; one more would mean
	// it gave up waiting and asked again.
	if len(joins1) != 2 {
		t.Errorf("member 1 sent %d JoinGroup requests with its member id, want 2", len(joins1))
	}
	// Heartbeats went on while the rejoin was held (every 100ms; ask for a
	// third of that to leave room for a slow machine).
	if n, want := log.heartbeatsBetween(id1, from, to), int(hold/cfg.HeartbeatInterval/3); n < want {
		t.Errorf("member 1 heartbeated %d times in the %v its rejoin was held, want at least %d", n, to.Sub(from).Round(time.Millisecond), want)
	}
	stop1()
	stop2()
}

// TestIdleMemberTakesOver: of two members of a one-partition group, one
// owns the partition and the other has nothing. When the owner stops
// heartbeating (the broker's hooks hold its heartbeats and commits, as if it
// hung), the
// coordinator drops it after the session timeout and the idle member, which
// kept heartbeating, learns of the rebalance and takes the partition over
// within the session timeout plus a few heartbeats.
func TestIdleMemberTakesOver(t *testing.T) {
	const topic, group = "idle-takeover", "g-idle-takeover"
	c := startCluster(t, 1, topic)
	cfg := testConfig(c.Addrs()) // SessionTimeout 3s, HeartbeatInterval 100ms
	ctx := ctxT(t, 60*time.Second)

	var mu sync.Mutex
	var ids []string // member ids in the order they first joined
	var hung string  // member whose heartbeats are held
	release := make(chan struct{})
	c.Fake.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		if jr := req.(*kmsg.JoinGroupRequest); jr.Group == group && jr.MemberID != "" {
			mu.Lock()
			if !slices.Contains(ids, jr.MemberID) {
				ids = append(ids, jr.MemberID)
			}
			mu.Unlock()
		}
		return nil, nil, false
	})
	// A hung member sends neither heartbeats nor commits (the coordinator
	// counts a commit as a sign of life too).
	holdFrom := func(memberID func(kmsg.Request) string) func(kmsg.Request) (kmsg.Response, error, bool) {
		return func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.Fake.KeepControl()
			mu.Lock()
			hold := hung != "" && memberID(req) == hung
			mu.Unlock()
			if hold {
				c.Fake.SleepControl(func() { <-release })
			}
			return nil, nil, false
		}
	}
	c.Fake.ControlKey(int16(kmsg.Heartbeat), holdFrom(func(r kmsg.Request) string { return r.(*kmsg.HeartbeatRequest).MemberID }))
	c.Fake.ControlKey(int16(kmsg.OffsetCommit), holdFrom(func(r kmsg.Request) string { return r.(*kmsg.OffsetCommitRequest).MemberID }))

	pub := newAdapter(t, cfg)
	var seq int
	publish := func() {
		t.Helper()
		seq++
		if err := pub.Publish(ctx, topic, []byte(fmt.Sprintf("m-%d", seq))); err != nil {
			t.Fatal(err)
		}
	}
	subscribe := func() (*collector, func()) { return subscribeMember(t, ctx, cfg, topic, group) }
	col1, stop1 := subscribe()
	defer stop1()
	publish()
	waitFor(t, 20*time.Second, "member 1 consuming", func() bool { return col1.distinct() == 1 })
	col2, stop2 := subscribe()
	defer stop2()
	defer close(release) // before the members stop
	waitFor(t, 20*time.Second, "member 2 to join", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ids) == 2
	})
	// Wait for the generation with both members and ask the broker which
	// one owns the partition.
	var ownerID string
	waitFor(t, 20*time.Second, "the group Stable with both members", func() bool {
		ownerID = partitionOwner(t, c.Addrs(), group, 2)
		return ownerID != ""
	})
	owner, idle := col1, col2
	if ownerID == ids[1] {
		owner, idle = col2, col1
	}
	base := idle.distinct()
	mu.Lock()
	hung = ownerID
	mu.Unlock()
	hungAt := time.Now()
	limit := cfg.SessionTimeout + 3*time.Second
	waitFor(t, limit, "the idle member to take the partition over", func() bool {
		publish() // one probe per poll of waitFor
		return idle.distinct() > base
	})
	t.Logf("the idle member consumed %v after the owner stopped heartbeating (session timeout %v)",
		time.Since(hungAt).Round(time.Millisecond), cfg.SessionTimeout)
	if owner.distinct() == 0 {
		t.Error("the owner never consumed")
	}
}

// partitionOwner returns the member of group that is assigned partition 0
// when the group is Stable with members members, "" otherwise.
func partitionOwner(t *testing.T, brokers []string, group string, members int) string {
	t.Helper()
	cl := kgoClient(t, brokers)
	defer cl.Close()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Groups) != 1 {
		return ""
	}
	g := resp.Groups[0]
	if g.State != "Stable" || len(g.Members) != members {
		return ""
	}
	for _, m := range g.Members {
		var asg kmsg.ConsumerMemberAssignment
		if err := asg.ReadFrom(m.MemberAssignment); err != nil {
			t.Fatalf("assignment of %s: %v", m.MemberID, err)
		}
		for _, at := range asg.Topics {
			if slices.Contains(at.Partitions, 0) {
				return m.MemberID
			}
		}
	}
	return ""
}

// TestCoordinatorMoves: the group's coordinator moves to another broker
// several times while two members consume. Requests to the old coordinator
// are answered with NOT_COORDINATOR; the members look the coordinator up
// again and go on: every message is consumed and, once both left, the
// committed offsets are at the end of every partition.
func TestCoordinatorMoves(t *testing.T) {
	const topic, group, partitions = "coord-moves", "g-coord-moves", 4
	c := kafkatest.NewCluster(t, kfake.NumBrokers(3), kfake.SeedTopics(partitions, topic))
	brokers := c.Addrs()
	cfg := testConfig(brokers)
	ctx := ctxT(t, 60*time.Second)
	pub := newAdapter(t, cfg)
	seen := newCollector()
	m1 := startMember(t, brokers, topic, group, seen)
	m2 := startMember(t, brokers, topic, group, seen)
	if _, err := c.Fake.WaitGroupStable(ctx, group, 2); err != nil {
		t.Fatalf("group not stable with both members: %v", err)
	}
	n := 0
	publish := func(k int) {
		t.Helper()
		for range k {
			r := eventstream.Record{Key: []byte(fmt.Sprintf("k%d", n%11)), Value: []byte(fmt.Sprintf("m-%d", n))}
			if err := pub.PublishRecord(ctx, topic, r); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	for move := 0; move < 4; move++ {
		publish(50)
		waitFor(t, 30*time.Second, fmt.Sprintf("%d messages consumed", n), func() bool { return seen.distinct() >= n })
		from := c.Fake.CoordinatorFor(group)
		for c.Fake.CoordinatorFor(group) == from {
			c.Fake.RehashCoordinators()
		}
		t.Logf("coordinator moved from broker %d to %d", from, c.Fake.CoordinatorFor(group))
	}
	publish(50)
	waitFor(t, 30*time.Second, fmt.Sprintf("all %d messages consumed", n), func() bool { return seen.distinct() >= n })
	if m1.got.Load() == 0 || m2.got.Load() == 0 {
		t.Errorf("member 1 got %d and member 2 %d messages, want both some", m1.got.Load(), m2.got.Load())
	}
	m1.leave()
	m2.leave()
	want := endOffsets(t, brokers, topic, partitions)
	maps.DeleteFunc(want, func(_ int32, end int64) bool { return end == 0 }) // nothing to commit
	if got := committed(t, brokers, group, topic); !maps.Equal(got, want) {
		t.Errorf("committed offsets %v after both members left, want the end offsets %v", got, want)
	}
}

// TestJoinRetryKeepsMemberID: the connection of a member's rejoin breaks.
// The member retries with the member id it has (it is still a member of the
// group as far as the coordinator knows), not as a new member, which would
// make the coordinator wait for the old one until its session expired.
func TestJoinRetryKeepsMemberID(t *testing.T) {
	const topic, group = "join-retry", "g-join-retry"
	c := startCluster(t, 2, topic)
	cfg := testConfig(c.Addrs())
	ctx := ctxT(t, 60*time.Second)

	var mu sync.Mutex
	var joins []string // member id of every JoinGroup
	var dropID string  // the member whose next join loses its connection
	dropped := false
	c.Fake.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		jr := req.(*kmsg.JoinGroupRequest)
		if jr.Group != group {
			return nil, nil, false
		}
		mu.Lock()
		defer mu.Unlock()
		joins = append(joins, jr.MemberID)
		if !dropped && dropID != "" && jr.MemberID == dropID {
			dropped = true
			return nil, errors.New("injected: connection lost during the join"), true
		}
		return nil, nil, false
	})
	pub := newAdapter(t, cfg)
	publish := func(prefix string, n int) { publishVals(t, ctx, pub, topic, prefix, n) }
	subscribe := func() (*collector, func()) { return subscribeMember(t, ctx, cfg, topic, group) }
	col1, stop1 := subscribe()
	defer stop1()
	publish("a", 20)
	waitFor(t, 20*time.Second, "member 1 consuming", func() bool { return col1.distinct() == 20 })
	mu.Lock()
	id1 := joins[len(joins)-1]
	dropID = id1
	mu.Unlock()

	col2, stop2 := subscribe()
	defer stop2()
	if _, err := c.Fake.WaitGroupStable(ctx, group, 2); err != nil {
		t.Fatalf("group not stable with both members: %v", err)
	}
	publish("b", 100)
	waitFor(t, 20*time.Second, "every message consumed", func() bool { return col1.distinct()+col2.distinct() >= 120 })

	mu.Lock()
	defer mu.Unlock()
	if !dropped {
		t.Fatal("member 1 did not rejoin")
	}
	var withID1, anonymous int
	for _, id := range joins {
		switch id {
		case id1:
			withID1++
		case "":
			anonymous++
		}
	}
	if anonymous != 2 {
		t.Errorf("%d JoinGroup requests without a member id, want 2 (member 1 started over as a new member)", anonymous)
	}
	if withID1 < 3 {
		t.Errorf("member 1 sent %d JoinGroup requests with its member id, want at least 3 (first join, dropped rejoin, retry)", withID1)
	}
}

// TestFinalCommitRetriedWhenEnding: the commit a subscription makes as it
// ends is retried over transient errors. With periodic commits out of the
// way, the broker answers the first two OffsetCommits with
// COORDINATOR_LOAD_IN_PROGRESS; once cancel returned, every acknowledged
// offset is committed all the same.
func TestFinalCommitRetriedWhenEnding(t *testing.T) {
	const topic, group, n = "final-commit", "g-final-commit", 20
	c := startCluster(t, 2, topic)
	cfg := testConfig(c.Addrs())
	cfg.CommitInterval = time.Hour // only the final commit
	cfg.CommitCount = 1 << 20
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 60*time.Second)
	for i := range n {
		if err := a.Publish(ctx, topic, fmt.Appendf(nil, "m-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		select {
		case m := <-ch:
			if err := a.Ack(ctx, group, m); err != nil {
				t.Fatalf("ack: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("timed out waiting for the messages")
		}
	}
	if got := committed(t, c.Addrs(), group, topic); len(got) != 0 {
		t.Fatalf("committed %v before the subscription ended; the test needs the final commit to be the only one", got)
	}
	faults := c.Fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group,
		Err: kerr.CoordinatorLoadInProgress, Count: 2})
	cancel()
	if h := faults.Hits(); h != 2 {
		t.Fatalf("%d OffsetCommits faulted, want 2", h)
	}
	want := endOffsets(t, c.Addrs(), topic, 2)
	if got := committed(t, c.Addrs(), group, topic); !maps.Equal(got, want) {
		t.Fatalf("committed %v after the subscription ended, want the end offsets %v", got, want)
	}
}

// subscribeMember subscribes a new adapter with cfg to topic in group and
// acknowledges everything it receives into the returned collector; stop ends
// the subscription and waits for the consumer.
func subscribeMember(t *testing.T, ctx context.Context, cfg kafka.Config, topic, group string) (col *collector, stop func()) {
	t.Helper()
	a := newAdapter(t, cfg)
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	col = newCollector()
	wait := consumeAll(t, a, group, ch, col)
	return col, func() { cancel(); wait() }
}

// publishVals publishes vals(prefix, n) to topic through a.
func publishVals(t *testing.T, ctx context.Context, a *kafka.Adapter, topic, prefix string, n int) {
	t.Helper()
	for _, v := range vals(prefix, n) {
		if err := a.Publish(ctx, topic, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
}
