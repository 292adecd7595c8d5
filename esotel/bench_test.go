package esotel_test

import (
	"context"
	"sync/atomic"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/esotel"
)

// benchObservers are the observers the benchmarks compare: none (the nil
// Config.Observer); esotel over no-op providers; over an SDK tracer that
// samples nothing, with a no-op meter (the "< 1 µs per event" goal), with
// WithStartAttributes, and with the metrics SDK; and over an SDK that
// records every span (no exporter) and every metric.
func benchObservers(b *testing.B) []struct {
	name string
	obs  eventstream.Observer
} {
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	always := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = never.Shutdown(context.Background())
		_ = always.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	prop := propagation.TraceContext{}
	return []struct {
		name string
		obs  eventstream.Observer
	}{
		{"nil", nil},
		{"noop-providers", esotel.New(esotel.WithTracerProvider(noop.NewTracerProvider()), esotel.WithMeterProvider(metricnoop.NewMeterProvider()), esotel.WithPropagators(prop))},
		{"never-sample", esotel.New(esotel.WithTracerProvider(never), esotel.WithMeterProvider(metricnoop.NewMeterProvider()), esotel.WithPropagators(prop))},
		{"never-sample+start-attributes", esotel.New(esotel.WithTracerProvider(never), esotel.WithMeterProvider(metricnoop.NewMeterProvider()), esotel.WithPropagators(prop), esotel.WithStartAttributes())},
		{"never-sample+sdk-metrics", esotel.New(esotel.WithTracerProvider(never), esotel.WithMeterProvider(mp), esotel.WithPropagators(prop))},
		{"always-sample+sdk-metrics", esotel.New(esotel.WithTracerProvider(always), esotel.WithMeterProvider(mp), esotel.WithPropagators(prop))},
	}
}

// BenchmarkHooks measures esotel's own cost per event: one send and one
// process span with propagation through a carrier, and the metrics, as the
// bus calls them, without the bus.
func BenchmarkHooks(b *testing.B) {
	for _, c := range benchObservers(b) {
		if c.obs == nil {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			e := testEvent()
			pub := eventstream.PublishInfo{System: "kafka", Topic: "orders", Event: e}
			proc := eventstream.ProcessInfo{System: "kafka", Topic: "orders", Group: "billing", Event: e, Attempt: 1, Partition: 1, Offset: 5, HasOffset: true}
			ctx := context.Background()
			var c1 mapCarrier
			b.ReportAllocs()
			for b.Loop() {
				c1.reset()
				_, end := c.obs.StartPublish(ctx, pub, &c1)
				end(nil)
				_, endP := c.obs.StartProcess(ctx, proc, &c1)
				endP(nil)
			}
		})
	}
}

// BenchmarkMemoryBus measures Emit until the handler ran, per event, on a
// memory bus with each observer: "nil" is the bus without an Observer.
func BenchmarkMemoryBus(b *testing.B) {
	for _, c := range benchObservers(b) {
		b.Run(c.name, func(b *testing.B) {
			cfg := eventstream.DefaultConfig()
			cfg.Logger = quiet
			cfg.Observer = c.obs
			bus, err := eventstream.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			want := int64(b.N)
			if _, err := bus.On("bench", func(context.Context, *eventstream.Event) error {
				if handled.Add(1) == want {
					close(done)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			p := &struct{ N int }{}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := bus.Emit(ctx, "bench", p); err != nil {
					b.Fatal(err)
				}
			}
			<-done
			b.StopTimer()
			if err := bus.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// mapCarrier is a reusable carrier for the benchmarks, like the bus's own:
// two fixed slots, no map.
type mapCarrier struct {
	tp, ts string
}

func (c *mapCarrier) reset() { *c = mapCarrier{} }

func (c *mapCarrier) Get(k string) string {
	switch k {
	case "traceparent":
		return c.tp
	case "tracestate":
		return c.ts
	}
	return ""
}

func (c *mapCarrier) Set(k, v string) {
	switch k {
	case "traceparent":
		c.tp = v
	case "tracestate":
		c.ts = v
	}
}

func (c *mapCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
