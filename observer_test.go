package eventstream_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/memory"
	"github.com/eventstream-go/eventstream/examples/custom_adapter/inhouse"
	"github.com/eventstream-go/eventstream/internal/testutil"
)

type ctxKey struct{}

// recorder is an Observer that sets a traceparent on every publish and
// records every hook.
type recorder struct {
	mu        sync.Mutex
	publishes []eventstream.PublishInfo
	processes []eventstream.ProcessInfo
	received  []string // traceparent seen by StartProcess
	outcomes  []error
	pubEnds   atomic.Int64
	stats     atomic.Int64
	stopped   atomic.Bool
}

func (r *recorder) StartPublish(ctx context.Context, info eventstream.PublishInfo, c eventstream.Carrier) (context.Context, func(error)) {
	r.mu.Lock()
	r.publishes = append(r.publishes, info)
	r.mu.Unlock()
	c.Set("traceparent", "00-"+info.Topic)
	return ctx, func(error) { r.pubEnds.Add(1) }
}

func (r *recorder) StartProcess(ctx context.Context, info eventstream.ProcessInfo, c eventstream.Carrier) (context.Context, func(error)) {
	r.mu.Lock()
	r.processes = append(r.processes, info)
	r.received = append(r.received, c.Get("traceparent"))
	r.mu.Unlock()
	return context.WithValue(ctx, ctxKey{}, info.Attempt), func(err error) {
		r.mu.Lock()
		r.outcomes = append(r.outcomes, err)
		r.mu.Unlock()
	}
}

func (r *recorder) ObserveStats(func() eventstream.Stats) func() {
	r.stats.Add(1)
	return func() { r.stopped.Store(true) }
}

func (r *recorder) snapshot() ([]eventstream.PublishInfo, []eventstream.ProcessInfo, []string, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]eventstream.PublishInfo(nil), r.publishes...), append([]eventstream.ProcessInfo(nil), r.processes...),
		append([]string(nil), r.received...), append([]error(nil), r.outcomes...)
}

func TestObserver(t *testing.T) {
	for _, mode := range []struct {
		name       string
		config     func(t *testing.T, c *eventstream.Config)
		system     string
		positioned bool // the adapter's messages implement Positioned
	}{
		{"memory", func(*testing.T, *eventstream.Config) {}, "eventstream", false},
		{"structured over adapters/memory", func(t *testing.T, c *eventstream.Config) { distributed(t, c, false) }, "memory", true},
		{"binary over adapters/memory", func(t *testing.T, c *eventstream.Config) { distributed(t, c, true) }, "memory", true},
		{"plain adapter", func(t *testing.T, c *eventstream.Config) {
			*c = withMode(*c, eventstream.ModeDistributed)
			c.Distributed.MQAdapter = inhouse.New()
		}, "", false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			rec := &recorder{}
			cfg := eventstream.DefaultConfig()
			mode.config(t, &cfg)
			cfg.Logger = testutil.Quiet
			cfg.Observer = rec
			b, err := eventstream.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			problems := testutil.NewProblems()
			handled := make(chan struct{})
			var calls atomic.Int64
			if _, err := b.On("t", func(ctx context.Context, e *eventstream.Event) error {
				if _, ok := e.Headers["traceparent"]; ok {
					problems.Addf("traceparent leaked into Headers: %v", e.Headers)
				}
				n := calls.Add(1)
				if got, _ := ctx.Value(ctxKey{}).(int); got != int(n) {
					problems.Addf("attempt %d: handler ctx from StartProcess carries %d", n, got)
				}
				if n == 1 {
					panic("first attempt panics")
				}
				close(handled)
				return nil
			}, eventstream.WithConsumerGroup("g"), eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: 1})); err != nil {
				t.Fatal(err)
			}
			if err := b.Emit(context.Background(), "t", 1); err != nil {
				t.Fatal(err)
			}
			testutil.Done(t, handled, wait, "second attempt")
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			problems.Check(t)
			pubs, procs, received, outcomes := rec.snapshot()
			if len(pubs) != 1 || pubs[0].Topic != "t" || pubs[0].DeadLetter != nil || pubs[0].Event == nil || rec.pubEnds.Load() != 1 {
				t.Fatalf("publish hooks: %+v (%d ends)", pubs, rec.pubEnds.Load())
			}
			if len(procs) != 2 || procs[0].Attempt != 1 || procs[1].Attempt != 2 || procs[0].Group != "g" ||
				procs[0].System != mode.system || pubs[0].System != mode.system || procs[0].HasOffset != mode.positioned {
				t.Fatalf("process hooks: %+v", procs)
			}
			if received[0] != "00-t" || received[1] != "00-t" {
				t.Fatalf("propagation fields did not travel: %q", received)
			}
			if len(outcomes) != 2 || !errors.Is(outcomes[0], eventstream.ErrHandlerPanic) || outcomes[1] != nil {
				t.Fatalf("outcomes %v, want [ErrHandlerPanic, nil]", outcomes)
			}
			if rec.stats.Load() != 1 || !rec.stopped.Load() {
				t.Fatalf("ObserveStats called %d times, stopped %v", rec.stats.Load(), rec.stopped.Load())
			}
		})
	}
}

// TestObserverDeadLetterWrite: a dead-letter write gets its own publish hook
// with DeadLetter and Origin set.
func TestObserverDeadLetterWrite(t *testing.T) {
	rec := &recorder{}
	cfg := eventstream.DefaultConfig()
	distributed(t, &cfg, false)
	cfg.Logger = testutil.Quiet
	cfg.Observer = rec
	b, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.On("t", func(context.Context, *eventstream.Event) error {
		return eventstream.Permanent(errors.New("no"))
	}, eventstream.WithConsumerGroup("g")); err != nil {
		t.Fatal(err)
	}
	if err := b.Emit(context.Background(), "t", 1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, func() bool { return b.Stats().DeadLettered == 1 }, func() string { return fmt.Sprintf("%+v", b.Stats()) })
	pubs, _, _, _ := rec.snapshot()
	if len(pubs) != 2 || pubs[1].DeadLetter == nil || pubs[1].Topic != "t.g.dlq" || pubs[1].Origin == nil || pubs[1].Origin.Get("traceparent") != "00-t" {
		t.Fatalf("publish hooks %+v", pubs)
	}
}

func withMode(c eventstream.Config, m eventstream.Mode) eventstream.Config {
	if m == eventstream.ModeDistributed {
		d := eventstream.DefaultDistributedConfig()
		d.Distributed = c.Distributed
		return d
	}
	return c
}

func distributed(t *testing.T, c *eventstream.Config, binary bool) {
	a, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	*c = eventstream.DefaultDistributedConfig()
	c.Distributed.MQAdapter = a
	c.Distributed.BinaryMode = binary
}
