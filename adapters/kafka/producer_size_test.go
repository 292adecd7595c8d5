package kafka

import (
	"bytes"
	"maps"
	"strings"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/segmentio/kafka-go/compress"
)

// TestBatchSizeIsATightLowerBound compares batchSize with the size of the
// record batch the producer actually sends (what the broker compares with
// max.message.bytes): never above it, or records
// the broker accepts would be refused, and close to it.
func TestBatchSizeIsATightLowerBound(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 1<<20)
	for _, tc := range []struct {
		name string
		r    eventstream.Record
	}{
		{"empty", eventstream.Record{}},
		{"value", eventstream.Record{Value: []byte("hello")}},
		{"key and value", eventstream.Record{Key: []byte("customer-42"), Value: []byte(`{"n":1}`)}},
		{"headers", eventstream.Record{Key: []byte("k"), Value: []byte("v"),
			Headers: map[string]string{"content-type": "application/cloudevents+json", "traceparent": strings.Repeat("0", 55)}}},
		{"200-byte key", eventstream.Record{Key: bytes.Repeat([]byte("k"), 200), Value: []byte("v")}},
		{"1 MiB value", eventstream.Record{Key: []byte("k"), Value: big}},
		{"1 MiB value and headers", eventstream.Record{Value: big, Headers: map[string]string{"a": strings.Repeat("h", 300)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var enc batchEncoder
			b, err := enc.appendBatch(nil, []*pendingRecord{{rec: tc.r}}, 0, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			actual := len(b)
			got := batchSize(tc.r)
			if got > actual {
				t.Fatalf("batchSize %d > encoded batch %d: a record the broker accepts would be refused", got, actual)
			}
			if actual-got > 32 {
				t.Errorf("batchSize %d is %d bytes below the encoded batch %d", got, actual-got, actual)
			}
		})
	}
}

// TestBatchRoundTrip encodes records with every codec and decodes them
// with the fetcher's decoder: keys (none, empty, set), values (nil is
// empty), headers, timestamps (zero is now) and offsets survive.
func TestBatchRoundTrip(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_123)
	now := t0.Add(time.Hour)
	recs := []eventstream.Record{
		{Key: []byte("k0"), Value: []byte("v0"), Time: t0},
		{Value: nil, Time: t0.Add(-time.Second)},
		{Key: []byte{}, Value: bytes.Repeat([]byte("x"), 300), Headers: map[string]string{"a": "1", "b": "", "content-type": "text/plain"}},
	}
	for _, codec := range []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd} {
		var enc batchEncoder
		var prs []*pendingRecord
		for _, r := range recs {
			prs = append(prs, &pendingRecord{rec: r})
		}
		b, err := enc.appendBatch(nil, prs, codec, now)
		if err != nil {
			t.Fatal(err)
		}
		// A second batch in the same buffer, as a request of two partitions.
		b, err = enc.appendBatch(b, prs[:1], codec, now)
		if err != nil {
			t.Fatal(err)
		}
		got, next, err := decodeAll(t, b, 0, -1)
		if err != nil {
			t.Fatalf("%v: %v", codec, err)
		}
		// Both batches have base offset 0 (the broker assigns offsets).
		if len(got) != len(recs)+1 || next != int64(len(recs)) || got[len(recs)].value != "v0" {
			t.Fatalf("%v: %d records, next %d", codec, len(got), next)
		}
		for i, r := range recs {
			g := got[i]
			wantTS := r.Time
			if wantTS.IsZero() {
				wantTS = now
			}
			if g.offset != int64(i) || !g.ts.Equal(wantTS) || (g.key == nil) != (r.Key == nil) || !bytes.Equal(g.key, r.Key) ||
				g.value != string(r.Value) || !maps.Equal(g.headers, r.Headers) && len(r.Headers) > 0 {
				t.Errorf("%v: record %d = %+v, want %+v", codec, i, g, r)
			}
		}
	}
}
