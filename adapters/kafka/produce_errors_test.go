package kafka

import (
	"errors"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestPartitionError: the broker's verdict on one partition of a produce
// response, including records refused with a zero partition error code
// (KIP-467), which are an error, not a success.
func TestPartitionError(t *testing.T) {
	resp := func(code int16, msg *string, records ...int32) *kmsg.ProduceResponse {
		r := kmsg.NewPtrProduceResponse()
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = "t"
		rp := kmsg.NewProduceResponseTopicPartition()
		rp.Partition = 2
		rp.ErrorCode = code
		rp.ErrorMessage = msg
		for _, i := range records {
			er := kmsg.NewProduceResponseTopicPartitionErrorRecord()
			er.RelativeOffset = i
			rp.ErrorRecords = append(rp.ErrorRecords, er)
		}
		rt.Partitions = append(rt.Partitions, rp)
		r.Topics = append(r.Topics, rt)
		return r
	}
	text := "compacted topic needs a key"
	for _, tc := range []struct {
		name string
		resp *kmsg.ProduceResponse
		want error // nil: success
	}{
		{"ok", resp(0, nil), nil},
		{"partition error", resp(int16(kafkago.NotLeaderForPartition), nil), kafkago.NotLeaderForPartition},
		{"partition error with text", resp(int16(kafkago.InvalidRecord), &text, 1), kafkago.InvalidRecord},
		{"refused records, code 0, no text", resp(0, nil, 3), kafkago.InvalidRecord},
	} {
		err := partitionError(tc.resp, "t", 2)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := partitionError(resp(0, nil), "t", 3); !errors.Is(err, errNoPartitionResponse) {
		t.Errorf("a partition missing from the response: %v", err)
	}
}

// TestConnStale: a writer does not send on a connection idle past
// produceIdleTimeout (the broker may have closed it; with acks 0 nothing
// would tell) or whose SASL session has ended.
func TestConnStale(t *testing.T) {
	now := time.Now()
	c := &brokerConn{}
	if c.stale(now, now.Add(-time.Second)) {
		t.Error("a connection used a second ago is stale")
	}
	if !c.stale(now, now.Add(-produceIdleTimeout-time.Second)) {
		t.Error("a connection idle past produceIdleTimeout is not stale")
	}
	c.expires = now.Add(-time.Millisecond)
	if !c.stale(now, now) {
		t.Error("a connection whose SASL session ended is not stale")
	}
	c.expires = now.Add(time.Minute)
	if c.stale(now, now) {
		t.Error("a connection within its SASL session is stale")
	}
}
