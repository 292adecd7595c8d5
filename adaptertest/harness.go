package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
)

// harness holds the adapter of one case and the helpers every case uses.
// All helpers must be called from the case's test goroutine.
type harness struct {
	t *testing.T
	o options
	a eventstream.MQAdapter
	// suffix makes the names of this case unique across runs.
	suffix string
}

func newHarness(t *testing.T, newAdapter Factory, o options) *harness {
	t.Helper()
	a := newAdapter(t)
	if a == nil {
		t.Fatal("adaptertest: Factory returned a nil adapter")
	}
	h := &harness{t: t, o: o, a: a, suffix: fmt.Sprintf("%08x", rand.Uint32())}
	t.Cleanup(func() {
		if err := h.closeAdapter(); err != nil {
			t.Logf("Close at the end of the case: %v", err)
		}
	})
	return h
}

// maxNameLen keeps generated names well below broker limits (Kafka allows
// 249 characters for topics).
const maxNameLen = 180

// name returns a topic or group name unique to this case and run, made of
// [a-zA-Z0-9._-] only.
func (h *harness) name(kind string) string {
	return uniqueName(h.t.Name(), kind, h.suffix)
}

func uniqueName(testName, kind, suffix string) string {
	base := sanitize(testName)
	tail := "-" + sanitize(kind) + "-" + suffix
	if len(base)+len(tail) > maxNameLen {
		base = base[:max(0, maxNameLen-len(tail))]
	}
	return base + tail
}

// sanitize replaces every character outside [a-zA-Z0-9._-] with '_'.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		default:
			return '_'
		}
	}, s)
}

// call runs fn with a context bounded by the timeout, and fails the case if
// fn does not return within the timeout.
func (h *harness) call(what string, fn func(ctx context.Context) error) error {
	h.t.Helper()
	var err error
	h.within(what, func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.o.timeout)
		defer cancel()
		err = fn(ctx)
	})
	return err
}

// within runs fn and fails the case if it does not return within the
// timeout, so that a hanging adapter call fails with a clear message instead
// of stalling the whole test binary.
func (h *harness) within(what string, fn func()) {
	h.t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	timer := time.NewTimer(h.o.timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		h.t.Fatalf("%s did not return within %v", what, h.o.timeout)
	}
}

// closeAdapter calls Close, bounded by the timeout.
func (h *harness) closeAdapter() error {
	h.t.Helper()
	var err error
	h.within("Close", func() { err = h.a.Close() })
	return err
}

// declareGroups creates groups on topic with the GroupDeclarer, when one was
// given, before a case publishes messages those groups must receive.
func (h *harness) declareGroups(topic string, groups ...string) {
	h.t.Helper()
	if h.o.declare == nil {
		return
	}
	for _, g := range groups {
		err := h.call("GroupDeclarer", func(ctx context.Context) error { return h.o.declare(ctx, h.a, topic, g) })
		if err != nil {
			h.t.Fatalf("GroupDeclarer(%q, %q): %v", topic, g, err)
		}
	}
	h.t.Logf("groups %q declared before publishing (WithGroupDeclarer: new groups of this adapter do not start at the earliest message)", groups)
}

// publish publishes value on topic with Publish and fails the case on error.
func (h *harness) publish(topic string, value []byte) {
	h.t.Helper()
	err := h.call("Publish", func(ctx context.Context) error { return h.a.Publish(ctx, topic, value) })
	if err != nil {
		h.t.Fatalf("Publish(%q, %d bytes): %v", topic, len(value), err)
	}
}

// publishString publishes a string value.
func (h *harness) publishString(topic, value string) {
	h.t.Helper()
	h.publish(topic, []byte(value))
}

// recordPublisher returns the adapter as an eventstream.RecordPublisher, or
// nil when it does not implement it.
func (h *harness) recordPublisher() eventstream.RecordPublisher {
	rp, _ := h.a.(eventstream.RecordPublisher)
	return rp
}

// requireRecordPublisher skips the case when the adapter is not an
// eventstream.RecordPublisher.
func (h *harness) requireRecordPublisher() eventstream.RecordPublisher {
	h.t.Helper()
	rp := h.recordPublisher()
	if rp == nil {
		h.t.Skipf("%T does not implement eventstream.RecordPublisher", h.a)
	}
	return rp
}

// publishRecord publishes r with PublishRecord and fails the case on error.
func (h *harness) publishRecord(rp eventstream.RecordPublisher, topic string, r eventstream.Record) {
	h.t.Helper()
	err := h.call("PublishRecord", func(ctx context.Context) error { return rp.PublishRecord(ctx, topic, r) })
	if err != nil {
		h.t.Fatalf("PublishRecord(%q, key %q): %v", topic, r.Key, err)
	}
}

// publishKeyed publishes value with key when the adapter is a
// RecordPublisher, else without a key. Distinct keys spread messages over
// the partitions of partitioned brokers.
func (h *harness) publishKeyed(topic, key, value string) {
	h.t.Helper()
	if rp := h.recordPublisher(); rp != nil {
		h.publishRecord(rp, topic, eventstream.Record{Key: []byte(key), Value: []byte(value)})
		return
	}
	h.publishString(topic, value)
}

// sub is one subscription made by a case.
type sub struct {
	label  string
	group  string
	ch     <-chan eventstream.Message
	cancel func()
}

// subscribe subscribes group to topic with a background context. The
// subscription is cancelled when the case ends.
func (h *harness) subscribe(label, topic, group string) *sub {
	h.t.Helper()
	return h.subscribeCtx(context.Background(), label, topic, group)
}

func (h *harness) subscribeCtx(ctx context.Context, label, topic, group string) *sub {
	h.t.Helper()
	var (
		ch     <-chan eventstream.Message
		cancel func()
		err    error
	)
	h.within("Subscribe", func() { ch, cancel, err = h.a.Subscribe(ctx, topic, group) })
	if err != nil {
		h.t.Fatalf("Subscribe(%q, %q): %v", topic, group, err)
	}
	if ch == nil || cancel == nil {
		h.t.Fatalf("Subscribe(%q, %q) returned a nil channel or cancel func without error", topic, group)
	}
	s := &sub{label: label, group: group, ch: ch, cancel: cancel}
	h.t.Cleanup(func() { h.within("cancel of "+label, cancel) })
	return s
}

// cancel cancels s, bounded by the timeout, and checks that the channel is
// closed once cancel returned (after any messages already buffered in it).
func (h *harness) cancel(s *sub) {
	h.t.Helper()
	h.within("cancel of "+s.label, s.cancel)
	h.drainUntilClosed(s, "after cancel returned")
}

// drainUntilClosed reads s until its channel is closed, failing the case if
// that does not happen within the timeout. Messages read are discarded.
func (h *harness) drainUntilClosed(s *sub, when string) {
	h.t.Helper()
	timer := time.NewTimer(h.o.timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-s.ch:
			if !ok {
				return
			}
		case <-timer.C:
			h.t.Fatalf("channel of %s not closed within %v %s", s.label, h.o.timeout, when)
		}
	}
}

// ack acknowledges m for s's group and fails the case on error.
func (h *harness) ack(s *sub, m eventstream.Message) {
	h.t.Helper()
	err := h.call("Ack", func(ctx context.Context) error { return h.a.Ack(ctx, s.group, m) })
	if err != nil {
		h.t.Fatalf("Ack(%q, %q): %v", s.group, m.Value(), err)
	}
}

// next returns the next message of s. It fails the case when the channel is
// closed or nothing arrives within the timeout; waiting describes what the
// case is waiting for.
func (h *harness) next(s *sub, waiting func() string) eventstream.Message {
	h.t.Helper()
	_, m := h.nextAny([]*sub{s}, waiting)
	return m
}

// nextAny returns the next message of any of subs and the index of the
// subscription it came from. It fails the case when a channel is closed or
// nothing arrives within the timeout.
func (h *harness) nextAny(subs []*sub, waiting func() string) (int, eventstream.Message) {
	h.t.Helper()
	timer := time.NewTimer(h.o.timeout)
	defer timer.Stop()
	i, m, ok := h.waitAny(subs, timer.C, waiting)
	if !ok {
		h.t.Fatalf("no message within %v; waiting for %s", h.o.timeout, waiting())
	}
	return i, m
}

// waitAny returns the next message of any of subs, or ok == false once
// timeout fires first. It fails the case when a channel is closed.
func (h *harness) waitAny(subs []*sub, timeout <-chan time.Time, waiting func() string) (int, eventstream.Message, bool) {
	h.t.Helper()
	cases := make([]reflect.SelectCase, 0, len(subs)+1)
	for _, s := range subs {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.ch)})
	}
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timeout)})
	i, v, ok := reflect.Select(cases)
	if i == len(subs) {
		return 0, nil, false
	}
	if !ok {
		h.t.Fatalf("channel of %s closed unexpectedly; waiting for %s", subs[i].label, waiting())
	}
	m, _ := v.Interface().(eventstream.Message)
	if m == nil {
		h.t.Fatalf("%s received a nil Message", subs[i].label)
	}
	return i, m, true
}

// tracker records which of a set of expected string values were received.
type tracker struct {
	want map[string]bool // value -> received
	left int
}

func newTracker(values ...string) *tracker {
	tr := &tracker{want: make(map[string]bool, len(values))}
	for _, v := range values {
		tr.add(v)
	}
	return tr
}

func (tr *tracker) add(v string) {
	if _, ok := tr.want[v]; !ok {
		tr.want[v] = false
		tr.left++
	}
}

// expects reports whether v is one of the tracked values.
func (tr *tracker) expects(v string) bool {
	_, ok := tr.want[v]
	return ok
}

// mark records v as received and reports whether it was the first time.
func (tr *tracker) mark(v string) (first bool) {
	if got, ok := tr.want[v]; ok && !got {
		tr.want[v] = true
		tr.left--
		return true
	}
	return false
}

func (tr *tracker) done() bool { return tr.left == 0 }

// missing describes the values not received yet, abbreviated.
func (tr *tracker) missing() string {
	var miss []string
	for v, got := range tr.want {
		if !got {
			miss = append(miss, v)
		}
	}
	const show = 10
	if len(miss) > show {
		return fmt.Sprintf("%d messages, e.g. %q", len(miss), miss[:show])
	}
	return fmt.Sprintf("%d messages: %q", len(miss), miss)
}

// values returns n values prefix#0 ... prefix#n-1.
func values(prefix string, n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%s#%d", prefix, i)
	}
	return vs
}

// checkClosedErr checks the error of a call made after Close.
func (h *harness) checkClosedErr(call string, err error) {
	h.t.Helper()
	switch {
	case err == nil:
		h.t.Errorf("%s after Close returned nil error, want an error", call)
	case !errors.Is(err, eventstream.ErrAdapterClosed):
		h.t.Logf("%s after Close returned %v, which does not wrap eventstream.ErrAdapterClosed (the contract asks for it)", call, err)
	}
}
