package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/eventstream-go/eventstream/internal/headerset"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file fetches one partition's records over a connection of its own to
// the partition's leader and decodes the record batches itself: kafka-go's
// decoder allocates a string and a slice for every header of every record,
// which made binary-mode CloudEvents (7 headers) cost about 20 allocations
// per message before the adapter saw it. Here a record costs one buffer
// (key, value and, unless they repeat the previous record's, header bytes)
// and the Message; headers that differ from the previous record's add one
// headerSet (a list; the map Headers returns is built only when asked for).

// fetcher fetches one partition. It belongs to the partition's consume
// goroutine.
type fetcher struct {
	a         *Adapter
	topic     string
	partition int32
	conn      *brokerConn // to the leader; nil until connected or after a failure
	hdrs      headerCache
	scratch   []rawHeader
	inflated  []byte // decompressed records, reused
	// maxInflate bounds what one compressed batch may decompress to
	// (Config.MaxDecompressedBatchBytes).
	maxInflate int
	// throttledAddr asked, in its last fetch response, not to be sent
	// another fetch before throttledUntil (quota throttling, KIP-219).
	throttledAddr  string
	throttledUntil time.Time
}

// fetchedRecord is a decoded record; its slices point into the fetch
// response (or the decompressed batch) and are only valid until the next
// fetch.
type fetchedRecord struct {
	offset int64
	ts     time.Time
	key    []byte // nil: none
	value  []byte // nil: null
	hdrs   []rawHeader
}

type rawHeader struct {
	key, value []byte
}

// close drops the connection.
func (f *fetcher) close() {
	if f.conn != nil {
		f.conn.close()
		f.conn = nil
	}
}

// cachedMetadata returns the cluster metadata of topic as the transport's
// cache (refreshed every Config.MetadataMaxAge) knows it.
func (a *Adapter) cachedMetadata(ctx context.Context, topic string) (*metadata.Response, error) {
	resp, err := a.transport.RoundTrip(ctx, a.client.Addr, &metadata.Request{TopicNames: []string{topic}})
	if err != nil {
		return nil, err
	}
	md, ok := resp.(*metadata.Response)
	if !ok {
		return nil, fmt.Errorf("kafka: unexpected metadata response %T", resp)
	}
	return md, nil
}

// nodeAddr returns the address of broker node in md.
func nodeAddr(md *metadata.Response, node int32) (string, bool) {
	for _, b := range md.Brokers {
		if b.NodeID == node {
			return net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), true
		}
	}
	return "", false
}

// leaderAddr returns the address of the partition's leader, as the
// transport's metadata cache knows it.
func (a *Adapter) leaderAddr(ctx context.Context, topic string, partition int32) (string, error) {
	md, err := a.cachedMetadata(ctx, topic)
	if err != nil {
		return "", err
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.ErrorCode != 0 {
			return "", kafkago.Error(t.ErrorCode)
		}
		for _, p := range t.Partitions {
			if p.PartitionIndex != partition {
				continue
			}
			if p.ErrorCode != 0 && p.LeaderID < 0 {
				return "", kafkago.Error(p.ErrorCode)
			}
			if addr, ok := nodeAddr(md, p.LeaderID); ok {
				return addr, nil
			}
			return "", fmt.Errorf("kafka: %s[%d]: %w", topic, partition, kafkago.LeaderNotAvailable)
		}
		return "", fmt.Errorf("kafka: %s[%d]: %w", topic, partition, kafkago.UnknownTopicOrPartition)
	}
	return "", fmt.Errorf("kafka: %s: %w", topic, kafkago.UnknownTopicOrPartition)
}

// fetch asks the leader for records from offset and calls fn for each
// record at or past offset, in order, until fn returns false. It returns the
// offset to fetch next: past the last record fn accepted, or past the last
// complete batch when fn accepted every record (control batches and batches
// emptied by compaction occupy offsets too). A partition error is returned
// wrapping the kafkago.Error code. When the leader's last response asked
// for throttling (ThrottleMillis, a quota), fetch first waits until that
// time has passed, or returns ctx's error.
func (f *fetcher) fetch(ctx context.Context, offset int64, fn func(*fetchedRecord) bool) (int64, error) {
	a := f.a
	if f.conn == nil {
		addr, err := a.leaderAddr(ctx, f.topic, f.partition)
		if err != nil {
			return offset, err
		}
		c, err := a.dialBroker(ctx, addr)
		if err != nil {
			return offset, err
		}
		f.conn = c
	}
	if f.conn.addr == f.throttledAddr {
		if wait := time.Until(f.throttledUntil); wait > 0 {
			if err := sleepCtx(ctx, wait); err != nil {
				return offset, err
			}
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = millis(a.cfg.FetchMaxWait)
	req.MinBytes = 1
	req.MaxBytes = int32(a.cfg.FetchMaxBytes)
	req.IsolationLevel = 0 // read uncommitted, as kafka-go's Client
	req.SessionID = 0
	req.SessionEpoch = -1 // no fetch session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = f.topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = f.partition
	rp.FetchOffset = offset
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rp.PartitionMaxBytes = int32(a.cfg.FetchMaxBytes)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	// The response is read into a pooled buffer: fn copies what it keeps
	// (Message), and nothing else refers to the response once decoded.
	bp, _ := a.fetchBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer func() {
		// A response (or a batch decompressed from it) far above
		// FetchMaxBytes, as one huge record batch makes, is not kept.
		if cap(*bp) > 4*a.cfg.FetchMaxBytes {
			*bp = nil
		}
		if cap(f.inflated) > 4*a.cfg.FetchMaxBytes {
			f.inflated = nil
		}
		a.fetchBufs.Put(bp)
	}()
	c := f.conn
	c.rbuf = bp
	rctx, cancel := context.WithTimeout(ctx, a.cfg.FetchMaxWait+a.cfg.DialTimeout+a.cfg.SessionTimeout)
	resp, err := c.request(rctx, req)
	cancel()
	c.rbuf = nil
	if err != nil {
		f.close()
		return offset, err
	}
	fr := resp.(*kmsg.FetchResponse)
	if fr.ThrottleMillis > 0 {
		f.throttledAddr = c.addr
		f.throttledUntil = time.Now().Add(time.Duration(fr.ThrottleMillis) * time.Millisecond)
	}
	if fr.ErrorCode != 0 {
		f.close()
		return offset, kafkago.Error(fr.ErrorCode)
	}
	for i := range fr.Topics {
		t := &fr.Topics[i]
		if t.Topic != f.topic {
			continue
		}
		for j := range t.Partitions {
			p := &t.Partitions[j]
			if p.Partition != f.partition {
				continue
			}
			if p.ErrorCode != 0 {
				if kafkago.Error(p.ErrorCode) != kafkago.OffsetOutOfRange {
					f.close() // the leader may have moved
				}
				return offset, kafkago.Error(p.ErrorCode)
			}
			return f.decode(p.RecordBatches, offset, fn)
		}
	}
	f.close()
	return offset, fmt.Errorf("kafka: fetch %s[%d]: %w", f.topic, f.partition, errNoPartitionResponse)
}

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)

	errBadBatch = errors.New("kafka: malformed record batch")
	// errBatchTooLarge: a compressed record batch decompresses to more
	// than Config.MaxDecompressedBatchBytes (a decompression bomb, or a
	// limit set too low for the topic's producers). Like errBadBatch, it
	// stops the partition at the batch: no record of it is delivered, and
	// the offset is not passed.
	errBatchTooLarge = errors.New("kafka: record batch decompresses past Config.MaxDecompressedBatchBytes")
)

// badBatch is a record batch that passed its CRC but cannot be decoded: it
// does not decompress, decompresses past Config.MaxDecompressedBatchBytes,
// or its records are malformed. The same bytes come back on every fetch,
// so the consumer hands it to the bus as one undecodable message standing
// for the offsets first to last (see Message.DecodeError).
type badBatch struct {
	first, last int64  // the offsets of the batch not delivered
	size        int    // the batch's size as fetched
	raw         []byte // the batch as fetched (a copy); nil past maxStandInBytes
	err         error  // wraps errBadBatch or errBatchTooLarge
}

func (e *badBatch) Error() string { return e.err.Error() }
func (e *badBatch) Unwrap() error { return e.err }

// Offsets within a record batch (magic 2) past its base offset and length.
const (
	batchMagic     = 4  // after the partition leader epoch
	batchCRC       = 5  // CRC-32C of everything after it
	batchAttrs     = 9  // int16
	batchLastDelta = 11 // int32
	batchFirstTS   = 15 // int64
	batchMaxTS     = 23 // int64
	batchCount     = 45 // int32
	batchRecords   = 49
)

// decode walks the record batches b (a partition's part of a fetch
// response) as described at fetch.
func (f *fetcher) decode(b []byte, offset int64, fn func(*fetchedRecord) bool) (int64, error) {
	next := offset
	var r fetchedRecord // one for all: fn does not keep it
	b0 := b
	for len(b) >= 12 {
		start := len(b0) - len(b)
		base := int64(binary.BigEndian.Uint64(b))
		size := int64(int32(binary.BigEndian.Uint32(b[8:])))
		if size > int64(len(b)-12) {
			if start == 0 {
				// A broker sends the first batch whole, however large (KIP-74):
				// a cut-off first batch is a bad length, and fetching it again
				// would get the same bytes at once, forever.
				return next, fmt.Errorf("%w: first batch at offset %d claims %d bytes, the response has %d", errBadBatch, base, size, len(b)-12)
			}
			break // the response ends inside this batch (it is fetched again)
		}
		if size <= batchMagic {
			return next, fmt.Errorf("%w: %d bytes at offset %d", errBadBatch, size, base)
		}
		batch := b[12 : 12+size]
		b = b[12+size:]
		if magic := batch[batchMagic]; magic < 2 {
			// A message set of the formats before Kafka 0.11, written
			// before the topic's data was upgraded: rare enough for
			// kafka-go's decoder, which reads those too.
			return f.decodeLegacy(slices.Concat(make([]byte, 4), b0[start:]), offset, next, fn)
		} else if magic != 2 {
			return next, fmt.Errorf("%w: unknown record format %d at offset %d", errBadBatch, magic, base)
		}
		if size < batchRecords {
			return next, fmt.Errorf("%w: %d bytes at offset %d", errBadBatch, size, base)
		}
		if crc := binary.BigEndian.Uint32(batch[batchCRC:]); crc32.Checksum(batch[batchAttrs:], crcTable) != crc {
			return next, fmt.Errorf("%w: CRC mismatch at offset %d", errBadBatch, base)
		}
		attrs := binary.BigEndian.Uint16(batch[batchAttrs:])
		end := base + int64(int32(binary.BigEndian.Uint32(batch[batchLastDelta:]))) + 1
		if attrs&0x20 != 0 || end <= offset {
			// A control batch (transaction marker) or records already
			// delivered.
			next = max(next, end)
			continue
		}
		firstTS := int64(binary.BigEndian.Uint64(batch[batchFirstTS:]))
		logAppend := attrs&0x08 != 0
		if logAppend {
			firstTS = int64(binary.BigEndian.Uint64(batch[batchMaxTS:]))
		}
		count := int(int32(binary.BigEndian.Uint32(batch[batchCount:])))
		recs := batch[batchRecords:]
		// From here on the batch passed its CRC: the bytes are the ones
		// its producer wrote, and an error decoding them comes back on
		// every fetch.
		undecodable := func(err error) error {
			if next > end {
				// Records claimed offsets past the batch's last: its
				// extent cannot be trusted after all.
				return fmt.Errorf("%w: records past the batch's last offset %d: %w", errBadBatch, end-1, err)
			}
			return &badBatch{first: max(next, base, offset), last: end - 1, size: 12 + int(size), raw: standIn(b0[start : start+12+int(size)]), err: err}
		}
		if codec := compress.Compression(attrs & 0x07); codec != 0 {
			var err error
			if recs, err = f.inflate(codec, recs); err != nil {
				return next, undecodable(fmt.Errorf("kafka: decompressing the record batch at offsets %d-%d: %w", base, end-1, err))
			}
		}
		for range count {
			var err error
			if recs, err = f.record(recs, base, firstTS, logAppend, &r); err != nil {
				return next, undecodable(fmt.Errorf("%w: record in the batch at offsets %d-%d: %v", errBadBatch, base, end-1, err))
			}
			if r.offset < offset {
				continue
			}
			if !fn(&r) {
				return r.offset, nil
			}
			next = max(next, r.offset+1)
		}
		next = max(next, end)
		if cap(f.inflated) > maxKeptInflated {
			f.inflated = nil // one large batch: do not keep its buffer per partition
		}
	}
	return next, nil
}

// maxKeptInflated is the largest decompression buffer a fetcher keeps for
// the next batch.
const maxKeptInflated = 4 << 20

// maxStandInBytes bounds the raw bytes a stand-in for an undecodable batch
// carries (Message.DecodeError): its dead letter must fit in the
// dead-letter topic. A bomb is a few KiB; a larger batch's bytes are left
// out (its offsets and size are in the stand-in's headers, and the batch
// stays in the log until retention removes it).
const maxStandInBytes = 64 << 10

// standIn returns the bytes a stand-in carries for batch: a copy of it, or
// nil when it is larger than maxStandInBytes.
func standIn(batch []byte) []byte {
	if len(batch) > maxStandInBytes {
		return nil
	}
	return slices.Clone(batch)
}

// decodeLegacy decodes b, a record set (size first) starting with a message
// set of format 0 or 1, with kafka-go's decoder, continuing decode's work
// from next.
func (f *fetcher) decodeLegacy(b []byte, offset, next int64, fn func(*fetchedRecord) bool) (int64, error) {
	at, bomb := f.checkLegacyInflate(b[4:])
	if bomb != nil {
		if !bomb.trusted {
			return next, bomb.err
		}
		// Decode what precedes it; then it is the stand-in's.
		b = b[:4+at]
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(bytes.NewReader(b)); err != nil {
		return next, fmt.Errorf("%w: %v", errBadBatch, err)
	}
	for rs.Records != nil {
		rec, err := rs.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return next, fmt.Errorf("%w: %v", errBadBatch, err)
		}
		if rec.Offset < offset {
			continue
		}
		r := fetchedRecord{offset: rec.Offset, ts: rec.Time}
		if rec.Key != nil {
			if r.key, err = protocol.ReadAll(rec.Key); err == nil && r.key == nil {
				r.key = []byte{}
			}
		}
		if err == nil && rec.Value != nil {
			r.value, err = protocol.ReadAll(rec.Value)
		}
		if err != nil {
			return next, fmt.Errorf("%w: record at offset %d: %v", errBadBatch, rec.Offset, err)
		}
		for _, h := range rec.Headers {
			r.hdrs = append(r.hdrs, rawHeader{key: []byte(h.Key), value: h.Value})
		}
		if !fn(&r) {
			return r.offset, nil
		}
		next = max(next, r.offset+1)
	}
	if bomb != nil && bomb.last >= offset {
		return next, &badBatch{first: max(next, offset), last: max(bomb.last, next-1), size: bomb.size, raw: bomb.raw, err: bomb.err}
	}
	return next, nil
}

// legacyBomb is a compressed message of format 0 or 1 that decompresses
// past the bound.
type legacyBomb struct {
	last    int64  // its offset: the last of the messages it wraps
	size    int    // its size as fetched, offset and size fields included
	raw     []byte // standIn of the message as fetched, offset and size first
	trusted bool   // its CRC holds, so its offset is the producer's
	err     error  // wraps errBatchTooLarge
}

// checkLegacyInflate finds the first compressed message of the message
// sets (formats 0 and 1) at the start of b that decompresses past
// f.maxInflate, which kafka-go's decoder would not stop at, and returns
// where in b it starts; nil if there is none. It reads the decompressed
// bytes without keeping them.
func (f *fetcher) checkLegacyInflate(b []byte) (int, *legacyBomb) {
	b0 := b
	for len(b) >= 12 {
		at := len(b0) - len(b)
		size := int(int32(binary.BigEndian.Uint32(b[8:])))
		if size < 0 || size > len(b)-12 {
			return 0, nil // cut off: the decoder stops there too
		}
		whole := b[:12+size]
		msg := b[12 : 12+size]
		b = b[12+size:]
		if len(msg) < 6 || msg[4] > 1 {
			return 0, nil // a newer batch: decode's bound applies
		}
		codec := compress.Compression(msg[5] & 0x07)
		if codec == 0 {
			continue
		}
		pos := 6
		if msg[4] == 1 {
			pos += 8 // timestamp
		}
		if len(msg) < pos+4 {
			return 0, nil // malformed: the decoder says so
		}
		pos += 4 + max(int(int32(binary.BigEndian.Uint32(msg[pos:]))), 0) // key
		if len(msg) < pos+4 {
			return 0, nil
		}
		n := int(int32(binary.BigEndian.Uint32(msg[pos:])))
		if n < 0 || len(msg) < pos+4+n {
			return 0, nil
		}
		c := codec.Codec()
		if c == nil {
			return 0, nil
		}
		r := c.NewReader(bytes.NewReader(msg[pos+4 : pos+4+n]))
		got, _ := io.Copy(io.Discard, io.LimitReader(r, int64(f.maxInflate)+1))
		r.Close()
		if got > int64(f.maxInflate) {
			return at, &legacyBomb{
				last:    int64(binary.BigEndian.Uint64(whole)),
				size:    len(whole),
				raw:     standIn(whole),
				trusted: crc32.ChecksumIEEE(msg[4:]) == binary.BigEndian.Uint32(msg),
				err:     fmt.Errorf("%w (a message of format %d: %d bytes compressed, more than %d decompressed)", errBatchTooLarge, msg[4], n, f.maxInflate),
			}
		}
	}
	return 0, nil
}

// inflate decompresses a batch's records into f.inflated, reading no more
// than f.maxInflate bytes of them: past that it stops and returns an error
// wrapping errBatchTooLarge (and drops the buffer).
func (f *fetcher) inflate(codec compress.Compression, recs []byte) ([]byte, error) {
	c := codec.Codec()
	if c == nil {
		return nil, fmt.Errorf("%w: unsupported compression codec %d", errBadBatch, codec)
	}
	r := c.NewReader(bytes.NewReader(recs))
	defer r.Close()
	buf := bytes.NewBuffer(f.inflated[:0])
	n, err := io.Copy(buf, io.LimitReader(r, int64(f.maxInflate)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadBatch, err)
	}
	if n > int64(f.maxInflate) {
		f.inflated = nil
		return nil, fmt.Errorf("%w (%d bytes compressed, more than %d decompressed)", errBatchTooLarge, len(recs), f.maxInflate)
	}
	f.inflated = buf.Bytes()
	return f.inflated, nil
}

// record decodes the record at the start of b into r and returns the rest.
// r.hdrs reuses f.scratch.
func (f *fetcher) record(b []byte, base, firstTS int64, logAppend bool, r *fetchedRecord) ([]byte, error) {
	d := recDecoder{b: b}
	n := d.varint()
	if d.err != nil || n < 1 || n > int64(len(d.b)) {
		return nil, errors.New("bad record length")
	}
	rest := d.b[n:]
	d.b = d.b[:n]
	d.b = d.b[1:] // attributes
	tsDelta := d.varint()
	offDelta := d.varint()
	r.offset = base + offDelta
	if logAppend {
		tsDelta = 0
	}
	if ts := firstTS + tsDelta; ts >= 0 {
		r.ts = time.UnixMilli(ts)
	} else {
		r.ts = time.Time{} // no timestamp (r is reused: never the previous record's)
	}
	r.key = d.bytes()
	r.value = d.bytes()
	nh := d.varint()
	if nh < 0 || nh > int64(len(d.b)) {
		return nil, errors.New("bad header count")
	}
	hs := f.scratch[:0]
	for range nh {
		k := d.bytes()
		v := d.bytes()
		hs = append(hs, rawHeader{key: k, value: v})
	}
	f.scratch = hs
	r.hdrs = hs
	if d.err != nil {
		return nil, d.err
	}
	return rest, nil
}

// recDecoder reads the varint-framed fields of a record.
type recDecoder struct {
	b   []byte
	err error
}

func (d *recDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed field; nil for length -1.
func (d *recDecoder) bytes() []byte {
	n := d.varint()
	switch {
	case d.err != nil:
		return nil
	case n < 0:
		return nil
	case n > int64(len(d.b)):
		d.err = errors.New("field past the end of the record")
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// message copies r into a new Message: key, value and (unless the headers
// are the previous record's) header bytes share one allocation.
func (f *fetcher) message(r *fetchedRecord) *Message {
	m := &Message{
		topic:     f.topic,
		partition: int(f.partition),
		offset:    r.offset,
		ts:        r.ts,
	}
	shared := f.hdrs.reusable(r.hdrs)
	n := len(r.key) + len(r.value)
	if !shared {
		for _, h := range r.hdrs {
			n += len(h.key) + len(h.value)
		}
	}
	buf := make([]byte, 0, n)
	if r.key != nil {
		buf = append(buf, r.key...)
		m.key = buf[:len(r.key):len(r.key)]
	}
	buf = append(buf, r.value...)
	m.value = buf[len(m.key):len(buf):len(buf)]
	if len(r.hdrs) == 0 {
		return m
	}
	if shared {
		m.headers = f.hdrs.last
		return m
	}
	hs := new(headerSet)
	hs.List = hs.inline[:0]
	for _, h := range r.hdrs {
		start := len(buf)
		buf = append(buf, h.key...)
		buf = append(buf, h.value...)
		k := buf[start : start+len(h.key)]
		v := buf[start+len(h.key):]
		// buf is never written again where it was appended to, so the
		// strings may share it.
		hs.List = append(hs.List, headerset.Header{Name: unsafe.String(unsafe.SliceData(k), len(k)), Value: unsafe.String(unsafe.SliceData(v), len(v))})
	}
	f.hdrs.last = &hs.Set
	m.headers = &hs.Set
	return m
}
