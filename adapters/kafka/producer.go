package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	kafkago "github.com/segmentio/kafka-go"
)

type topicPartition struct {
	topic     string
	partition int
}

// pendingRecord is one record waiting in a partition writer's queue. done
// receives exactly one result. Once the publisher received a nil result the
// broker answered the request that carried the record, so nothing refers to
// the pendingRecord any more and it goes back to the adapter's pool (with
// its channel); after a failure or an abandoned wait it is left to the
// garbage collector, since it may be queued or sent again.
type pendingRecord struct {
	rec  eventstream.Record
	size int // about the bytes rec adds to a request
	done chan error
}

// getPending returns a pendingRecord for r from the adapter's pool.
func (a *Adapter) getPending(r eventstream.Record) *pendingRecord {
	pr, _ := a.prPool.Get().(*pendingRecord)
	if pr == nil {
		pr = &pendingRecord{done: make(chan error, 1)}
	}
	pr.rec = r
	return pr
}

// putPending returns pr, whose nil result was received, to the pool.
func (a *Adapter) putPending(pr *pendingRecord) {
	pr.rec = eventstream.Record{}
	a.prPool.Put(pr)
}

// partitionWriter is the producer side of one topic partition: a bounded
// queue of records drained by the brokerWriter of the partition's leader.
type partitionWriter struct {
	a         *Adapter
	prod      *producer
	topic     string
	partition int
	queue     chan *pendingRecord
	listed    atomic.Bool                  // in (or being added to) its broker writer's ready list
	bw        atomic.Pointer[brokerWriter] // changed only by the current one, between requests
}

// Publish publishes message on topic with no key (spread over the
// partitions) and returns nil once the broker acknowledged it at
// Config.RequiredAcks. See PublishRecord.
func (a *Adapter) Publish(ctx context.Context, topic string, message []byte) error {
	return a.PublishRecord(ctx, topic, eventstream.Record{Value: message})
}

// PublishRecord publishes r on topic and returns nil only once the broker
// acknowledged it. A record with a key goes to the partition the Java
// client's default partitioner picks (murmur2 of the key modulo the
// partition count), so records with one key keep their order; a record
// without a key is spread round-robin. Headers and Time are carried
// natively; a zero Time is replaced by the time of the call.
//
// Transient failures (broker unreachable, leadership changes, ...) are
// retried until ctx is done, and the error then wraps both ctx.Err() and
// the last failure. A missing topic fails within a second (a topic created
// a moment ago may still be unknown to the broker) with an error wrapping
// ErrUnknownTopic unless Config.AutoCreateTopics is set, a record larger
// than the topic accepts with an error wrapping ErrMessageTooLarge. When the
// partition's buffer (Config.MaxBufferedRecords) is full PublishRecord
// blocks until there is room or ctx is done. After Close it returns an
// error wrapping eventstream.ErrAdapterClosed.
func (a *Adapter) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	if err := checkTopic(topic); err != nil {
		return fmt.Errorf("kafka: publish: %w", err)
	}
	if a.isClosing() {
		return fmt.Errorf("kafka: publish to %s: %w", topic, eventstream.ErrAdapterClosed)
	}
	var last error
	for attempt := 0; ; attempt++ {
		err := a.publishOnce(ctx, topic, r)
		if err == nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return publishCtxErr(topic, ctx.Err(), err, last)
		}
		if a.isClosing() {
			// Close cancels the transport: the failure may be that.
			return closedErr(topic, err)
		}
		last = err
		if attempt == 0 || attempt%20 == 0 {
			a.log.Debug("kafka: publish failed, retrying", "topic", topic, "attempt", attempt, "error", err)
		}
		if errors.Is(err, kafkago.UnknownTopicOrPartition) {
			a.forgetTopic(topic) // deleted, or partitions changed
		}
		t := time.NewTimer(backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return publishCtxErr(topic, ctx.Err(), err, last)
		case <-a.closing:
			t.Stop()
			return closedErr(topic, err)
		case <-t.C:
		}
	}
}

// closedErr is the error of a publish that Close ended while it was
// retrying after err.
func closedErr(topic string, err error) error {
	return fmt.Errorf("kafka: publish to %s: %w (last error: %w)", topic, eventstream.ErrAdapterClosed, err)
}

func publishCtxErr(topic string, ctxErr, err, last error) error {
	if errors.Is(err, ctxErr) && last != nil {
		err = last
	}
	if errors.Is(err, ctxErr) {
		return fmt.Errorf("kafka: publish to %s: %w", topic, err)
	}
	return fmt.Errorf("kafka: publish to %s: %w (last error: %w)", topic, ctxErr, err)
}

func (a *Adapter) forgetTopic(topic string) {
	a.pmu.Lock()
	delete(a.topics, topic)
	a.pmu.Unlock()
}

func (a *Adapter) publishOnce(ctx context.Context, topic string, r eventstream.Record) error {
	ti, err := a.topic(ctx, topic)
	if err != nil {
		return err
	}
	// A record the broker would refuse is refused here. Besides saving a
	// round trip, this matters for records larger than the broker's
	// socket.request.max.bytes: the broker closes the connection instead of
	// answering, which looks like a network failure and would be retried
	// until ctx ends. (Compressed batches may be smaller than the record:
	// the broker decides.)
	hb := headerBytes(r.Headers) // the only pass over the map besides encoding
	if ti.maxBytes > 0 && a.cfg.Compression == CompressionNone {
		if size := batchSizeWith(r, hb); size > ti.maxBytes {
			return fmt.Errorf("kafka: publish to %s: a record batch of at least %d bytes, the topic's max.message.bytes is %d: %w",
				topic, size, ti.maxBytes, ErrMessageTooLarge)
		}
	}
	n := ti.partitions
	var p int
	if r.Key != nil {
		p = keyPartition(r.Key, n)
	} else {
		p = a.nextRoundRobin(topic, n)
	}
	pr := a.getPending(r)
	pr.size = len(r.Key) + len(r.Value) + 16 + hb

	tp := topicPartition{topic, p}
	a.pmu.Lock()
	w := a.writers[tp]
	a.pmu.Unlock()
	leader := int32(-1)
	if w == nil {
		leader = leaderOf(a.leaders(ctx, topic), p)
	}

	a.mu.RLock()
	if w == nil && !a.closed {
		w = a.newWriter(tp, leader)
	}
	if a.closed || w == nil {
		a.mu.RUnlock()
		return fmt.Errorf("kafka: publish to %s: %w", topic, eventstream.ErrAdapterClosed)
	}
	select {
	case w.queue <- pr:
	case <-ctx.Done():
		a.mu.RUnlock()
		return ctx.Err()
	case <-a.closing:
		a.mu.RUnlock()
		return fmt.Errorf("kafka: publish to %s: %w", topic, eventstream.ErrAdapterClosed)
	}
	a.mu.RUnlock()
	w.signal()

	select {
	case err := <-pr.done:
		if err == nil {
			a.putPending(pr)
		}
		return err
	case <-ctx.Done():
		// The record may still be written: at-least-once, never reported
		// as published without the broker's acknowledgement.
		return ctx.Err()
	}
}

func (a *Adapter) nextRoundRobin(_ string, n int) int {
	return int(a.rr.Add(1) % uint64(n))
}

// newWriter returns the writer of tp, creating it with its queue drained by
// the broker writer of leader if needed. The caller holds a.mu shared and
// has checked that the adapter is open. It returns nil once Close started.
func (a *Adapter) newWriter(tp topicPartition, leader int32) *partitionWriter {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	if w := a.writers[tp]; w != nil {
		return w
	}
	// All writers share one producer; the adapter keeps it only through
	// them.
	var prod *producer
	for _, o := range a.writers {
		prod = o.prod
		break
	}
	if prod == nil {
		prod = &producer{a: a, brokers: make(map[int32]*brokerWriter)}
	}
	b := prod.broker(leader)
	if b == nil {
		return nil
	}
	w := &partitionWriter{
		a:         a,
		prod:      prod,
		topic:     tp.topic,
		partition: tp.partition,
		queue:     make(chan *pendingRecord, a.cfg.MaxBufferedRecords),
	}
	w.bw.Store(b)
	a.writers[tp] = w
	return w
}

// ErrMessageTooLarge is wrapped by Publish and PublishRecord when a record
// is larger than its topic accepts (the topic's max.message.bytes, which
// defaults to the broker's message.max.bytes). The record was not written.
// The adapter checks uncompressed records before sending them when the
// broker told it the limit; otherwise the error comes from the broker
// (MESSAGE_TOO_LARGE) and wraps that too.
var ErrMessageTooLarge = errors.New("kafka: message too large")

// batchSize returns a lower bound of the size of a record batch holding only
// r, as the broker compares it with max.message.bytes: the batch header
// (61 bytes) and the record with varint lengths of at least one byte.
func batchSize(r eventstream.Record) int { return batchSizeWith(r, headerBytes(r.Headers)) }

// batchSizeWith is batchSize with the header keys and values adding up
// to hb bytes.
func batchSizeWith(r eventstream.Record, hb int) int {
	const batchHeader = 61
	// length, attributes, timestamp delta, offset delta, key length,
	// value length, header count; a key and a value length per header.
	return batchHeader + 7 + len(r.Key) + len(r.Value) + 2*len(r.Headers) + hb
}

// headerBytes returns the length of the keys and values of hs.
func headerBytes(hs map[string]string) int {
	n := 0
	for k, v := range hs {
		n += len(k) + len(v)
	}
	return n
}

func tooLarge(err error) bool {
	return errors.Is(err, kafkago.MessageSizeTooLarge) || errors.Is(err, kafkago.RecordListTooLarge)
}

// failQueued fails every record still queued. Called by Close once the
// broker writer goroutines returned.
func (w *partitionWriter) failQueued(err error) {
	for {
		select {
		case pr := <-w.queue:
			pr.done <- err
		default:
			return
		}
	}
}

// keyPartition is the Java client's default partitioner for keyed records:
// toPositive(murmur2(key)) % partitions.
func keyPartition(key []byte, partitions int) int {
	return int(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is the 32-bit MurmurHash2 variant used by Kafka's Java client
// (seed 0x9747b28c).
func murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	i := 0
	for ; n-i >= 4; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
