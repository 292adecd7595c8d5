package esotel_test

import (
	"context"
	"fmt"
	"log"
	"sort"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/esotel"
)

// Tracing a memory bus: the handler's ctx holds the process span, a child
// of the send span of Emit, in the same trace.
func ExampleNew() {
	spans := tracetest.NewSpanRecorder() // an exporter, in an application
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())

	cfg := eventstream.DefaultConfig()
	cfg.Observer = esotel.New(
		esotel.WithTracerProvider(tp),
		esotel.WithMeterProvider(mp),
		esotel.WithPropagators(propagation.TraceContext{}),
	)
	bus, err := eventstream.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	if _, err := bus.On("orders", func(ctx context.Context, e *eventstream.Event) error {
		// Spans started from ctx are children of the process span.
		_, span := tp.Tracer("shop").Start(ctx, "charge card")
		span.End()
		close(done)
		return nil
	}, eventstream.WithConsumerGroup("billing")); err != nil {
		log.Fatal(err)
	}
	if err := bus.Emit(context.Background(), "orders", "order 42"); err != nil {
		log.Fatal(err)
	}
	<-done
	if err := bus.Close(); err != nil { // process span ended
		log.Fatal(err)
	}

	ended := spans.Ended()
	sort.Slice(ended, func(i, j int) bool { return ended[i].StartTime().Before(ended[j].StartTime()) })
	for _, s := range ended {
		fmt.Printf("%s (%s), same trace as Emit: %v\n", s.Name(), s.SpanKind(), s.SpanContext().TraceID() == ended[0].SpanContext().TraceID())
	}
	// Output:
	// send orders (producer), same trace as Emit: true
	// process orders (consumer), same trace as Emit: true
	// charge card (internal), same trace as Emit: true
}
