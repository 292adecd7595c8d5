package nats

import (
	"testing"
	"time"
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
