package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/segmentio/kafka-go/compress"
)

// This file encodes produced records as one record batch (format 2) per
// partition, the inverse of fetch.go's decode: the produce request carries
// the batch bytes as they are.

// batchHeaderSize is the size of a record batch's fields before its
// records: base offset, length, partition leader epoch, magic, CRC,
// attributes, last offset delta, first and max timestamp, producer id and
// epoch, base sequence and record count.
const batchHeaderSize = 12 + batchRecords

// batchEncoder encodes record batches into buffers it reuses. It belongs
// to one broker writer.
type batchEncoder struct {
	recs []byte       // records, before compression
	comp bytes.Buffer // compressed records
}

// appendBatch appends prs as one record batch, compressed with codec, to
// dst. Records without a time get now.
func (e *batchEncoder) appendBatch(dst []byte, prs []*pendingRecord, codec compress.Compression, now time.Time) ([]byte, error) {
	ts := func(pr *pendingRecord) int64 {
		if pr.rec.Time.IsZero() {
			return now.UnixMilli()
		}
		return pr.rec.Time.UnixMilli()
	}
	first := ts(prs[0])
	maxTS := first
	recs := e.recs[:0]
	for i, pr := range prs {
		t := ts(pr)
		maxTS = max(maxTS, t)
		recs = appendRecord(recs, &pr.rec, t-first, int64(i))
	}
	e.recs = recs
	if codec != 0 {
		c := codec.Codec()
		if c == nil {
			return dst, fmt.Errorf("kafka: unsupported compression codec %d", codec)
		}
		e.comp.Reset()
		w := c.NewWriter(&e.comp)
		_, err := w.Write(recs)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return dst, fmt.Errorf("kafka: compressing a record batch: %w", err)
		}
		recs = e.comp.Bytes()
	}
	start := len(dst)
	dst = append(dst, make([]byte, batchHeaderSize)...)
	b := dst[start:]
	// base offset 0: the broker assigns offsets
	binary.BigEndian.PutUint32(b[8:], uint32(batchHeaderSize-12+len(recs)))
	binary.BigEndian.PutUint32(b[12:], ^uint32(0)) // partition leader epoch -1
	b[12+batchMagic] = 2
	binary.BigEndian.PutUint16(b[12+batchAttrs:], uint16(codec))
	binary.BigEndian.PutUint32(b[12+batchLastDelta:], uint32(len(prs)-1))
	binary.BigEndian.PutUint64(b[12+batchFirstTS:], uint64(first))
	binary.BigEndian.PutUint64(b[12+batchMaxTS:], uint64(maxTS))
	binary.BigEndian.PutUint64(b[12+batchMaxTS+8:], ^uint64(0))  // producer id -1: not idempotent
	binary.BigEndian.PutUint16(b[12+batchMaxTS+16:], ^uint16(0)) // producer epoch -1
	binary.BigEndian.PutUint32(b[12+batchMaxTS+18:], ^uint32(0)) // base sequence -1
	binary.BigEndian.PutUint32(b[12+batchCount:], uint32(len(prs)))
	dst = append(dst, recs...)
	b = dst[start:]
	binary.BigEndian.PutUint32(b[12+batchCRC:], crc32.Checksum(b[12+batchAttrs:], crcTable))
	return dst, nil
}

// appendRecord appends r as a record of a batch: its length, attributes,
// timestamp and offset deltas, key (null when nil), value (empty, never
// null, when nil) and headers (empty values, never null).
func appendRecord(dst []byte, r *eventstream.Record, tsDelta, offDelta int64) []byte {
	n := 1 + varintLen(tsDelta) + varintLen(offDelta) + bytesLen(len(r.Value)) + varintLen(int64(len(r.Headers)))
	if r.Key != nil {
		n += bytesLen(len(r.Key))
	} else {
		n += varintLen(-1)
	}
	for k, v := range r.Headers {
		n += bytesLen(len(k)) + bytesLen(len(v))
	}
	dst = binary.AppendVarint(dst, int64(n))
	dst = append(dst, 0) // attributes
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offDelta)
	if r.Key != nil {
		dst = binary.AppendVarint(dst, int64(len(r.Key)))
		dst = append(dst, r.Key...)
	} else {
		dst = binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(r.Value)))
	dst = append(dst, r.Value...)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for k, v := range r.Headers {
		dst = binary.AppendVarint(dst, int64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendVarint(dst, int64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// varintLen is the size of v as a zig-zag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// bytesLen is the size of a length-prefixed field of n bytes.
func bytesLen(n int) int { return varintLen(int64(n)) + n }
