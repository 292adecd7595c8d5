// Package bustest is the contract suite of the eventstream Bus: one table of
// behaviours that every bus must show, whatever the mode and the adapter. It
// is the bus-level twin of package adaptertest.
//
// Run it for an adapter from a test of the adapter's package:
//
//	func TestBusContract(t *testing.T) {
//		bustest.Run(t, func(t *testing.T) eventstream.MQAdapter {
//			a, err := mybroker.New(mybroker.Config{Brokers: brokers})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return a
//		})
//	}
//
// A nil factory runs the suite against a memory-mode bus. Every case gets a
// new adapter from the factory (closed at the end of the case, after the
// bus) and topic and group names of its own. Cases that need to write raw
// bytes to the broker (garbage on the wire) skip in memory mode.
//
// The cases, named as the subtests: KeyOrder, Retries, PermanentNotRetried,
// PanicIsAFailedAttempt, DeadLetterShape, Stats, OffDrainsInFlight,
// OffCancelsAfterDrainTimeout, ConcurrentOffWaits, OffFromHandler,
// CloseFromHandler, CloseDeadline, ZeroDelayRetriesStopOnOff,
// GoexitIsAFailedAttempt, OnFailurePanicContained, CancelledEmitRefused,
// NilHandler, BadOptions, RetryPolicyCopied and GarbageOnTheWire; see each
// case's comment in cases.go.
//
// BenchmarkConsume is the matching benchmark: a bus draining preloaded
// events through the adapter, structured and binary.
//
// Cases never sleep to let something happen: they wait for conditions with
// timeouts (WithTimeout), and handlers report problems through collectors
// instead of failing the test from a worker goroutine.
package bustest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adaptertest"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

// Option changes how Run runs the suite.
type Option func(*options)

type options struct {
	timeout time.Duration
	drain   time.Duration
	config  func(*eventstream.Config)
	declare adaptertest.GroupDeclarer
}

// WithTimeout sets how long a case waits for anything (a delivery, a
// condition) before failing. Default 10s.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithDrainTimeout sets the Config.DrainTimeout of the shutdown cases.
// Default 300ms; brokers whose unsubscribe is slow may need more.
func WithDrainTimeout(d time.Duration) Option { return func(o *options) { o.drain = d } }

// WithConfig changes the Config of every bus the suite builds (after the
// suite's own settings), e.g. to select Distributed.BinaryMode.
func WithConfig(change func(*eventstream.Config)) Option {
	return func(o *options) { o.config = change }
}

// WithGroupDeclarer is for adapters on which a message published to a topic
// reaches only the groups that exist at that moment (RabbitMQ, say). Before
// every subscription a case makes through the bus, the suite calls declare
// for the subscription's group and for a group named "dead-letters" on the
// subscription's dead-letter topic (eventstream.DeadLetterTopicName), so
// that dead-letter writes have somewhere to go, as they would in a
// deployment that declares its groups up front.
func WithGroupDeclarer(declare adaptertest.GroupDeclarer) Option {
	return func(o *options) { o.declare = declare }
}

// Run runs every case as a subtest of t against buses over adapters from
// newAdapter, or against memory-mode buses when newAdapter is nil.
func Run(t *testing.T, newAdapter adaptertest.Factory, opts ...Option) {
	o := options{timeout: 10 * time.Second, drain: 300 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(newHarness(t, newAdapter, o))
		})
	}
}

// harness holds one case's settings and builds its buses.
type harness struct {
	t          *testing.T
	o          options
	newAdapter adaptertest.Factory
	ad         eventstream.MQAdapter // the case's adapter; nil in memory mode
	suffix     string
}

func newHarness(t *testing.T, newAdapter adaptertest.Factory, o options) *harness {
	h := &harness{t: t, o: o, newAdapter: newAdapter, suffix: fmt.Sprintf("%08x", rand.Uint32())}
	if newAdapter != nil {
		h.ad = newAdapter(t)
		if h.ad == nil {
			t.Fatal("bustest: Factory returned a nil adapter")
		}
		t.Cleanup(func() { _ = h.ad.Close() }) // registered first, so it runs after the bus's Close
	}
	return h
}

func (h *harness) distributed() bool { return h.ad != nil }

// name returns a topic or group name unique to this case and run.
func (h *harness) name(kind string) string {
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, h.t.Name())
	if len(base) > 120 {
		base = base[len(base)-120:]
	}
	return base + "-" + kind + "-" + h.suffix
}

// bus returns a bus of the suite's mode, closed at the end of the case.
func (h *harness) bus(change func(*eventstream.Config)) eventstream.Bus {
	h.t.Helper()
	cfg := eventstream.DefaultConfig()
	if h.distributed() {
		cfg = eventstream.DefaultDistributedConfig()
		cfg.Distributed.MQAdapter = h.ad
	}
	cfg.Logger = testutil.Quiet
	cfg.DrainTimeout = h.o.drain
	if h.o.config != nil {
		h.o.config(&cfg)
	}
	if change != nil {
		change(&cfg)
	}
	b, err := eventstream.New(cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.t.Cleanup(func() { _ = b.Close() })
	return b
}

// on subscribes in a group of its own name, failing the case on error.
func (h *harness) on(b eventstream.Bus, topic, group string, fn eventstream.Handler, opts ...eventstream.SubscribeOption) eventstream.Subscription {
	h.t.Helper()
	if h.o.declare != nil && h.distributed() {
		ctx, cancel := context.WithTimeout(context.Background(), h.o.timeout)
		defer cancel()
		for _, d := range [][2]string{{topic, group}, {eventstream.DeadLetterTopicName(topic, group), "dead-letters"}} {
			if err := h.o.declare(ctx, h.ad, d[0], d[1]); err != nil {
				h.t.Fatalf("GroupDeclarer(%q, %q): %v", d[0], d[1], err)
			}
		}
	}
	sub, err := b.On(topic, fn, append([]eventstream.SubscribeOption{eventstream.WithConsumerGroup(group)}, opts...)...)
	if err != nil {
		h.t.Fatalf("On(%q, %q): %v", topic, group, err)
	}
	return sub
}

// emit emits payload, failing the case on error.
func (h *harness) emit(b eventstream.Bus, topic string, payload any, opts ...eventstream.EmitOption) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.o.timeout)
	defer cancel()
	if err := b.Emit(ctx, topic, payload, opts...); err != nil {
		h.t.Fatalf("Emit(%q, %v): %v", topic, payload, err)
	}
}

// eventually waits for cond.
func (h *harness) eventually(cond func() bool, describe func() string) {
	h.t.Helper()
	testutil.Eventually(h.t, h.o.timeout, cond, describe)
}

// fast retries at once, n times.
func fast(n int) *eventstream.RetryPolicy {
	return &eventstream.RetryPolicy{MaxRetries: n, BackoffStrategy: eventstream.BackoffFixed}
}
