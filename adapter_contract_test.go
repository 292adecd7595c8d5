package eventstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

const wait = 10 * time.Second

// chanAdapter is an adapter whose one subscription channel the test feeds;
// its Subscribe results can be broken on purpose.
type chanAdapter struct {
	ch        chan eventstream.Message
	nilChan   bool
	nilCancel bool
	once      sync.Once
}

func newChanAdapter() *chanAdapter { return &chanAdapter{ch: make(chan eventstream.Message)} }

func (a *chanAdapter) Publish(context.Context, string, []byte) error { return nil }
func (a *chanAdapter) Ack(context.Context, string, eventstream.Message) error {
	return nil
}
func (a *chanAdapter) Close() error { a.end(); return nil }
func (a *chanAdapter) end()         { a.once.Do(func() { close(a.ch) }) }
func (a *chanAdapter) Subscribe(context.Context, string, string) (<-chan eventstream.Message, func(), error) {
	var ch <-chan eventstream.Message = a.ch
	cancel := a.end
	if a.nilChan {
		ch = nil
	}
	if a.nilCancel {
		cancel = nil
	}
	return ch, cancel, nil
}

type msg struct{ v []byte }

func (m *msg) Topic() string        { return "t" }
func (m *msg) Value() []byte        { return m.v }
func (m *msg) Timestamp() time.Time { return time.Time{} }
func (m *msg) Key() []byte          { return nil }

func distBus(t *testing.T, ad eventstream.MQAdapter, change func(*eventstream.Config)) eventstream.Bus {
	t.Helper()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = ad
	cfg.Logger = testutil.Quiet
	cfg.DrainTimeout = time.Second
	if change != nil {
		change(&cfg)
	}
	b, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func noop(context.Context, *eventstream.Event) error { return nil }

// Issue 14.5: an adapter whose Subscribe returns a nil cancel func (or a nil
// channel) without an error is refused by On, so Off cannot panic later.
func TestOnRejectsBrokenSubscribe(t *testing.T) {
	for name, ad := range map[string]*chanAdapter{
		"nil cancel":  {ch: make(chan eventstream.Message), nilCancel: true},
		"nil channel": {ch: make(chan eventstream.Message), nilChan: true},
	} {
		t.Run(name, func(t *testing.T) {
			b := distBus(t, ad, nil)
			_, err := b.On("t", noop, eventstream.WithConsumerGroup("g"))
			if !errors.Is(err, eventstream.ErrAdapterContract) {
				t.Fatalf("On = %v, want ErrAdapterContract", err)
			}
			if st := b.Stats(); st.Subscriptions != 0 {
				t.Fatalf("refused subscription counted: %+v", st)
			}
		})
	}
}

// Issue 14.6: nil Messages (untyped, or a nil pointer) are reported as
// failures and skipped; the subscription goes on.
func TestNilMessageIsReportedAndSkipped(t *testing.T) {
	ad := newChanAdapter()
	failures := testutil.NewCollector[*eventstream.Failure]()
	b := distBus(t, ad, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures.Add(f) }
	})
	got := make(chan string, 1)
	if _, err := b.On("t", func(_ context.Context, e *eventstream.Event) error {
		got <- string(e.Data.([]byte))
		return nil
	}, eventstream.WithConsumerGroup("g")); err != nil {
		t.Fatal(err)
	}
	var nilPtr *msg
	for _, m := range []eventstream.Message{nil, nilPtr, &msg{v: []byte(`42`)}} {
		select {
		case ad.ch <- m:
		case <-time.After(wait):
			t.Fatal("the bus stopped reading")
		}
	}
	if v := testutil.Recv(t, got, wait, "the good message"); v != "42" {
		t.Fatalf("handler got %q", v)
	}
	for _, f := range failures.Wait(t, 2, wait, "failures") {
		if !errors.Is(f.Err, eventstream.ErrAdapterContract) {
			t.Errorf("nil message failure: %v", f.Err)
		}
	}
}

// Issue 14 ("behave the same"): a subscription whose adapter channel closes
// on its own is removed, counted no more and reported by Off.
func TestSubscriptionEndedByAdapter(t *testing.T) {
	ad := newChanAdapter()
	b := distBus(t, ad, nil)
	sub, err := b.On("t", noop, eventstream.WithConsumerGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	ad.end()
	testutil.Eventually(t, wait, func() bool { return b.Stats().Subscriptions == 0 },
		func() string { return fmt.Sprintf("%+v", b.Stats()) })
	if err := b.Off(sub); !errors.Is(err, eventstream.ErrSubscriptionEnded) {
		t.Fatalf("Off = %v, want ErrSubscriptionEnded", err)
	}
}

// wrapper hides the RecordPublisher of the adapter it wraps.
type wrapper struct{ eventstream.MQAdapter }

func (w wrapper) Unwrap() eventstream.MQAdapter { return w.MQAdapter }

// syncBuffer is a bytes.Buffer safe for a logger on several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A wrapper that hides RecordPublisher (and says so through Unwrap) gets a
// warning at New: per-key order would be lost silently otherwise.
func TestNewWarnsWhenAWrapperHidesRecordPublisher(t *testing.T) {
	a, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var logs syncBuffer
	distBus(t, wrapper{a}, func(c *eventstream.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if !strings.Contains(logs.String(), "per-key order") {
		t.Fatalf("no warning logged; logs: %q", logs.String())
	}
	logs = syncBuffer{}
	distBus(t, a, func(c *eventstream.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if s := logs.String(); s != "" {
		t.Fatalf("the adapter itself got a warning: %q", s)
	}
}

// poisonMsg stands for broker data its adapter could not read.
type poisonMsg struct {
	msg
	err error
}

func (m *poisonMsg) DecodeError() error { return m.err }

// TestUndecodableMessage: a message whose DecodeError is non-nil is not
// decoded and reaches no handler, even when its bytes would decode: it is
// dead-lettered (raw bytes kept) with an error wrapping ErrDecode and the
// adapter's error, then acknowledged. One whose DecodeError is nil is an
// ordinary message.
func TestUndecodableMessage(t *testing.T) {
	ch := newChanAdapter()
	ad := &spy{MQAdapter: ch}
	failures := make(chan *eventstream.Failure, 2)
	bus := distBus(t, ad, func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) { failures <- f }
	})
	handled := make(chan string, 2)
	_, err := bus.On("t", func(_ context.Context, e *eventstream.Event) error {
		handled <- e.ID
		return nil
	}, eventstream.WithConsumerGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	env := func(id string) []byte {
		return []byte(`{"specversion":"1.0","id":"` + id + `","source":"s","type":"t","datacontenttype":"application/json","data":{}}`)
	}
	errPoison := errors.New("batch does not decompress")
	poison := &poisonMsg{msg: msg{v: env("poison")}, err: errPoison}
	ordinary := &poisonMsg{msg: msg{v: env("ordinary")}}
	ch.ch <- poison
	ch.ch <- ordinary

	select {
	case id := <-handled:
		if id != "ordinary" {
			t.Fatalf("handler got %q; the undecodable message must not reach it", id)
		}
	case <-time.After(wait):
		t.Fatal("the ordinary message was not handled")
	}
	var f *eventstream.Failure
	select {
	case f = <-failures:
	case <-time.After(wait):
		t.Fatal("no failure reported for the undecodable message")
	}
	if !errors.Is(f.Err, eventstream.ErrDecode) || !errors.Is(f.Err, errPoison) || f.Attempts != 0 {
		t.Errorf("failure %v after %d handler calls; want ErrDecode and the adapter's error, no call", f.Err, f.Attempts)
	}
	testutil.Eventually(t, wait, func() bool { return ad.ackCount() == 2 }, func() string {
		return fmt.Sprintf("%d of 2 messages acknowledged", ad.ackCount())
	})
	dl := ad.last(eventstream.DeadLetterTopicName("t", "g"))
	if !bytes.Contains(dl, []byte(`"id":"poison"`)) || !bytes.Contains(dl, []byte(eventstream.DeadLetterEventType)) {
		t.Errorf("the dead letter is not the raw bytes wrapped in a %s event: %s", eventstream.DeadLetterEventType, dl)
	}
	select {
	case id := <-handled:
		t.Errorf("handler also got %q", id)
	default:
	}
}
