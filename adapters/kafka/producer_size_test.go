package kafka

import (
	"bytes"
	"strings"
	"testing"

	eventstream "github.com/eventstream-go/eventstream"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// TestBatchSizeIsATightLowerBound compares batchSize with the size of the
// record batch the producer actually sends (kafka-go's v2 encoding, what
// the broker compares with max.message.bytes): never above it, or records
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
			rs := protocol.RecordSet{Version: 2, Records: kafkago.NewRecordReader((&pendingRecord{rec: tc.r}).kafkaRecord())}
			var buf bytes.Buffer
			if _, err := rs.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			actual := buf.Len() - 4 // without the record set's size prefix
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
