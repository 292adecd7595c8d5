package nats

import (
	"maps"
	"reflect"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
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

// TestServerSize: a message's size is the one the server counts against a
// pull request's max_bytes: subject, reply subject, header block and
// payload; from a pinned consumer not the Nats-Pin-Id header it adds last,
// after counting (nor, when that is the only header, the block around it).
// A Nats-Pin-Id header of the message itself is counted.
func TestServerSize(t *testing.T) {
	const subj, reply, data = "orders", "$JS.ACK.ES_orders.g.1.2.3.4.5", "payload"
	base := len(subj) + len(reply) + len(data)
	block := func(lines ...string) int { // "NATS/1.0\r\n", the lines, "\r\n"
		n := len("NATS/1.0\r\n") + len("\r\n")
		for _, l := range lines {
			n += len(l) + len("\r\n")
		}
		return n
	}
	for _, tc := range []struct {
		h      natsgo.Header
		pinned bool
		want   int
	}{
		{nil, false, base},
		{nil, true, base},
		{natsgo.Header{"a": {"b"}}, true, base + block("a: b")},
		{natsgo.Header{pinIDHdr: {"pin-1"}}, true, base},
		{natsgo.Header{"a": {"b"}, pinIDHdr: {"pin-1"}}, true, base + block("a: b")},
		{natsgo.Header{pinIDHdr: {"mine", "pin-1"}}, true, base + block(pinIDHdr+": mine")},
		{natsgo.Header{pinIDHdr: {"mine"}}, false, base + block(pinIDHdr+": mine")},
	} {
		m := &natsgo.Msg{Subject: subj, Reply: reply, Data: []byte(data), Header: tc.h}
		if got := serverSize(m, tc.pinned); got != tc.want {
			t.Errorf("serverSize with headers %v, pinned %v = %d, want %d (Size %d)", tc.h, tc.pinned, got, tc.want, m.Size())
		}
	}
}

// TestPullNeed: a pull request refused a message for its bytes records
// that the next message needs more than the bytes left, by the server's
// count (Nats-Pending-Bytes) or, when that is missing or smaller, by the
// subscription's own; and ends.
func TestPullNeed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pending string // the header; "" for none
		want    int
	}{
		{"server counts more", "250", 251},
		{"no header", "", 201},
		{"server counts less", "120", 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &subscription{a: &Adapter{}, wake: make(chan struct{}, 1)}
			s.req = pull{subject: "r", left: 8, maxBytes: 300, bytes: 100}
			h := natsgo.Header{statusHdr: {"409"}, descrHdr: {"Message Size Exceeds MaxBytes"}}
			if tc.pending != "" {
				h[pendingBytesHdr] = []string{tc.pending}
			}
			s.onStatus(&natsgo.Msg{Subject: "r", Header: h}, "409")
			if !s.req.over || s.req.err != nil || s.req.need != tc.want {
				t.Errorf("after the 409: over %v, err %v, need %d; want over, no error, need %d", s.req.over, s.req.err, s.req.need, tc.want)
			}
		})
	}
}

// TestPullEndsOnExactBytes: the server ends a pull request without a word
// once its batch is delivered or its max_bytes exactly; the subscription
// counts both and then takes the request as over (and wakes run), rather
// than waiting for heartbeats that no longer come.
func TestPullEndsOnExactBytes(t *testing.T) {
	newSub := func() *subscription {
		return &subscription{
			a:    &Adapter{cfg: Config{MaxInFlight: 10, MaxInFlightBytes: 1000}},
			held: map[*Message]struct{}{}, out: make(chan eventstream.Message, 10), wake: make(chan struct{}, 1),
		}
	}
	msg := func(size int) *natsgo.Msg {
		const reply = "$JS.ACK.ES_t.g.1.1.1.1.0"
		return &natsgo.Msg{Subject: "t", Reply: reply, Data: make([]byte, size-len("t")-len(reply))}
	}
	for _, tc := range []struct {
		name         string
		batch, bytes int
		sizes        []int
		overAfter    int // messages after which the request is over; 0: never
	}{
		{"bytes exactly", 10, 300, []int{100, 100, 100}, 3},
		{"bytes not yet", 10, 300, []int{100, 100, 99}, 0},
		{"batch", 2, 1000, []int{100, 100}, 2},
		{"no byte bound", 10, 0, []int{400, 400, 400}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSub()
			s.req = pull{subject: "r", left: tc.batch, maxBytes: tc.bytes}
			for i, size := range tc.sizes {
				s.onMsg(msg(size))
				if over, want := s.req.over, tc.overAfter > 0 && i+1 >= tc.overAfter; over != want {
					t.Fatalf("after %d messages over = %v, want %v (%d bytes delivered)", i+1, over, want, s.req.bytes)
				}
			}
			if woken := len(s.wake) == 1; woken != (tc.overAfter > 0) {
				t.Errorf("run woken = %v", woken)
			}
			total := 0
			for _, size := range tc.sizes {
				total += size
			}
			if s.heldBytes != total || len(s.held) != len(tc.sizes) {
				t.Errorf("held %d messages, %d bytes; want %d, %d", len(s.held), s.heldBytes, len(tc.sizes), total)
			}
		})
	}
}
