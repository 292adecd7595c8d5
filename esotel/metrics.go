package esotel

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"

	"github.com/eventstream-go/eventstream"
)

// durationBuckets are the histogram boundaries, in seconds, that the
// messaging conventions advise for both duration metrics.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// instruments are the synchronous instruments of the conventions.
type instruments struct {
	sent            metric.Int64Counter
	consumed        metric.Int64Counter
	opDuration      metric.Float64Histogram
	processDuration metric.Float64Histogram
}

func newInstruments(m metric.Meter) instruments {
	var in instruments
	sent, err := messagingconv.NewClientSentMessages(m)
	report(err)
	in.sent = sent.Inst()
	consumed, err := messagingconv.NewClientConsumedMessages(m)
	report(err)
	in.consumed = consumed.Inst()
	op, err := messagingconv.NewClientOperationDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	report(err)
	in.opDuration = op.Inst()
	proc, err := messagingconv.NewProcessDuration(m, metric.WithExplicitBucketBoundaries(durationBuckets...))
	report(err)
	in.processDuration = proc.Inst()
	return in
}

func report(err error) {
	if err != nil {
		otel.Handle(err)
	}
}

// statsState publishes the Stats of the buses that called ObserveStats as
// observable instruments, registered while at least one bus is observed.
//
// Lock order: regMu is held while calling into the meter (register,
// unregister); mu guards the sources and is taken by the callback, which
// the SDK runs under its own lock, so mu is never held while calling the
// meter.
type statsState struct {
	meter metric.Meter

	regMu  sync.Mutex
	active int
	reg    metric.Registration
	obs    statsInstruments

	mu      sync.Mutex
	next    int
	sources map[int]func() eventstream.Stats
	retired eventstream.Stats // final counters of buses that stopped
}

type statsInstruments struct {
	emitted, delivered, retried, failed, deadLettered metric.Int64ObservableCounter
	inFlight, subscriptions                           metric.Int64ObservableUpDownCounter
}

// ObserveStats implements eventstream.StatsObserver: until stop is called,
// the observable eventstream.* instruments include stats(). stop keeps the
// bus's final counts in the counters and is idempotent.
func (o *Observer) ObserveStats(stats func() eventstream.Stats) (stop func()) {
	s := &o.stats
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.active == 0 {
		s.register()
	}
	s.active++
	s.mu.Lock()
	if s.sources == nil {
		s.sources = map[int]func() eventstream.Stats{}
	}
	id := s.next
	s.next++
	s.sources[id] = stats
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.regMu.Lock()
			defer s.regMu.Unlock()
			final := stats()
			s.mu.Lock()
			delete(s.sources, id)
			s.retired.Emitted += final.Emitted
			s.retired.Delivered += final.Delivered
			s.retired.Retried += final.Retried
			s.retired.Failed += final.Failed
			s.retired.DeadLettered += final.DeadLettered
			s.mu.Unlock()
			if s.active--; s.active == 0 && s.reg != nil {
				report(s.reg.Unregister())
				s.reg = nil
			}
		})
	}
}

// register creates the observable instruments (once) and registers the
// callback. s.regMu is held.
func (s *statsState) register() {
	m := s.meter
	if s.obs.emitted == nil {
		counter := func(name, desc string) metric.Int64ObservableCounter {
			c, err := m.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit("{event}"))
			if err != nil {
				report(err)
				return noop.Int64ObservableCounter{}
			}
			return c
		}
		upDown := func(name, desc, unit string) metric.Int64ObservableUpDownCounter {
			c, err := m.Int64ObservableUpDownCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
			if err != nil {
				report(err)
				return noop.Int64ObservableUpDownCounter{}
			}
			return c
		}
		s.obs = statsInstruments{
			emitted:       counter("eventstream.events.emitted", "Events accepted by Emit and Publish."),
			delivered:     counter("eventstream.events.delivered", "Handler calls that succeeded."),
			retried:       counter("eventstream.events.retried", "Handler retries."),
			failed:        counter("eventstream.events.failed", "Events that could not be handled."),
			deadLettered:  counter("eventstream.events.dead_lettered", "Failed events written to a dead-letter topic."),
			inFlight:      upDown("eventstream.events.in_flight", "Handler calls running now.", "{event}"),
			subscriptions: upDown("eventstream.subscriptions", "Live subscriptions.", "{subscription}"),
		}
	}
	i := s.obs
	reg, err := m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		t := s.total()
		ob.ObserveInt64(i.emitted, clamp(t.Emitted))
		ob.ObserveInt64(i.delivered, clamp(t.Delivered))
		ob.ObserveInt64(i.retried, clamp(t.Retried))
		ob.ObserveInt64(i.failed, clamp(t.Failed))
		ob.ObserveInt64(i.deadLettered, clamp(t.DeadLettered))
		ob.ObserveInt64(i.inFlight, t.InFlight)
		ob.ObserveInt64(i.subscriptions, t.Subscriptions)
		return nil
	}, i.emitted, i.delivered, i.retried, i.failed, i.deadLettered, i.inFlight, i.subscriptions)
	if err != nil {
		report(err)
		return
	}
	s.reg = reg
}

// total sums the retired counters and the Stats of the observed buses.
func (s *statsState) total() eventstream.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.retired
	for _, f := range s.sources {
		st := f()
		t.Emitted += st.Emitted
		t.Delivered += st.Delivered
		t.Retried += st.Retried
		t.Failed += st.Failed
		t.DeadLettered += st.DeadLettered
		t.InFlight += st.InFlight
		t.Subscriptions += st.Subscriptions
	}
	return t
}

func clamp(u uint64) int64 {
	if u > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(u)
}
