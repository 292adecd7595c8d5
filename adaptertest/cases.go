package adaptertest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstream-go/eventstream"
	"go.uber.org/goleak"
)

// testCase is one subtest of Run.
type testCase struct {
	name string
	run  func(h *harness)
}

// cases lists the subtests of Run, in order. Keep the package documentation
// in sync.
var cases = []testCase{
	{"RoundTrip", testRoundTrip},
	{"RecordRoundTrip", testRecordRoundTrip},
	{"Headers", testHeaders},
	{"EmptyPayload", testEmptyPayload},
	{"LargePayload", testLargePayload},
	{"BinaryPayload", testBinaryPayload},
	{"TopicIsolation", testTopicIsolation},
	{"GroupsFanOut", testGroupsFanOut},
	{"CompetingConsumers", testCompetingConsumers},
	{"RedeliveryAfterCancel", testRedeliveryAfterCancel},
	{"AckTwice", testAckTwice},
	{"CancelClosesChannel", testCancelClosesChannel},
	{"ContextCancelEndsSubscription", testContextCancelEndsSubscription},
	{"CloseEndsSubscriptions", testCloseEndsSubscriptions},
	{"CloseTwice", testCloseTwice},
	{"PublishAfterClose", testPublishAfterClose},
	{"SubscribeAfterClose", testSubscribeAfterClose},
	{"ConcurrentPublishers", testConcurrentPublishers},
	{"KeyOrder", testKeyOrder},
}

// checkTimestamp checks that a broker-assigned timestamp is set and lies
// within [before, after], widened by the allowed clock skew.
func (h *harness) checkTimestamp(m eventstream.Message, before, after time.Time) {
	h.t.Helper()
	ts := m.Timestamp()
	if ts.IsZero() {
		h.t.Errorf("Timestamp() of %q is the zero time", m.Value())
		return
	}
	lo, hi := before.Add(-h.o.clockSkew), after.Add(h.o.clockSkew)
	if ts.Before(lo) || ts.After(hi) {
		h.t.Errorf("Timestamp() of %q = %v, want between %v and %v (publish time ± clock skew %v)",
			m.Value(), ts, lo, hi, h.o.clockSkew)
	}
}

func testRoundTrip(h *harness) {
	t := h.t
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)
	before := time.Now()
	h.publishString(topic, "round-trip")
	after := time.Now()

	s := h.subscribe("subscription", topic, group)
	m := h.next(s, func() string { return `message "round-trip"` })
	if got := string(m.Value()); got != "round-trip" {
		t.Fatalf("Value() = %q, want %q", got, "round-trip")
	}
	if m.Topic() != topic {
		t.Errorf("Topic() = %q, want %q", m.Topic(), topic)
	}
	if len(m.Key()) != 0 {
		t.Errorf("Key() = %q for a message published without a key, want nil", m.Key())
	}
	h.checkTimestamp(m, before, after)
	h.ack(s, m)
}

func testRecordRoundTrip(h *harness) {
	t := h.t
	rp := h.requireRecordPublisher()
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)

	// An hour ago is clearly not "now" and still within any retention.
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	h.publishRecord(rp, topic, eventstream.Record{Key: []byte("key-1"), Value: []byte("with-time"), Time: ts})
	before := time.Now()
	h.publishRecord(rp, topic, eventstream.Record{Key: []byte("key-2"), Value: []byte("without-time")})
	after := time.Now()

	s := h.subscribe("subscription", topic, group)
	tr := newTracker("with-time", "without-time")
	for !tr.done() {
		m := h.next(s, tr.missing)
		v := string(m.Value())
		if !tr.expects(v) {
			t.Errorf("unexpected message %q", v)
			continue
		}
		tr.mark(v)
		if m.Topic() != topic {
			t.Errorf("Topic() of %q = %q, want %q", v, m.Topic(), topic)
		}
		switch v {
		case "with-time":
			if got := string(m.Key()); got != "key-1" {
				t.Errorf("Key() of %q = %q, want %q", v, got, "key-1")
			}
			if got := m.Timestamp(); got.UnixMilli() != ts.UnixMilli() {
				t.Errorf("Timestamp() of %q = %v, want Record.Time %v (to the millisecond)", v, got, ts)
			}
		case "without-time":
			if got := string(m.Key()); got != "key-2" {
				t.Errorf("Key() of %q = %q, want %q", v, got, "key-2")
			}
			h.checkTimestamp(m, before, after)
		}
		h.ack(s, m)
	}
}

func testHeaders(h *harness) {
	t := h.t
	rp := h.requireRecordPublisher()
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)
	headers := map[string]string{
		"trace-id":     "4bf92f3577b34da6a3ce929d0e0e4736",
		"content-type": "application/json; charset=utf-8",
		"empty":        "",
		"unicode-ü":    "välue ✓",
	}
	h.publishRecord(rp, topic, eventstream.Record{Key: []byte("k"), Value: []byte("with-headers"), Headers: maps.Clone(headers)})
	h.publishRecord(rp, topic, eventstream.Record{Key: []byte("k"), Value: []byte("without-headers")})

	s := h.subscribe("subscription", topic, group)
	tr := newTracker("with-headers", "without-headers")
	for !tr.done() {
		m := h.next(s, tr.missing)
		v := string(m.Value())
		if !tr.expects(v) {
			t.Errorf("unexpected message %q", v)
			continue
		}
		tr.mark(v)
		h.ack(s, m)
		hc, ok := m.(eventstream.HeaderCarrier)
		if !ok {
			t.Skipf("messages of type %T do not implement eventstream.HeaderCarrier", m)
		}
		got := hc.Headers()
		if hl, ok := m.(eventstream.HeaderLister); ok {
			listed := map[string]string{}
			for i := range hl.NumHeaders() {
				k, hv := hl.HeaderAt(i)
				listed[k] = hv
			}
			if !maps.Equal(listed, got) {
				t.Errorf("HeaderAt entries = %q, Headers() = %q: a HeaderLister must list what Headers holds", listed, got)
			}
		}
		switch v {
		case "with-headers":
			if !maps.Equal(got, headers) {
				t.Errorf("Headers() = %q, want %q", got, headers)
			}
		case "without-headers":
			if len(got) != 0 {
				t.Errorf("Headers() of a record without headers = %q, want none", got)
			}
		}
	}
}

// roundTripPayloads publishes payloads, subscribes and checks that exactly
// those payloads arrive. Payloads must be distinct unless they are all empty.
func roundTripPayloads(h *harness, payloads [][]byte) {
	t := h.t
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)
	tr := newTracker()
	count := map[string]int{}
	for _, p := range payloads {
		h.publish(topic, p)
		tr.add(string(p))
		count[string(p)]++
	}
	s := h.subscribe("subscription", topic, group)
	for received := 0; received < len(payloads); {
		m := h.next(s, func() string { return fmt.Sprintf("%d more payloads", len(payloads)-received) })
		v := m.Value()
		switch {
		case count[string(v)] > 0:
			count[string(v)]--
			received++
		case tr.expects(string(v)):
			t.Logf("payload of %d bytes delivered again (allowed)", len(v))
		default:
			t.Errorf("received a payload that was not published (published lengths %v): %s", lengths(payloads), describe(v, payloads))
		}
		h.ack(s, m)
	}
}

// describe explains how got differs from the closest of want.
func describe(got []byte, want [][]byte) string {
	for _, w := range want {
		if len(w) == len(got) {
			i := 0
			for i < len(w) && w[i] == got[i] {
				i++
			}
			return fmt.Sprintf("%d bytes, first difference at byte %d from the published payload of that length", len(got), i)
		}
	}
	if len(got) > 64 {
		return fmt.Sprintf("%d bytes starting %q", len(got), got[:64])
	}
	return fmt.Sprintf("%d bytes %q", len(got), got)
}

// lengths returns the lengths of payloads.
func lengths(payloads [][]byte) []int {
	ls := make([]int, len(payloads))
	for i, p := range payloads {
		ls[i] = len(p)
	}
	return ls
}

func testEmptyPayload(h *harness) {
	roundTripPayloads(h, [][]byte{nil, {}})
}

func testLargePayload(h *harness) {
	p := make([]byte, h.o.largeSize)
	for i := range p {
		p[i] = byte(i*31 + i/251) // not periodic with a power of two
	}
	roundTripPayloads(h, [][]byte{p})
}

func testBinaryPayload(h *harness) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	roundTripPayloads(h, [][]byte{
		all,
		{0x00},
		{0x00, 0x00, 0xff, 0x00},
		{0xff, 0xfe, 0xfd},       // never valid UTF-8
		{0xc3, 0x28},             // invalid continuation byte
		{0xed, 0xa0, 0x80},       // UTF-16 surrogate
		{0xf8, 0x88, 0x80, 0x80}, // 5-byte sequence
		{'{', '"', 0xe2, 0x82},   // truncated multibyte
	})
}

func testTopicIsolation(h *harness) {
	t := h.t
	topicA, topicB := h.name("topic-a"), h.name("topic-b")
	h.declareGroups(topicA, h.name("group-a"))
	h.declareGroups(topicB, h.name("group-b"))
	as, bs := values("a", 5), values("b", 5)
	for i := range as {
		h.publishKeyed(topicB, fmt.Sprintf("k%d", i), bs[i])
		h.publishKeyed(topicA, fmt.Sprintf("k%d", i), as[i])
	}
	// A sentinel published last on each topic: once it and the other
	// messages arrived, a misrouted message would most likely have arrived
	// too.
	h.publishString(topicA, "a-sentinel")
	h.publishString(topicB, "b-sentinel")

	subs := []*sub{
		h.subscribe("subscription to topic a", topicA, h.name("group-a")),
		h.subscribe("subscription to topic b", topicB, h.name("group-b")),
	}
	trs := []*tracker{newTracker(append(as, "a-sentinel")...), newTracker(append(bs, "b-sentinel")...)}
	for !trs[0].done() || !trs[1].done() {
		i, m := h.nextAny(subs, func() string {
			return fmt.Sprintf("topic a: %s; topic b: %s", trs[0].missing(), trs[1].missing())
		})
		v := string(m.Value())
		if !trs[i].expects(v) {
			t.Errorf("%s received %q, which was not published on its topic", subs[i].label, v)
		}
		if want := []string{topicA, topicB}[i]; m.Topic() != want {
			t.Errorf("%s received a message with Topic() = %q, want %q", subs[i].label, m.Topic(), want)
		}
		trs[i].mark(v)
		h.ack(subs[i], m)
	}
}

func testGroupsFanOut(h *harness) {
	t := h.t
	topic := h.name("topic")
	h.declareGroups(topic, h.name("group-1"), h.name("group-2"))
	vs := values("m", 20)
	for i, v := range vs {
		h.publishKeyed(topic, fmt.Sprintf("k%d", i), v)
	}
	subs := []*sub{
		h.subscribe("group 1", topic, h.name("group-1")),
		h.subscribe("group 2", topic, h.name("group-2")),
	}
	trs := []*tracker{newTracker(vs...), newTracker(vs...)}
	for !trs[0].done() || !trs[1].done() {
		i, m := h.nextAny(subs, func() string {
			return fmt.Sprintf("group 1: %s; group 2: %s", trs[0].missing(), trs[1].missing())
		})
		v := string(m.Value())
		if !trs[i].expects(v) {
			t.Errorf("%s received unexpected message %q", subs[i].label, v)
		}
		trs[i].mark(v)
		h.ack(subs[i], m)
	}
}

// poll returns the next message of any of subs, or ok == false when none
// arrives within d. It fails the case when a channel is closed.
func (h *harness) poll(subs []*sub, d time.Duration) (int, eventstream.Message, bool) {
	h.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	return h.waitAny(subs, timer.C, func() string { return "any message" })
}

func testCompetingConsumers(h *harness) {
	t := h.t
	topic, group := h.name("topic"), h.name("group")
	subs := []*sub{
		h.subscribe("consumer 1", topic, group),
		h.subscribe("consumer 2", topic, group),
	}

	// Warm-up: brokers may assign partitions to the second member some time
	// after Subscribe returned, and a reassignment while messages are in
	// flight may legitimately deliver them twice. Publish warm-up messages
	// until both consumers received one, so that the group is settled
	// before the messages under test are published. This only makes the
	// case robust; nothing below depends on it.
	const warmPrefix = "warm-up#"
	active := []bool{false, false}
	deadline := time.Now().Add(h.o.timeout)
	for n := 0; !(active[0] && active[1]) && time.Now().Before(deadline); {
		for range 4 {
			h.publishKeyed(topic, fmt.Sprintf("warm-%d", n), fmt.Sprintf("%s%d", warmPrefix, n))
			n++
		}
		for {
			i, m, ok := h.poll(subs, 100*time.Millisecond)
			if !ok {
				break
			}
			if strings.HasPrefix(string(m.Value()), warmPrefix) {
				active[i] = true
			}
			h.ack(subs[i], m)
		}
	}
	if !(active[0] && active[1]) {
		t.Logf("only one consumer received warm-up messages within %v (fewer partitions than consumers?); continuing", h.o.timeout)
	}

	vs := values("m", 100)
	for i, v := range vs {
		h.publishKeyed(topic, fmt.Sprintf("k%d", i), v)
	}
	tr := newTracker(vs...)
	receiver := map[string]int{}
	perConsumer := []int{0, 0}
	for !tr.done() {
		i, m := h.nextAny(subs, tr.missing)
		v := string(m.Value())
		h.ack(subs[i], m)
		switch {
		case strings.HasPrefix(v, warmPrefix):
			continue
		case !tr.expects(v):
			t.Errorf("%s received unexpected message %q", subs[i].label, v)
			continue
		}
		if prev, seen := receiver[v]; seen {
			if prev != i {
				t.Errorf("%q was received by both consumers of the group, although %s acknowledged it", v, subs[prev].label)
			} else {
				t.Logf("%s received %q twice (allowed: at-least-once)", subs[i].label, v)
			}
			continue
		}
		receiver[v] = i
		perConsumer[i]++
		tr.mark(v)
	}
	t.Logf("consumer 1 received %d messages, consumer 2 received %d", perConsumer[0], perConsumer[1])
}

// receiveAll receives from s until every value of vs arrived, returning the
// messages in the order of their first arrival. Redeliveries are ignored.
func (h *harness) receiveAll(s *sub, vs []string) []eventstream.Message {
	h.t.Helper()
	tr := newTracker(vs...)
	var order []eventstream.Message
	for !tr.done() {
		m := h.next(s, tr.missing)
		v := string(m.Value())
		if !tr.expects(v) {
			h.t.Errorf("%s received unexpected message %q", s.label, v)
			continue
		}
		if tr.mark(v) {
			order = append(order, m)
		}
	}
	return order
}

// expectAfterResubscribe publishes a sentinel on topic, then reads s until
// the sentinel and every value of want arrived. Receiving a value of
// forbidden fails the case; values of allowed are accepted either way.
func (h *harness) expectAfterResubscribe(s *sub, topic string, want []string, forbidden, allowed map[string]bool, hint string) {
	h.t.Helper()
	h.publishKeyed(topic, "sentinel", "sentinel")
	tr := newTracker(append(want, "sentinel")...)
	for !tr.done() {
		m := h.next(s, func() string { return tr.missing() + " " + hint })
		v := string(m.Value())
		switch {
		case forbidden[v]:
			h.t.Errorf("%q was delivered again although the group acknowledged it", v)
		case allowed[v]:
			h.t.Logf("%q was delivered again (allowed)", v)
		case tr.expects(v):
			tr.mark(v)
		default:
			h.t.Errorf("%s received unexpected message %q", s.label, v)
		}
		h.ack(s, m)
	}
}

func testRedeliveryAfterCancel(h *harness) {
	t := h.t
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)
	vs := values("m", 10)
	for i, v := range vs {
		h.publishKeyed(topic, fmt.Sprintf("k%d", i%3), v)
	}

	first := h.subscribe("first subscription", topic, group)
	order := h.receiveAll(first, vs)
	// Acknowledge the first half in the order of arrival. Since messages of
	// one partition arrive in order, that is a prefix of every partition,
	// which offset-committing brokers can record exactly.
	acked := map[string]bool{}
	for _, m := range order[:5] {
		h.ack(first, m)
		acked[string(m.Value())] = true
	}
	h.cancel(first)

	// An Ack after the subscription ended must be harmless: the adapter may
	// record it or ignore it (then the message comes back), but it must not
	// acknowledge any other message.
	late := order[5]
	if err := h.call("Ack after cancel", func(ctx context.Context) error { return h.a.Ack(ctx, group, late) }); err != nil {
		t.Logf("Ack after the subscription ended returned %v (tolerated)", err)
	}

	var unacked []string
	for _, m := range order[6:] {
		unacked = append(unacked, string(m.Value()))
	}
	second := h.subscribe("second subscription", topic, group)
	h.expectAfterResubscribe(second, topic, unacked, acked, map[string]bool{string(late.Value()): true},
		"(messages received but not acknowledged must be delivered again once their subscription ended)")
}

func testAckTwice(h *harness) {
	t := h.t
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)
	vs := values("m", 6)
	for i, v := range vs {
		h.publishKeyed(topic, fmt.Sprintf("k%d", i%2), v)
	}

	first := h.subscribe("first subscription", topic, group)
	order := h.receiveAll(first, vs)
	m := order[0]
	h.ack(first, m)
	if err := h.call("second Ack", func(ctx context.Context) error { return h.a.Ack(ctx, group, m) }); err != nil {
		t.Logf("second Ack of the same message returned %v (tolerated)", err)
	}
	h.cancel(first)

	var rest []string
	for _, m := range order[1:] {
		rest = append(rest, string(m.Value()))
	}
	second := h.subscribe("second subscription", topic, group)
	h.expectAfterResubscribe(second, topic, rest, map[string]bool{string(m.Value()): true}, nil,
		fmt.Sprintf("(not acknowledged, so they must come again; missing ones were probably acknowledged by the second Ack of %q)", m.Value()))
}

// checkNoLeaks fails the case if goroutines other than those matched by
// ignore are running. Adapters may keep shared background goroutines until
// Close, so when goroutines remain the adapter is closed and checked again.
func (h *harness) checkNoLeaks(ignore goleak.Option, after string) {
	h.t.Helper()
	err := goleak.Find(ignore)
	if err == nil {
		return
	}
	if cerr := h.closeAdapter(); cerr != nil {
		h.t.Errorf("Close: %v", cerr)
	}
	if err2 := goleak.Find(ignore); err2 != nil {
		h.t.Errorf("goroutines left %s and after Close:\n%v", after, err2)
		return
	}
	h.t.Logf("goroutines remained %s until Close (allowed for shared background goroutines): %s", after, summarizeGoroutines(err))
}

// summarizeGoroutines condenses a goleak report to the function on top of
// each goroutine's stack, with counts.
func summarizeGoroutines(err error) string {
	const marker = " on top of the stack"
	count := map[string]int{}
	var order []string
	for line := range strings.Lines(err.Error()) {
		_, rest, ok := strings.Cut(line, ", with ")
		if !ok || !strings.Contains(rest, marker) {
			continue
		}
		fn, _, _ := strings.Cut(rest, marker)
		if count[fn] == 0 {
			order = append(order, fn)
		}
		count[fn]++
	}
	if len(order) == 0 {
		return err.Error()
	}
	var b strings.Builder
	for i, fn := range order {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d× %s", count[fn], fn)
	}
	return b.String()
}

// receiveOne publishes one message and receives it on s, so that the
// subscription is known to be active.
func (h *harness) receiveOne(s *sub, topic string) {
	h.t.Helper()
	h.publishString(topic, "ping")
	m := h.next(s, func() string { return `message "ping"` })
	h.ack(s, m)
}

func testCancelClosesChannel(h *harness) {
	topic, group := h.name("topic"), h.name("group")
	ignore := goleak.IgnoreCurrent()
	s := h.subscribe("subscription", topic, group)
	h.receiveOne(s, topic)
	// Leave messages unread, so that the adapter is likely (not certain:
	// that depends on scheduling) blocked delivering one when cancel comes;
	// cancel must end the subscription anyway.
	for _, v := range values("unread", 3) {
		h.publishString(topic, v)
	}
	// Two concurrent calls: both must return once the subscription ended.
	h.within("two concurrent cancel calls", func() {
		var wg sync.WaitGroup
		wg.Go(s.cancel)
		wg.Go(s.cancel)
		wg.Wait()
	})
	h.drainUntilClosed(s, "after cancel returned")
	h.within("another cancel", s.cancel)
	h.checkNoLeaks(ignore, "after cancel")
}

func testContextCancelEndsSubscription(h *harness) {
	topic, group := h.name("topic"), h.name("group")
	ignore := goleak.IgnoreCurrent()
	ctx, cancelCtx := context.WithCancel(context.Background())
	defer cancelCtx()
	s := h.subscribeCtx(ctx, "subscription", topic, group)
	h.receiveOne(s, topic)
	cancelCtx()
	h.drainUntilClosed(s, "after its context was cancelled")
	h.within("cancel after the context was cancelled", s.cancel)
	h.checkNoLeaks(ignore, "after the context was cancelled")
}

func testCloseEndsSubscriptions(h *harness) {
	t := h.t
	topic := h.name("topic")
	ignore := goleak.IgnoreCurrent()
	subs := []*sub{
		h.subscribe("group 1", topic, h.name("group-1")),
		h.subscribe("group 2", topic, h.name("group-2")),
	}
	h.publishString(topic, "ping")
	trs := []*tracker{newTracker("ping"), newTracker("ping")}
	for !trs[0].done() || !trs[1].done() {
		i, m := h.nextAny(subs, func() string { return `message "ping" in both groups` })
		trs[i].mark(string(m.Value()))
		h.ack(subs[i], m)
	}
	if err := h.closeAdapter(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, s := range subs {
		h.drainUntilClosed(s, "after Close")
		h.within("cancel after Close", s.cancel)
	}
	if err := goleak.Find(ignore); err != nil {
		t.Errorf("goroutines left after Close:\n%v", err)
	}
}

func testCloseTwice(h *harness) {
	if err := h.closeAdapter(); err != nil {
		h.t.Errorf("first Close: %v", err)
	}
	if err := h.closeAdapter(); err != nil {
		h.t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
	}
}

func testPublishAfterClose(h *harness) {
	topic := h.name("topic")
	if err := h.closeAdapter(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
	err := h.call("Publish after Close", func(ctx context.Context) error { return h.a.Publish(ctx, topic, []byte("late")) })
	h.checkClosedErr("Publish", err)
	if rp := h.recordPublisher(); rp != nil {
		err := h.call("PublishRecord after Close", func(ctx context.Context) error {
			return rp.PublishRecord(ctx, topic, eventstream.Record{Key: []byte("k"), Value: []byte("late")})
		})
		h.checkClosedErr("PublishRecord", err)
	}
}

func testSubscribeAfterClose(h *harness) {
	topic, group := h.name("topic"), h.name("group")
	if err := h.closeAdapter(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
	var (
		cancel func()
		err    error
	)
	h.within("Subscribe after Close", func() {
		_, cancel, err = h.a.Subscribe(context.Background(), topic, group)
	})
	h.checkClosedErr("Subscribe", err)
	if err == nil && cancel != nil {
		h.within("cancel", cancel)
	}
}

func testConcurrentPublishers(h *harness) {
	t := h.t
	const publishers, perPublisher = 8, 250
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)

	var (
		wg        sync.WaitGroup
		published atomic.Int64
		errs      = make(chan error, publishers)
		start     = make(chan struct{})
		vs        []string
	)
	for p := range publishers {
		pvs := values(fmt.Sprintf("p%d", p), perPublisher)
		vs = append(vs, pvs...)
		wg.Go(func() {
			<-start
			for _, v := range pvs {
				ctx, cancel := context.WithTimeout(context.Background(), h.o.timeout)
				err := h.a.Publish(ctx, topic, []byte(v))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("Publish(%q): %w", v, err)
					return
				}
				published.Add(1)
			}
		})
	}
	close(start)
	h.waitProgress("concurrent publishers", &wg, &published)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	s := h.subscribe("subscription", topic, group)
	tr := newTracker(vs...)
	dups := 0
	for !tr.done() {
		m := h.next(s, tr.missing)
		v := string(m.Value())
		switch {
		case !tr.expects(v):
			t.Errorf("unexpected message %q", v)
		case !tr.mark(v):
			dups++
		}
		h.ack(s, m)
	}
	if dups > 0 {
		t.Logf("%d messages were delivered more than once (allowed: at-least-once)", dups)
	}
}

// waitProgress waits for wg, failing the case if counter stops growing for
// longer than the timeout before wg is done.
func (h *harness) waitProgress(what string, wg *sync.WaitGroup, counter *atomic.Int64) {
	h.t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	ticker := time.NewTicker(h.o.timeout)
	defer ticker.Stop()
	last := counter.Load()
	for {
		select {
		case <-done:
			return
		case <-ticker.C:
			now := counter.Load()
			if now == last {
				h.t.Fatalf("%s made no progress for %v (%d published)", what, h.o.timeout, now)
			}
			last = now
		}
	}
}

func testKeyOrder(h *harness) {
	t := h.t
	rp := h.requireRecordPublisher()
	const keys, perKey = 4, 50
	topic, group := h.name("topic"), h.name("group")
	h.declareGroups(topic, group)
	for i := range perKey {
		for k := range keys {
			key := fmt.Sprintf("key-%d", k)
			h.publishRecord(rp, topic, eventstream.Record{Key: []byte(key), Value: fmt.Appendf(nil, "%s#%d", key, i)})
		}
	}

	s := h.subscribe("subscription", topic, group)
	next := map[string]int{} // key -> next expected sequence number
	seen := map[string]bool{}
	for received := 0; received < keys*perKey; {
		m := h.next(s, func() string {
			return fmt.Sprintf("%d more messages; next expected sequence per key: %v", keys*perKey-received, next)
		})
		h.ack(s, m)
		v := string(m.Value())
		key, seqText, ok := strings.Cut(v, "#")
		seq, err := strconv.Atoi(seqText)
		if !ok || err != nil || seq < 0 || seq >= perKey {
			t.Errorf("unexpected message %q", v)
			continue
		}
		if !bytes.Equal(m.Key(), []byte(key)) {
			t.Errorf("Key() of %q = %q, want %q", v, m.Key(), key)
		}
		if seen[v] {
			t.Logf("%q delivered again (allowed: at-least-once)", v)
			continue
		}
		seen[v] = true
		received++
		switch want := next[key]; {
		case seq < want:
			t.Errorf("received %q after later messages of key %q: order not preserved", v, key)
		case seq > want:
			t.Errorf("received %q before %s#%d: order of key %q not preserved", v, key, want, key)
		}
		next[key] = max(next[key], seq+1)
	}
}
