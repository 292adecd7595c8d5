package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// producer holds the broker writers of an adapter. Every partitionWriter of
// the adapter points to the same producer.
type producer struct {
	a       *Adapter
	mu      sync.Mutex
	brokers map[int32]*brokerWriter // by leader node ID; -1: leader unknown
}

// brokerWriter sends the records of the partitions led by one broker. Its
// goroutine takes everything that queued up in those partitions while its
// previous produce request was in flight and sends it as ONE multi-topic,
// multi-partition request, so a lone record costs one round trip and
// concurrent records share requests across partitions. It has at most one
// request in flight, and a partition is only ever drained by the writer of
// its current leader (see partitionWriter.bw), so a partition never has two
// requests in flight and its records stay in order.
type brokerWriter struct {
	p      *producer
	leader int32
	wake   chan struct{} // capacity 1: "the ready list may be non-empty"

	mu    sync.Mutex
	ready []*partitionWriter // partitions with queued records, in arrival order

	// Owned by the run goroutine.
	conn           *brokerConn // to the leader; nil until connected or after a failure
	lastUsed       time.Time   // when conn was dialled or last carried a request
	stopCut        func() bool // stops cutting conn off at Close
	enc            batchEncoder
	buf            []byte // the request's record batches, reused
	ends           []int  // where each batch ends in buf
	throttledUntil time.Time
}

// partBatch is what one request carries for one partition.
type partBatch struct {
	w   *partitionWriter
	prs []*pendingRecord
}

// broker returns the writer for leader, starting it if needed. It returns
// nil once the adapter is closing.
func (p *producer) broker(leader int32) *brokerWriter {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.brokers[leader]
	if b == nil {
		if p.a.isClosing() {
			return nil
		}
		b = &brokerWriter{p: p, leader: leader, wake: make(chan struct{}, 1)}
		p.brokers[leader] = b
		// The caller holds a.mu shared (publish) or is a broker writer
		// counted by a.wg, so Close is not past a.wg.Wait.
		p.a.wg.Add(1)
		go b.run()
	}
	return b
}

// leaders returns the leader of every partition of topic as known to the
// transport, which routes produce requests by the same cached metadata.
// Unknown leaders are -1.
func (a *Adapter) leaders(ctx context.Context, topic string) map[int]int32 {
	md, err := a.cachedMetadata(ctx, topic)
	if err != nil || len(md.Topics) != 1 {
		return nil
	}
	m := make(map[int]int32, len(md.Topics[0].Partitions))
	for _, p := range md.Topics[0].Partitions {
		m[int(p.PartitionIndex)] = p.LeaderID
	}
	return m
}

func leaderOf(m map[int]int32, partition int) int32 {
	if l, ok := m[partition]; ok {
		return l
	}
	return -1
}

// signal tells the partition's broker writer that records are queued.
func (w *partitionWriter) signal() {
	if w.listed.CompareAndSwap(false, true) {
		w.bw.Load().add(w)
	}
}

// add appends w, whose listed flag the caller set, to the ready list.
func (b *brokerWriter) add(w *partitionWriter) {
	b.mu.Lock()
	b.ready = append(b.ready, w)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *brokerWriter) run() {
	a := b.p.a
	defer a.wg.Done()
	defer b.closeConn()
	var (
		ready   []*partitionWriter
		batches []partBatch
	)
	for {
		select {
		case <-a.closing:
			return
		case <-b.wake:
		}
		for !a.isClosing() {
			b.mu.Lock()
			ready, b.ready = b.ready, ready[:0]
			b.mu.Unlock()
			if len(ready) == 0 {
				break
			}
			batches = b.collect(ready, batches[:0])
			clear(ready)
			if len(batches) == 0 {
				continue
			}
			b.send(batches)
			for i := range batches {
				clear(batches[i].prs)
			}
			clear(batches)
		}
	}
}

// collect drains the queues of the ready partitions into batches, up to
// Config.MaxBatchRecords records and Config.MaxBatchBytes bytes in all
// (a single larger record still goes alone). Partitions with records left
// over are listed again, ahead of partitions listed meanwhile.
func (b *brokerWriter) collect(ready []*partitionWriter, batches []partBatch) []partBatch {
	cfg := &b.p.a.cfg
	n, size := 0, 0
	full := func() bool { return n > 0 && (n >= cfg.MaxBatchRecords || size >= cfg.MaxBatchBytes) }
	var again []*partitionWriter
	for _, w := range ready {
		if cur := w.bw.Load(); cur != b {
			cur.add(w) // moved to another leader: still listed
			continue
		}
		if full() {
			again = append(again, w) // still listed
			continue
		}
		w.listed.Store(false)
		var prs []*pendingRecord
	drain:
		for !full() {
			select {
			case pr := <-w.queue:
				prs = append(prs, pr)
				n++
				size += pr.size
			default:
				break drain
			}
		}
		if len(prs) > 0 {
			batches = append(batches, partBatch{w: w, prs: prs})
		}
		if full() && len(w.queue) > 0 && w.listed.CompareAndSwap(false, true) {
			again = append(again, w)
		}
	}
	if len(again) > 0 {
		b.mu.Lock()
		b.ready = append(again, b.ready...) // ahead of newcomers
		b.mu.Unlock()
	}
	return batches
}

// send produces batches in one request and completes every record with its
// partition's result.
func (b *brokerWriter) send(batches []partBatch) {
	a := b.p.a
	errs := b.produce(batches)
	var failed []*partitionWriter
	for i, pb := range batches {
		err := errs[i]
		if err != nil && len(pb.prs) > 1 && (tooLarge(err) || errors.Is(err, kafkago.InvalidRecord)) {
			// One record too many for the broker's limits, or one it
			// refuses (the whole batch fails with it): send them one by
			// one so each gets its own verdict.
			for _, pr := range pb.prs {
				pr.done <- b.produce([]partBatch{{w: pb.w, prs: []*pendingRecord{pr}}})[0]
			}
			continue
		}
		for _, pr := range pb.prs {
			pr.done <- err
		}
		if err != nil && !a.isClosing() {
			failed = append(failed, pb.w)
		}
	}
	if len(failed) > 0 {
		b.relocate(failed)
	}
}

// relocate moves partitions whose produce failed to the writer of their
// current leader, if it changed. Only the partition's own writer moves it,
// between two requests, so the partition never has two requests in flight.
func (b *brokerWriter) relocate(ws []*partitionWriter) {
	a := b.p.a
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.ProduceTimeout)
	defer cancel()
	byTopic := map[string]map[int]int32{}
	for _, w := range ws {
		m, ok := byTopic[w.topic]
		if !ok {
			m = a.leaders(ctx, w.topic)
			byTopic[w.topic] = m
		}
		l, ok := m[w.partition]
		if !ok || l == b.leader {
			continue
		}
		nb := b.p.broker(l)
		if nb == nil {
			return // closing
		}
		// If records are queued, w is listed here (or being listed by a
		// publisher) and collect forwards it.
		w.bw.Store(nb)
	}
}

// produce sends one request for batches over the writer's own connection
// to its leader and returns each batch's error. The records are encoded
// before the request is written, so nothing refers to them once it
// returns.
func (b *brokerWriter) produce(batches []partBatch) []error {
	a := b.p.a
	resp, err := b.roundTrip(batches)
	errs := make([]error, len(batches))
	for i, pb := range batches {
		e := err
		if e == nil && resp != nil {
			e = partitionError(resp, pb.w.topic, int32(pb.w.partition))
		}
		if e == nil {
			continue
		}
		switch {
		case a.isClosing():
			errs[i] = fmt.Errorf("kafka: publish to %s: %w (%w)", pb.w.topic, eventstream.ErrAdapterClosed, e)
		case tooLarge(e):
			errs[i] = fmt.Errorf("kafka: produce to %s[%d]: %w: %w", pb.w.topic, pb.w.partition, ErrMessageTooLarge, e)
		default:
			errs[i] = fmt.Errorf("kafka: produce to %s[%d]: %w", pb.w.topic, pb.w.partition, e)
		}
	}
	return errs
}

// roundTrip encodes batches into one produce request, sends it to the
// leader (connecting first if needed, and waiting out a throttle the
// leader asked for) and returns the response: nil with acks 0.
//
// A request waits at most Config.ProduceTimeout; Close cuts it off. It
// uses a deadline rather than a context, which would cost several
// allocations per request.
func (b *brokerWriter) roundTrip(batches []partBatch) (*kmsg.ProduceResponse, error) {
	a := b.p.a
	if b.leader < 0 {
		return nil, errLeaderUnknown
	}
	if b.conn != nil && b.conn.stale(time.Now(), b.lastUsed) {
		b.closeConn()
	}
	if b.conn == nil {
		if err := b.connect(batches[0].w.topic); err != nil {
			return nil, err
		}
	}
	if wait := time.Until(b.throttledUntil); wait > 0 {
		if err := sleepCtx(a.ctx, wait); err != nil {
			return nil, err
		}
	}
	req := kmsg.NewPtrProduceRequest()
	switch a.cfg.RequiredAcks {
	case AcksLeader:
		req.Acks = 1
	case AcksNone:
		req.Acks = 0
	default:
		req.Acks = -1
	}
	req.TimeoutMillis = int32(a.cfg.ProduceTimeout.Milliseconds() / 2) // the broker's part of ProduceTimeout
	codec := compress.Compression(a.cfg.kafkaCompression())
	now := time.Now()
	buf := b.buf[:0]
	ends := b.ends[:0]
	for _, pb := range batches {
		var err error
		if buf, err = b.enc.appendBatch(buf, pb.prs, codec, now); err != nil {
			return nil, err
		}
		ends = append(ends, len(buf))
	}
	b.ends = ends
	if cap(buf) <= 4<<20 {
		b.buf = buf
	}
	start := 0
	for i, pb := range batches {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = int32(pb.w.partition)
		rp.Records = buf[start:ends[i]:ends[i]]
		start = ends[i]
		if k := len(req.Topics) - 1; k >= 0 && req.Topics[k].Topic == pb.w.topic {
			req.Topics[k].Partitions = append(req.Topics[k].Partitions, rp)
		} else {
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = pb.w.topic
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
		}
	}
	m, err := b.conn.requestBy(now.Add(a.cfg.ProduceTimeout), req, req.Acks != 0)
	if err != nil {
		b.closeConn()
		return nil, err
	}
	b.lastUsed = time.Now()
	if req.Acks == 0 {
		return nil, nil
	}
	resp := m.(*kmsg.ProduceResponse)
	if resp.ThrottleMillis > 0 {
		b.throttledUntil = time.Now().Add(time.Duration(resp.ThrottleMillis) * time.Millisecond)
	}
	return resp, nil
}

// produceIdleTimeout is how long a writer's connection may stay unused
// before the writer dials again rather than use it. Brokers close idle
// connections (connections.max.idle.ms, 10 minutes by default); with
// acks 0 a write to such a connection could seem to succeed with nothing
// read, so the writer never relies on one that idled that long.
const produceIdleTimeout = 30 * time.Second

// stale reports whether a writer should not send on c any more at now: it
// was last used before now-produceIdleTimeout, or its SASL session ends.
func (c *brokerConn) stale(now, lastUsed time.Time) bool {
	return now.Sub(lastUsed) > produceIdleTimeout || !c.expires.IsZero() && now.After(c.expires)
}

// connect connects the writer to its leader, found in the metadata of
// topic; Close cuts the connection off.
func (b *brokerWriter) connect(topic string) error {
	a := b.p.a
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.ProduceTimeout)
	defer cancel()
	addr, err := a.brokerAddr(ctx, topic, b.leader)
	if err != nil {
		return err
	}
	c, err := a.dialBroker(ctx, addr)
	if err != nil {
		return err
	}
	b.conn = c
	b.lastUsed = time.Now()
	b.stopCut = context.AfterFunc(a.ctx, c.cutOff)
	return nil
}

// closeConn drops the writer's connection (after a failure, or when the
// writer ends).
func (b *brokerWriter) closeConn() {
	if b.conn != nil {
		b.stopCut()
		b.conn.close()
		b.conn = nil
	}
}

// brokerAddr returns the address of broker node, as the transport's
// metadata cache (of topic) knows it.
func (a *Adapter) brokerAddr(ctx context.Context, topic string, node int32) (string, error) {
	md, err := a.cachedMetadata(ctx, topic)
	if err != nil {
		return "", err
	}
	if addr, ok := nodeAddr(md, node); ok {
		return addr, nil
	}
	return "", fmt.Errorf("kafka: broker %d: %w", node, errLeaderUnknown)
}

// errLeaderUnknown: the partitions' leader is not (or no longer) in the
// cluster metadata. The records are retried once relocate found it.
var errLeaderUnknown = fmt.Errorf("kafka: partition leader unknown: %w", kafkago.LeaderNotAvailable)

var errNoPartitionResponse = errors.New("no response for the partition")

// partitionError returns the error the broker reported for topic/partition.
func partitionError(resp *kmsg.ProduceResponse, topic string, partition int32) error {
	for i := range resp.Topics {
		t := &resp.Topics[i]
		if t.Topic != topic {
			continue
		}
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if p.Partition != partition {
				continue
			}
			switch {
			case p.ErrorCode != 0 && p.ErrorMessage != nil && *p.ErrorMessage != "":
				return fmt.Errorf("%w: %s", kafkago.Error(p.ErrorCode), *p.ErrorMessage)
			case p.ErrorCode != 0:
				return kafkago.Error(p.ErrorCode)
			case len(p.ErrorRecords) > 0:
				// Records the broker refused (KIP-467), whatever the
				// partition's error code says.
				msg := fmt.Sprintf("record %d of the batch refused", p.ErrorRecords[0].RelativeOffset)
				if m := p.ErrorRecords[0].ErrorMessage; m != nil && *m != "" {
					msg = *m
				}
				return fmt.Errorf("%w: %s", kafkago.InvalidRecord, msg)
			}
			return nil
		}
	}
	return errNoPartitionResponse
}
