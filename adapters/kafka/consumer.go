package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	retrywait "github.com/eventstream-go/eventstream/internal/backoff"
	"github.com/eventstream-go/eventstream/internal/headerset"
	kafkago "github.com/segmentio/kafka-go"
)

// subscription is one member of a consumer group.
type subscription struct {
	a      *Adapter
	topic  string
	group  string
	out    chan eventstream.Message
	ctx    context.Context
	cancel context.CancelFunc
	member *groupMember
	done   chan struct{}

	// suspect wakes the topic watcher when a fetch or a commit was told
	// the topic or partition is unknown.
	suspect chan struct{}
	// gone is set when the topic was found deleted; the subscription
	// then ends without committing.
	gone atomic.Bool

	idMu    sync.Mutex
	topicID [16]byte // the topic's id when first seen; zero while unknown
}

// Subscribe joins consumer group groupID on topic and returns the channel of
// delivered messages (*Message values) and a cancel function.
//
// Each assigned partition is fetched by its own goroutine, which may have up
// to Config.MaxInFlightPerPartition messages delivered but not yet
// acknowledged. Acknowledged offsets are committed every
// Config.CommitInterval, after Config.CommitCount acks, when the partitions
// are given up in a rebalance (after waiting up to Config.RevokeTimeout for
// in-flight messages) and when the subscription ends. The committed offset
// of a partition only ever moves to just past the highest offset below which
// every delivered message was acknowledged.
//
// The subscription ends when cancel is called, ctx is done or the adapter is
// closed: it stops fetching, commits what was acknowledged, leaves the group
// and closes the channel once every goroutine returned. cancel waits for
// that and is idempotent; a group join request outstanding at that moment
// is abandoned.
//
// Subscribe returns before the member joined the group; messages published
// meanwhile are not missed with StartEarliest. A missing topic is reported
// at once with an error wrapping ErrUnknownTopic (unless
// Config.AutoCreateTopics is set), an invalid name with ErrInvalidTopic;
// other broker problems are retried in the background and logged.
func (a *Adapter) Subscribe(ctx context.Context, topic, groupID string) (<-chan eventstream.Message, func(), error) {
	if err := checkTopic(topic); err != nil {
		return nil, nil, fmt.Errorf("kafka: subscribe: %w", err)
	}
	if groupID == "" {
		return nil, nil, fmt.Errorf("kafka: subscribe to %s: %w", topic, eventstream.ErrNoConsumerGroup)
	}
	if a.isClosing() {
		return nil, nil, fmt.Errorf("kafka: subscribe to %s: %w", topic, eventstream.ErrAdapterClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("kafka: subscribe to %s: %w", topic, err)
	}
	if _, err := a.partitions(ctx, topic); err != nil {
		return nil, nil, fmt.Errorf("kafka: subscribe to %s: %w", topic, err)
	}
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return nil, nil, fmt.Errorf("kafka: subscribe to %s: %w", topic, eventstream.ErrAdapterClosed)
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{
		a:       a,
		topic:   topic,
		group:   groupID,
		out:     make(chan eventstream.Message, outBuffer),
		ctx:     sctx,
		cancel:  cancel,
		member:  newGroupMember(a, groupID, topic, a.log.With("topic", topic, "group", groupID)),
		done:    make(chan struct{}),
		suspect: make(chan struct{}, 1),
	}
	a.smu.Lock()
	a.subs[s] = struct{}{}
	a.smu.Unlock()
	a.mu.RUnlock()

	go s.run()
	return s.out, s.stop, nil
}

// stop ends the subscription and waits until its channel is closed.
func (s *subscription) stop() {
	s.cancel()
	<-s.done
}

// run joins generation after generation until the subscription ends, then
// leaves the group. The heartbeat loop runs alongside for the whole time.
func (s *subscription) run() {
	log := s.a.log.With("topic", s.topic, "group", s.group)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		s.member.heartbeatLoop(s.ctx)
	}()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		s.watchTopic(s.ctx)
	}()
	defer func() {
		<-hbDone
		<-watchDone
		s.member.leave()
		close(s.out)
		s.a.smu.Lock()
		delete(s.a.subs, s)
		s.a.smu.Unlock()
		close(s.done)
	}()
	failures := 0
	for s.ctx.Err() == nil {
		mg, err := s.member.join(s.ctx)
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			failures++
			log.Warn("kafka: joining consumer group failed, retrying", "error", err, "attempt", failures)
			if sleepCtx(s.ctx, backoff(failures)) != nil {
				return
			}
			continue
		}
		failures = 0
		s.runGeneration(mg)
	}
}

// generation is this member's share of one group generation.
type generation struct {
	s         *subscription
	id        int32
	memberID  string
	ctx       context.Context // done when the generation ends
	end       context.CancelFunc
	trackers  map[int]*partTracker
	commitNow chan struct{}
	acks      atomic.Int64 // acks since the last commit
	partsWG   sync.WaitGroup
	wg        sync.WaitGroup // every goroutine of the generation
}

// runGeneration consumes the partitions assigned in mg until the
// generation ends (the coordinator starts a rebalance, the partition count
// changes or the subscription ends) and returns once its last commit was
// made.
func (s *subscription) runGeneration(mg memberGen) {
	gctx, end := context.WithCancel(s.ctx)
	defer end()
	s.member.enter(mg, end)
	defer s.member.exit()
	s.a.log.Info("kafka: joined consumer group generation", "topic", s.topic, "group", s.group,
		"generation", mg.id, "member", mg.memberID, "partitions", mg.partitions)

	offsets, err := s.member.fetchOffsets(gctx, mg.partitions)
	if err != nil {
		return // the generation ended first
	}
	// Learn the topic's id before the first fetch, so that a topic created
	// again under the same name is told apart from the one subscribed to.
	if id, exists, err := s.member.topicState(gctx); err == nil && exists && !s.sameID(id) {
		s.endGone("the topic was deleted and created again (its topic id changed)")
		return
	}
	g := &generation{
		s:         s,
		id:        mg.id,
		memberID:  mg.memberID,
		ctx:       gctx,
		end:       end,
		trackers:  make(map[int]*partTracker),
		commitNow: make(chan struct{}, 1),
	}
	for _, p := range mg.partitions {
		g.trackers[p] = newPartTracker(p, offsets[p], s.a.cfg.MaxInFlightPerPartition, g.acked)
	}
	g.partsWG.Add(len(g.trackers))
	for _, tr := range g.trackers {
		g.start(func(ctx context.Context) {
			defer g.partsWG.Done()
			g.consume(ctx, tr)
		})
	}
	g.start(g.commitLoop)
	s.a.forgetTopic(s.topic) // compare with the count the leader just assigned
	if n, err := s.a.existingPartitions(gctx, s.topic); err == nil {
		g.start(func(ctx context.Context) { g.watchPartitions(ctx, n) })
	}
	<-gctx.Done()
	g.wg.Wait()
}

// start runs fn in a goroutine of the generation with its context.
func (g *generation) start(fn func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(g.ctx)
	}()
}

// watchPartitions ends the generation, so that the member rejoins and the
// group rebalances, when the topic's partition count differs from n.
func (g *generation) watchPartitions(ctx context.Context, n int) {
	t := time.NewTicker(g.s.a.cfg.PartitionWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.s.a.forgetTopic(g.s.topic)
			if m, err := g.s.a.existingPartitions(ctx, g.s.topic); err == nil && m != n {
				g.s.a.log.Info("kafka: partition count changed, rebalancing", "topic", g.s.topic,
					"group", g.s.group, "was", n, "now", m)
				g.end()
				return
			}
		}
	}
}

// acked is called after every counted ack.
func (g *generation) acked() {
	if g.acks.Add(1) >= int64(g.s.a.cfg.CommitCount) {
		g.acks.Store(0)
		select {
		case g.commitNow <- struct{}{}:
		default:
		}
	}
}

// rebalancing reports whether the generation ends while the subscription
// goes on (the partitions are being given up in a rebalance).
func (g *generation) rebalancing() bool {
	return g.s.ctx.Err() == nil && !g.s.a.isClosing()
}

func (g *generation) consume(ctx context.Context, tr *partTracker) {
	s, a := g.s, g.s.a
	log := a.log.With("topic", s.topic, "group", s.group, "partition", tr.partition)
	offset := tr.start
	f := &fetcher{a: a, topic: s.topic, partition: int32(tr.partition), maxInflate: a.cfg.MaxDecompressedBatchBytes}
	defer f.close()
	failures := 0
	retry := func(what string, err error) bool {
		failures++
		if failures == 1 || failures%20 == 0 {
			log.Warn("kafka: "+what+" failed, retrying", "error", err, "attempt", failures)
		}
		return sleepCtx(ctx, backoff(failures)) == nil
	}
	for ctx.Err() == nil {
		if offset < 0 {
			o, err := a.resolveOffset(ctx, s.topic, tr.partition, offset)
			if err != nil {
				if ctx.Err() != nil || !retry("listing offsets", err) {
					break
				}
				continue
			}
			offset = o
		}
		if !tr.waitCapacity(ctx) {
			break
		}
		var stop bool // the generation ended while records were delivered
		deliver := func(m *Message) bool {
			m.group, m.tracker = s.group, tr
			if !tr.reserve(ctx, m.offset) {
				stop = true
				return false
			}
			select {
			case s.out <- m:
			default: // the channel is full: wait, or give up when the generation ends
				select {
				case s.out <- m:
				case <-ctx.Done():
					tr.abandon(m.offset)
					stop = true
					return false
				}
			}
			return true
		}
		next, err := f.fetch(ctx, offset, func(r *fetchedRecord) bool { return deliver(f.message(r)) })
		offset = next
		if stop {
			break
		}
		var bad *badBatch
		if errors.As(err, &bad) {
			// Every fetch would return this batch unchanged: hand the bus
			// one undecodable message for it (it dead-letters it, then acks
			// it, which moves the partition past the batch).
			log.Error("kafka: a record batch cannot be decoded; delivering it as one undecodable message",
				"offsets", fmt.Sprintf("%d-%d", bad.first, bad.last), "error", bad.err)
			m := &Message{topic: s.topic, partition: tr.partition, offset: bad.last, value: append([]byte{}, bad.raw...), ts: time.Now(), bad: bad,
				headers: &headerset.Set{List: []headerset.Header{
					{Name: HeaderStandInOffsets, Value: fmt.Sprintf("%d-%d", bad.first, bad.last)},
					{Name: HeaderStandInBytes, Value: strconv.Itoa(bad.size)},
				}}}
			if !deliver(m) {
				break
			}
			offset = bad.last + 1
			failures = 0
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, kafkago.UnknownTopicOrPartition) {
				s.suspectGone()
			}
			if errors.Is(err, kafkago.OffsetOutOfRange) {
				if tr.delivered() {
					// The log no longer reaches the offsets this generation
					// delivered from (truncated, e.g. by an unclean leader
					// election). A reset could go below offsets already in
					// the tracker, whose window only moves up: start over in
					// a new generation, from the committed offsets.
					log.Warn("kafka: offset out of range after records were delivered; rejoining the group", "offset", offset)
					g.end()
					break
				}
				log.Warn("kafka: offset out of range, resetting", "offset", offset)
				offset = a.cfg.kafkaStartOffset()
				continue
			}
			if errors.Is(err, errBadBatch) || errors.Is(err, errBatchTooLarge) {
				// A batch whose extent cannot be trusted (a CRC mismatch, a
				// bad length, a format of the oldest versions that does not
				// decode): a corrupt log, or bytes damaged on the way. Stay
				// at its offset (skipping would lose records nobody saw),
				// say so loudly, and retry slowly.
				failures++
				log.Error("kafka: cannot decode the record batch at the fetch offset; the partition stays there until it can",
					"offset", offset, "error", err, "attempt", failures)
				if sleepCtx(ctx, poisonRetry) != nil {
					break
				}
				continue
			}
			if !retry("fetch", err) {
				break
			}
			continue
		}
		failures = 0
	}
	if g.rebalancing() {
		// Give in-flight messages a chance to be acknowledged before the
		// final commit hands the partition over.
		if !tr.waitDrained(s.ctx, a.cfg.RevokeTimeout) && g.rebalancing() {
			log.Info("kafka: partition revoked with unacknowledged messages; they will be redelivered")
		}
	}
}

// poisonRetry is the wait before fetching again a record batch that could
// not be decoded (errBadBatch, errBatchTooLarge).
const poisonRetry = 5 * time.Second

func (g *generation) commitLoop(ctx context.Context) {
	t := time.NewTicker(g.s.a.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.partsWG.Wait()
			g.commit(true)
			return
		case <-t.C:
			g.commit(false)
		case <-g.commitNow:
			g.commit(false)
		}
	}
}

// finalCommitBackoff is the wait before the second and third attempt of a
// generation's final commit.
var finalCommitBackoff = retrywait.Policy{Initial: 160 * time.Millisecond, Exponential: true}

// commit commits every partition whose committable offset advanced. final
// revokes the trackers first, so acks arriving later are dropped rather than
// committed under another generation, and retries transient failures up to
// three attempts in all. The waits between them end when the subscription
// ends or the adapter closes: the remaining attempts are then made at once,
// so that Close neither waits for a backoff nor gives the commit up.
func (g *generation) commit(final bool) {
	offsets := make(map[int]int64)
	for p, tr := range g.trackers {
		if off, ok := tr.pending(final); ok {
			offsets[p] = off
		}
	}
	if len(offsets) == 0 {
		return
	}
	if g.s.gone.Load() {
		// The topic was deleted (the subscription's error log said so):
		// these offsets cannot be committed, and must not be committed
		// to a topic of the same name created since.
		g.s.a.log.Debug("kafka: dropped the pending commits of a deleted topic", "topic", g.s.topic,
			"group", g.s.group, "offsets", offsets)
		return
	}
	g.acks.Store(0)
	log := g.s.a.log.With("topic", g.s.topic, "group", g.s.group, "generation", g.id)
	attempts := 1
	if final {
		attempts = 3
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			// false means stopped early; the attempt is made all the same.
			_ = retrywait.Sleep(g.s.ctx, g.s.a.closing, finalCommitBackoff.Delay(i))
		}
		err = g.s.member.commit(g.id, g.memberID, offsets, g.s.knownID(), g.s.topicUnchanged)
		if errors.Is(err, errCommitSkipped) {
			// Kept pending (unless the topic was deleted): the next commit
			// tries again.
			return
		}
		if err == nil {
			for p, off := range offsets {
				g.trackers[p].setCommitted(off)
			}
			log.Debug("kafka: committed offsets", "offsets", offsets)
			return
		}
		if errors.Is(err, kafkago.IllegalGeneration) || errors.Is(err, kafkago.UnknownMemberId) ||
			errors.Is(err, kafkago.RebalanceInProgress) {
			break
		}
		if errors.Is(err, kafkago.UnknownTopicOrPartition) || errors.Is(err, kafkago.UnknownTopicID) {
			g.s.suspectGone()
			break
		}
	}
	log.Warn("kafka: committing offsets failed; unacknowledged messages will be redelivered", "offsets", offsets, "error", err)
}

// resolveOffset turns kafka-go's FirstOffset/LastOffset into a real offset.
func (a *Adapter) resolveOffset(ctx context.Context, topic string, partition int, which int64) (int64, error) {
	resp, err := a.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{
		Topics: map[string][]kafkago.OffsetRequest{topic: {{Partition: partition, Timestamp: which}}},
	})
	if err != nil {
		return 0, err
	}
	for _, po := range resp.Topics[topic] {
		if po.Partition != partition {
			continue
		}
		if po.Error != nil {
			return 0, po.Error
		}
		if which == kafkago.LastOffset {
			return po.LastOffset, nil
		}
		return po.FirstOffset, nil
	}
	return 0, fmt.Errorf("kafka: no offsets listed for %s[%d]", topic, partition)
}

// Ack records that groupID processed msg. Acks may come in any order and
// from any goroutine; a message's offset is committed once it and every
// earlier message of its partition delivered in the same generation were
// acknowledged. Acknowledging twice, after the subscription ended, after
// the partition was given up in a rebalance or after Close is harmless and
// returns nil (such a message is redelivered if its ack was not committed).
// Ack returns an error for a message this adapter did not deliver to
// groupID.
func (a *Adapter) Ack(_ context.Context, groupID string, msg eventstream.Message) error {
	m, ok := msg.(*Message)
	if !ok || m == nil || m.tracker == nil {
		return fmt.Errorf("kafka: ack: %T is not a message delivered by this adapter", msg)
	}
	if m.group != groupID {
		return fmt.Errorf("kafka: ack: message was delivered to group %q, not %q", m.group, groupID)
	}
	m.tracker.ack(m.offset)
	return nil
}

// Deleted topics. Real Kafka briefly calls a topic created a moment ago
// unknown, so one UNKNOWN_TOPIC_OR_PARTITION answer proves nothing: the
// topic counts as deleted once every metadata answer for at least
// topicGoneConfirm (and topicGoneAnswers answers) said so. A topic id that
// changed proves at once that the topic was deleted and created again.
const (
	topicGoneConfirm = 3 * time.Second
	topicGoneAnswers = 4
	// topicGonePoll is how often the metadata is asked while the topic is
	// suspected deleted.
	topicGonePoll = 250 * time.Millisecond
)

// suspectGone wakes the topic watcher.
func (s *subscription) suspectGone() {
	select {
	case s.suspect <- struct{}{}:
	default:
	}
}

// watchTopic ends the subscription when its topic was deleted. It asks the
// metadata every Config.PartitionWatchInterval, at once when a fetch or a
// commit was told the topic is unknown, and every topicGonePoll while the
// answers say it is missing.
func (s *subscription) watchTopic(ctx context.Context) {
	var (
		unknownSince time.Time
		unknowns     int
	)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.suspect:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		id, exists, err := s.member.topicState(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// Not an answer about the topic: neither confirms nor clears.
			s.member.log.Debug("kafka: checking whether the topic exists failed", "error", err)
		case exists && !s.sameID(id):
			s.endGone("the topic was deleted and created again (its topic id changed)")
			return
		case exists:
			unknownSince, unknowns = time.Time{}, 0
		default:
			if unknowns == 0 {
				unknownSince = time.Now()
			}
			unknowns++
			if unknowns >= topicGoneAnswers && time.Since(unknownSince) >= topicGoneConfirm {
				s.endGone(fmt.Sprintf("the broker has called the topic unknown (UNKNOWN_TOPIC_OR_PARTITION) for %v",
					time.Since(unknownSince).Round(time.Millisecond)))
				return
			}
		}
		if unknowns > 0 {
			t.Reset(topicGonePoll)
		} else {
			t.Reset(s.a.cfg.PartitionWatchInterval)
		}
	}
}

// sameID records id as the topic's id if none was seen yet, and reports
// whether it is the one seen first (true when either is unknown).
func (s *subscription) sameID(id [16]byte) bool {
	if id == ([16]byte{}) {
		return true
	}
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.topicID == ([16]byte{}) {
		s.topicID = id
	}
	return s.topicID == id
}

// knownID returns the topic's id as first seen; zero while unknown.
func (s *subscription) knownID() [16]byte {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	return s.topicID
}

// topicUnchanged asks the metadata before offsets are committed by topic
// name (the coordinator cannot take them by topic id): it reports
// false when the topic is unknown (the commit could not succeed) or was
// created again since the subscription first saw it (the offsets belong to
// the deleted topic; the subscription then ends). When the broker does not
// answer, the commit goes ahead (it fails alike if the broker is gone).
func (s *subscription) topicUnchanged() bool {
	id, exists, err := s.member.topicState(context.Background())
	switch {
	case err != nil:
		return true
	case !exists:
		s.suspectGone()
		return false
	case !s.sameID(id):
		s.endGone("the topic was deleted and created again (its topic id changed)")
		return false
	}
	return true
}

// endGone ends the subscription because its topic was deleted: pending
// commits are dropped and the channel is closed.
func (s *subscription) endGone(why string) {
	if !s.gone.CompareAndSwap(false, true) {
		return
	}
	s.a.log.Error("kafka: the subscribed topic was deleted; ending the subscription and dropping its pending commits",
		"topic", s.topic, "group", s.group, "reason", why)
	s.cancel()
}
