package nats

import (
	"maps"
	"reflect"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

func TestParseAckSubject(t *testing.T) {
	for _, tc := range []struct {
		subject string
		want    ackMeta
		ok      bool
	}{
		{"$JS.ACK.ES_orders.billing.3.42.17.1796290792083641042.9",
			ackMeta{seq: 42, delivered: 3, stored: time.Unix(0, 1796290792083641042)}, true},
		{"$JS.ACK._.ACCHASH.ES_orders.billing.1.7.7.1796290792083641042.0.Xy12",
			ackMeta{seq: 7, delivered: 1, stored: time.Unix(0, 1796290792083641042)}, true},
		{"$JS.ACK.hub.ACCHASH.ES_orders.billing.2.8.9.1796290792083641042.5",
			ackMeta{seq: 8, delivered: 2, stored: time.Unix(0, 1796290792083641042)}, true},
		{"$JS.ACK.ES_orders.billing.x.42.17.1.9", ackMeta{}, false},
		{"$JS.ACK.ES_orders.billing.3.42", ackMeta{}, false},
		{"$JS.ACK.a.b.c.d.e.f.g.h", ackMeta{}, false}, // 8 tokens: neither layout
		{"_INBOX.abc.1", ackMeta{}, false},
		{"", ackMeta{}, false},
	} {
		got, ok := parseAckSubject(tc.subject)
		if ok != tc.ok || got.seq != tc.want.seq || got.delivered != tc.want.delivered || !got.stored.Equal(tc.want.stored) {
			t.Errorf("parseAckSubject(%q) = %+v, %v; want %+v, %v", tc.subject, got, ok, tc.want, tc.ok)
		}
	}
}

// TestNewMessageSharesHeaders: consecutive messages with the same user
// headers share one map; any difference (a value, a header more or less, an
// encoded header) gets a map of its own with exactly that message's headers.
func TestNewMessageSharesHeaders(t *testing.T) {
	s := &subscription{topic: "t", group: "g"}
	msg := func(h natsgo.Header) *Message {
		return newMessage(s, &natsgo.Msg{Reply: "$JS.ACK.x", Header: h})
	}
	ce := natsgo.Header{"content-type": {"application/cloudevents+json"}, HeaderTime: {"5"}}
	m1 := msg(ce)
	m2 := msg(natsgo.Header{"content-type": {"application/cloudevents+json"}, HeaderTime: {"6"}, HeaderKey: {"k"}})
	if !maps.Equal(m1.Headers(), map[string]string{"content-type": "application/cloudevents+json"}) {
		t.Fatalf("m1 headers %v", m1.Headers())
	}
	if reflect.ValueOf(m1.Headers()).UnsafePointer() != reflect.ValueOf(m2.Headers()).UnsafePointer() {
		t.Error("the same headers got a map each")
	}
	if string(m2.Key()) != "k" || m2.Timestamp().UnixNano() != 6 {
		t.Errorf("m2 key %q time %v", m2.Key(), m2.Timestamp())
	}
	for _, tc := range []struct {
		h    natsgo.Header
		want map[string]string
	}{
		{natsgo.Header{"content-type": {"text/plain"}}, map[string]string{"content-type": "text/plain"}},
		{natsgo.Header{"content-type": {"text/plain"}, "a": {"1"}}, map[string]string{"content-type": "text/plain", "a": "1"}},
		{natsgo.Header{"a": {"1"}}, map[string]string{"a": "1"}},
		{natsgo.Header{"a": {"1"}, HeaderEncodedPrefix + "Yg": {"Mg=="}}, map[string]string{"a": "1", "b": "2"}},
		{natsgo.Header{"a": {"1"}, HeaderEncodedPrefix + "Yg": {"Mw=="}}, map[string]string{"a": "1", "b": "3"}},
		{natsgo.Header{"Nats-Msg-Id": {"x"}}, nil},
		{natsgo.Header{"a": {"1"}}, map[string]string{"a": "1"}},
	} {
		m := msg(tc.h)
		if got := m.Headers(); !maps.Equal(got, tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("headers %v: got %v, want %v", tc.h, got, tc.want)
		}
		listed := map[string]string{} // the HeaderLister entries hold the same
		for i := range m.NumHeaders() {
			k, v := m.HeaderAt(i)
			listed[k] = v
		}
		if m.NumHeaders() != len(tc.want) || !maps.Equal(listed, tc.want) {
			t.Errorf("headers %v: %d entries %v, want %v", tc.h, m.NumHeaders(), listed, tc.want)
		}
	}
}
