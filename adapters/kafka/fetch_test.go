package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/internal/headerset"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
)

// encodeBatch encodes recs as one record batch (format 2) with kafka-go's
// encoder, with base offset base.
func encodeBatch(t *testing.T, base int64, codec compress.Compression, recs ...kafkago.Record) []byte {
	t.Helper()
	return encodeSet(t, 2, base, codec, recs...)
}

// encodeSet encodes recs in record format version.
func encodeSet(t *testing.T, version int8, base int64, codec compress.Compression, recs ...kafkago.Record) []byte {
	t.Helper()
	rs := protocol.RecordSet{Version: version, Attributes: protocol.Attributes(codec), Records: kafkago.NewRecordReader(recs...)}
	var buf bytes.Buffer
	if _, err := rs.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()[4:] // the record set's size
	binary.BigEndian.PutUint64(b, uint64(base))
	return b
}

// markControl turns batch into a control batch (fixing its CRC).
func markControl(batch []byte) []byte {
	b := slices.Clone(batch)
	attrs := binary.BigEndian.Uint16(b[12+batchAttrs:])
	binary.BigEndian.PutUint16(b[12+batchAttrs:], attrs|0x20)
	binary.BigEndian.PutUint32(b[12+batchCRC:], crc32.Checksum(b[12+batchAttrs:], crcTable))
	return b
}

type decoded struct {
	offset  int64
	ts      time.Time
	key     []byte
	value   string
	headers map[string]string
}

func decodeAll(t *testing.T, b []byte, offset int64, limit int) ([]decoded, int64, error) {
	t.Helper()
	return decodeWith(t, &fetcher{topic: "t", partition: 3, maxInflate: 64 << 20}, b, offset, limit)
}

// decodeWith decodes b with f (topic "t", partition 3), accepting limit
// records (-1: all).
func decodeWith(t *testing.T, f *fetcher, b []byte, offset int64, limit int) ([]decoded, int64, error) {
	t.Helper()
	var got []decoded
	next, err := f.decode(b, offset, func(r *fetchedRecord) bool {
		if len(got) == limit {
			return false
		}
		m := f.message(r)
		if m.Value() == nil {
			t.Errorf("offset %d: nil value", m.Offset())
		}
		if m.Partition() != 3 || m.Topic() != "t" {
			t.Errorf("offset %d: partition %s[%d]", m.Offset(), m.Topic(), m.Partition())
		}
		var listed map[string]string // HeaderLister's entries hold what the map holds
		for i := range m.NumHeaders() {
			if listed == nil {
				listed = map[string]string{}
			}
			k, v := m.HeaderAt(i)
			listed[k] = v
		}
		if !maps.Equal(listed, m.Headers()) || (listed == nil) != (m.Headers() == nil) {
			t.Errorf("offset %d: header entries %v, Headers %v", m.Offset(), listed, m.Headers())
		}
		got = append(got, decoded{m.Offset(), m.Timestamp(), m.Key(), string(m.Value()), m.Headers()})
		return true
	})
	return got, next, err
}

// TestDecodeBatches decodes record batches written by kafka-go's encoder:
// keys, null keys and values, headers (a repeated key keeps its last
// value), timestamps, every compression codec, records before the fetch
// offset, control batches, a truncated last batch and a refused record.
func TestDecodeBatches(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_123)
	for _, codec := range []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			b1 := encodeBatch(t, 10, codec,
				kafkago.Record{Time: t0, Key: kafkago.NewBytes([]byte("k0")), Value: kafkago.NewBytes([]byte("v0"))},
				kafkago.Record{Time: t0.Add(time.Millisecond), Value: kafkago.NewBytes([]byte("v1")),
					Headers: []kafkago.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}}},
				kafkago.Record{Time: t0.Add(2 * time.Millisecond), Key: kafkago.NewBytes([]byte{}),
					Headers: []kafkago.Header{{Key: "a", Value: []byte("1")}, {Key: "a", Value: []byte("2")}}},
			)
			b2 := encodeBatch(t, 13, codec,
				kafkago.Record{Time: t0, Value: kafkago.NewBytes([]byte("v3")),
					Headers: []kafkago.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte{}}}},
			)
			marker := markControl(encodeBatch(t, 14, 0, kafkago.Record{Time: t0, Value: kafkago.NewBytes([]byte("m"))}))
			want := []decoded{
				{10, t0, []byte("k0"), "v0", nil},
				{11, t0.Add(time.Millisecond), nil, "v1", map[string]string{"a": "1", "b": ""}},
				{12, t0.Add(2 * time.Millisecond), []byte{}, "", map[string]string{"a": "2"}},
				{13, t0, nil, "v3", map[string]string{"a": "1", "b": ""}},
			}
			all := slices.Concat(b1, b2, marker)
			check := func(name string, got []decoded, next int64, err error, want []decoded, wantNext int64) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if next != wantNext {
					t.Errorf("%s: next offset %d, want %d", name, next, wantNext)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: %d records, want %d: %+v", name, len(got), len(want), got)
				}
				for i := range got {
					g, w := got[i], want[i]
					if g.offset != w.offset || !g.ts.Equal(w.ts) || (g.key == nil) != (w.key == nil) ||
						!bytes.Equal(g.key, w.key) || g.value != w.value || !maps.Equal(g.headers, w.headers) {
						t.Errorf("%s: record %d = %+v, want %+v", name, i, g, w)
					}
				}
			}
			got, next, err := decodeAll(t, all, 10, -1)
			check("all", got, next, err, want, 15)
			got, next, err = decodeAll(t, all, 12, -1)
			check("from 12", got, next, err, want[2:], 15)
			got, next, err = decodeAll(t, all[:len(all)-5], 10, -1)
			check("truncated marker", got, next, err, want, 14)
			got, next, err = decodeAll(t, slices.Concat(b1, b2[:len(b2)-1]), 10, -1)
			check("truncated batch", got, next, err, want[:3], 13)
			got, next, err = decodeAll(t, all, 10, 2)
			check("refused", got, next, err, want[:2], 12)
			got, next, err = decodeAll(t, marker, 14, -1)
			check("marker only", got, next, err, nil, 15)
		})
	}
}

// TestDecodeLegacy decodes a message set of format 1 (before Kafka 0.11)
// and a format-2 batch after it.
func TestDecodeLegacy(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_123)
	for _, codec := range []compress.Compression{0, compress.Gzip} {
		v1 := encodeSet(t, 1, 0, codec,
			kafkago.Record{Time: t0, Key: kafkago.NewBytes([]byte("k0")), Value: kafkago.NewBytes([]byte("v0"))},
			kafkago.Record{Time: t0, Value: kafkago.NewBytes([]byte("v1"))})
		v2 := encodeBatch(t, 2, 0, kafkago.Record{Time: t0, Value: kafkago.NewBytes([]byte("v2"))})
		got, next, err := decodeAll(t, slices.Concat(v1, v2), 0, -1)
		if err != nil {
			t.Fatalf("%v: %v", codec, err)
		}
		var vals []string
		for _, g := range got {
			vals = append(vals, g.value)
		}
		if !slices.Equal(vals, []string{"v0", "v1", "v2"}) || next != 3 || string(got[0].key) != "k0" || got[1].key != nil {
			t.Fatalf("%v: decoded %+v, next %d", codec, got, next)
		}
	}
}

// TestDecodeBadBatch: a corrupted batch or an old record format is an
// error wrapping errBadBatch, and nothing of it is delivered.
func TestDecodeBadBatch(t *testing.T) {
	b := encodeBatch(t, 0, 0, kafkago.Record{Value: kafkago.NewBytes([]byte("value"))})
	corrupt := slices.Clone(b)
	corrupt[len(corrupt)-3] ^= 0xff
	old := slices.Clone(b)
	old[12+batchMagic] = 1
	for name, in := range map[string][]byte{"crc": corrupt, "magic": old} {
		got, next, err := decodeAll(t, in, 0, -1)
		if !errors.Is(err, errBadBatch) || len(got) != 0 || next != 0 {
			t.Errorf("%s: %d records, next %d, error %v; want none, 0 and errBadBatch", name, len(got), next, err)
		}
	}
}

// TestDecodeCutFirstBatch: a first batch that claims more bytes than the
// response holds is an error (a broker always sends the first batch whole),
// not an empty fetch that would be retried at once, forever.
func TestDecodeCutFirstBatch(t *testing.T) {
	b := slices.Clone(encodeBatch(t, 5, 0, kafkago.Record{Value: kafkago.NewBytes([]byte("value"))}))
	binary.BigEndian.PutUint32(b[8:], binary.BigEndian.Uint32(b[8:])+1)
	got, next, err := decodeAll(t, b, 5, -1)
	if !errors.Is(err, errBadBatch) || len(got) != 0 || next != 5 {
		t.Errorf("%d records, next %d, error %v; want none, 5 and errBadBatch", len(got), next, err)
	}
}

// TestDecodeNoTimestamp: a record without a timestamp (negative) has a zero
// Timestamp, not the one of the record before it.
func TestDecodeNoTimestamp(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	b := encodeBatch(t, 0, 0,
		kafkago.Record{Time: t0, Value: kafkago.NewBytes([]byte("a"))},
		kafkago.Record{Time: t0.Add(-time.Duration(t0.UnixMilli()+1) * time.Millisecond), Value: kafkago.NewBytes([]byte("b"))})
	got, _, err := decodeAll(t, b, 0, -1)
	if err != nil || len(got) != 2 {
		t.Fatalf("%d records, error %v", len(got), err)
	}
	if !got[0].ts.Equal(t0) || !got[1].ts.IsZero() {
		t.Errorf("timestamps %v, %v; want %v and zero", got[0].ts, got[1].ts, t0)
	}
}

// TestHeaderCacheRepeatedKey: a record shares the previous record's header
// set only when its headers are the same entries in the same order (so
// HeaderAt keeps each record's order): a repeated key never matches a set
// of as many distinct keys.
func TestHeaderCacheRepeatedKey(t *testing.T) {
	c := headerCache{last: &headerset.Set{List: []headerset.Header{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}}}}
	h := func(k, v string) rawHeader { return rawHeader{key: []byte(k), value: []byte(v)} }
	if c.reusable([]rawHeader{h("a", "1"), h("a", "1")}) {
		t.Error("[a:1 a:1] reuses [a:1 b:2]")
	}
	if c.reusable([]rawHeader{h("b", "2"), h("a", "1")}) {
		t.Error("[b:2 a:1] reuses [a:1 b:2]: HeaderAt would not follow the record's order")
	}
	if !c.reusable([]rawHeader{h("a", "1"), h("b", "2")}) {
		t.Error("[a:1 b:2] does not reuse [a:1 b:2]")
	}
}

// bombBatch crafts a record batch (format 2) at offset base, compressed with
// codec, holding one record whose value is n zero bytes: a few KiB that
// decompress to n bytes. The value is streamed through the compressor, so
// the batch is built without holding n bytes. It returns the batch and the
// size of its records decompressed.
func bombBatch(t *testing.T, base int64, codec compress.Compression, n int) ([]byte, int) {
	t.Helper()
	var recs bytes.Buffer
	w := codec.Codec().NewWriter(&recs)
	body := binary.AppendVarint(nil, 0)        // timestamp delta
	body = binary.AppendVarint(body, 0)        // offset delta
	body = binary.AppendVarint(body, -1)       // no key
	body = binary.AppendVarint(body, int64(n)) // value length
	head := binary.AppendVarint(nil, int64(1+len(body)+n+1))
	head = append(head, 0) // attributes
	if _, err := w.Write(slices.Concat(head, body)); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zeros) {
		if _, err := w.Write(zeros[:min(left, len(zeros))]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write(binary.AppendVarint(nil, 0)); err != nil { // no headers
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 12+batchRecords, 12+batchRecords+recs.Len())
	binary.BigEndian.PutUint64(b, uint64(base))
	b[12+batchMagic] = 2
	binary.BigEndian.PutUint16(b[12+batchAttrs:], uint16(codec))
	binary.BigEndian.PutUint32(b[12+batchLastDelta:], 0)
	binary.BigEndian.PutUint64(b[12+batchFirstTS:], 1_700_000_000_000)
	binary.BigEndian.PutUint64(b[12+batchMaxTS:], 1_700_000_000_000)
	binary.BigEndian.PutUint64(b[12+batchMaxTS+8:], ^uint64(0))  // producer id -1
	binary.BigEndian.PutUint16(b[12+batchMaxTS+16:], ^uint16(0)) // producer epoch -1
	binary.BigEndian.PutUint32(b[12+batchMaxTS+18:], ^uint32(0)) // base sequence -1
	binary.BigEndian.PutUint32(b[12+batchCount:], 1)
	b = append(b, recs.Bytes()...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[12+batchCRC:], crc32.Checksum(b[12+batchAttrs:], crcTable))
	return b, len(head) + len(body) + n + 1
}

// TestDecodeBomb: a compressed batch that decompresses past the fetcher's
// bound is an error wrapping errBatchTooLarge after no more than about the
// bound was allocated; the records before it are delivered, none of it, and
// the next offset is its first (it is not skipped). At the bound exactly it
// decodes.
func TestDecodeBomb(t *testing.T) {
	const bomb, limit = 64 << 20, 1 << 20
	for _, codec := range []compress.Compression{compress.Gzip, compress.Zstd, compress.Snappy, compress.Lz4} {
		t.Run(codec.String(), func(t *testing.T) {
			good := encodeBatch(t, 3, codec, kafkago.Record{Value: kafkago.NewBytes([]byte("before"))})
			b, _ := bombBatch(t, 4, codec, bomb)
			t.Logf("%d bytes decompress to %d", len(b), bomb)
			f := &fetcher{topic: "t", partition: 3, maxInflate: limit}
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			got, next, err := decodeWith(t, f, slices.Concat(good, b), 3, -1)
			runtime.ReadMemStats(&ms1)
			if !errors.Is(err, errBatchTooLarge) || len(got) != 1 || got[0].value != "before" || next != 4 {
				t.Fatalf("%d records, next %d, error %v; want the one before, 4 and errBatchTooLarge", len(got), next, err)
			}
			// Unbounded, the buffer alone would take the bomb's size (and
			// more as it grows); the zstd decoder's own state is ~13 MiB.
			if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > bomb/2 {
				t.Errorf("decoding allocated %d bytes; the bound is %d", alloc, limit)
			}
			if f.inflated != nil {
				t.Errorf("the over-limit buffer (%d bytes) is kept", cap(f.inflated))
			}

			small, size := bombBatch(t, 4, codec, 1000)
			f = &fetcher{topic: "t", partition: 3, maxInflate: size}
			got, next, err = decodeWith(t, f, small, 4, -1)
			if err != nil || len(got) != 1 || len(got[0].value) != 1000 || next != 5 {
				t.Fatalf("at the bound: %d records, next %d, error %v", len(got), next, err)
			}
			if f.inflated == nil {
				t.Error("the small batch's decompression buffer is not kept for the next batch")
			}
			f = &fetcher{topic: "t", partition: 3, maxInflate: size - 1}
			if _, next, err = decodeWith(t, f, small, 4, -1); !errors.Is(err, errBatchTooLarge) || next != 4 {
				t.Fatalf("a byte past the bound: next %d, error %v", next, err)
			}

			// A large batch within the bound decodes, and its buffer is
			// not kept: a fetcher per partition must not hold one each.
			large, _ := bombBatch(t, 4, codec, 2*maxKeptInflated)
			f = &fetcher{topic: "t", partition: 3, maxInflate: 64 << 20}
			if got, _, err = decodeWith(t, f, large, 4, -1); err != nil || len(got) != 1 {
				t.Fatalf("a %d-byte batch within the bound: %d records, error %v", 2*maxKeptInflated, len(got), err)
			}
			if f.inflated != nil {
				t.Errorf("a %d-byte decompression buffer is kept", cap(f.inflated))
			}
		})
	}
}

// TestDecodeCorruptCompressed: compressed bytes that do not decompress are
// a malformed batch (errBadBatch), not delivered.
func TestDecodeCorruptCompressed(t *testing.T) {
	for _, codec := range []compress.Compression{compress.Gzip, compress.Zstd} {
		b := slices.Clone(encodeBatch(t, 0, codec, kafkago.Record{Value: kafkago.NewBytes(bytes.Repeat([]byte("v"), 100))}))
		for i := 12 + batchRecords; i < len(b); i++ {
			b[i] ^= 0x5a
		}
		binary.BigEndian.PutUint32(b[12+batchCRC:], crc32.Checksum(b[12+batchAttrs:], crcTable))
		got, next, err := decodeAll(t, b, 0, -1)
		if !errors.Is(err, errBadBatch) || len(got) != 0 || next != 0 {
			t.Errorf("%v: %d records, next %d, error %v; want none, 0 and errBadBatch", codec, len(got), next, err)
		}
	}
}

// TestDecodeLegacyBomb: a compressed message of format 1 that decompresses
// past the bound is refused before kafka-go's decoder inflates it; the
// message before it is delivered, and it becomes a badBatch (a stand-in)
// covering its offset, with its bytes. Under the bound it decodes.
func TestDecodeLegacyBomb(t *testing.T) {
	for _, codec := range []compress.Compression{compress.Gzip, compress.Snappy} {
		before := encodeSet(t, 1, 0, 0, kafkago.Record{Value: kafkago.NewBytes([]byte("before"))})
		bomb := encodeSet(t, 1, 1, codec, kafkago.Record{Value: kafkago.NewBytes(make([]byte, 4<<20))})
		b := slices.Concat(before, bomb)
		f := &fetcher{topic: "t", partition: 3, maxInflate: 1 << 20}
		got, next, err := decodeWith(t, f, b, 0, -1)
		var bad *badBatch
		if !errors.As(err, &bad) || !errors.Is(err, errBatchTooLarge) || len(got) != 1 || got[0].value != "before" || next != 1 {
			t.Fatalf("%v: %d records, next %d, error %v; want \"before\", 1 and a badBatch wrapping errBatchTooLarge", codec, len(got), next, err)
		}
		wantRaw := bomb
		if len(bomb) > maxStandInBytes {
			wantRaw = nil // too large to carry: offsets and size only
		}
		if bad.first != 1 || bad.last != 1 || bad.size != len(bomb) || !bytes.Equal(bad.raw, wantRaw) {
			t.Errorf("%v: badBatch %d-%d of %d bytes carrying %d; want 1-1 of %d carrying %d", codec, bad.first, bad.last, bad.size, len(bad.raw), len(bomb), len(wantRaw))
		}
		f.maxInflate = 8 << 20
		if got, _, err := decodeWith(t, f, b, 0, -1); err != nil || len(got) != 2 || len(got[1].value) != 4<<20 {
			t.Errorf("%v under the bound: %d records, error %v", codec, len(got), err)
		}
	}
}
