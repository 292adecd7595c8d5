// Command tracing traces one event through Kafka with OpenTelemetry: the
// Emit, the broker write, the handler, and the dead-letter write after the
// handler failed. It starts an embedded Kafka-protocol broker and prints
// every span with the stdout exporter, then the trace as a tree and the
// messaging metrics.
//
//	go run ./examples/tracing
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/esotel"
)

// Order is the payload of the orders topic.
type Order struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

func main() {
	if err := run(os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(w io.Writer) error {
	cluster, err := kafkatest.Start()
	if err != nil {
		return fmt.Errorf("starting the embedded broker: %w", err)
	}
	defer cluster.Close()

	const topic, group = "orders", "billing"
	dlq := eventstream.DeadLetterTopicName(topic, group)

	// Tracing: every span goes to stdout as it ends; tree keeps them for
	// the summary, and signals when the dead-letter write has ended.
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(w), stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tree := &treeProcessor{await: "send " + dlq, done: make(chan struct{})}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter), sdktrace.WithSpanProcessor(tree))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	adapter, err := kafka.NewAdapter(kafka.Config{
		Brokers:          cluster.Addrs(),
		AutoCreateTopics: true,
		// Short group timeouts make the example start quickly.
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: 500 * time.Millisecond,
		RebalanceTimeout:  6 * time.Second,
		CommitInterval:    100 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	defer adapter.Close()

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = adapter
	cfg.Source = "examples/tracing"
	cfg.Logger = slogDiscard()
	cfg.Observer = esotel.New(
		esotel.WithTracerProvider(tp),
		esotel.WithMeterProvider(mp),
		// Without a propagator nothing crosses the broker: the global one
		// does nothing until the application sets it.
		esotel.WithPropagators(propagation.TraceContext{}),
	)
	bus, err := eventstream.New(cfg)
	if err != nil {
		return err
	}
	defer bus.Close()

	if _, err := bus.On(topic, func(ctx context.Context, e *eventstream.Event) error {
		// ctx holds the process span: spans started here are its children.
		_, span := tp.Tracer("examples/tracing").Start(ctx, "charge card")
		defer span.End()
		var o Order
		if err := e.Unmarshal(&o); err != nil {
			return err
		}
		return eventstream.Permanent(fmt.Errorf("order %d: card declined", o.ID))
	}, eventstream.WithConsumerGroup(group)); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The application's own span: the event's trace starts here.
	emitCtx, root := tp.Tracer("examples/tracing").Start(ctx, "checkout")
	err = bus.Emit(emitCtx, topic, Order{ID: 42, Amount: 99.5}, eventstream.WithKey("customer-7"))
	root.End()
	if err != nil {
		return err
	}
	select {
	case <-tree.done:
	case <-ctx.Done():
		return errors.New("timed out waiting for the dead-letter write")
	}

	fmt.Fprintln(w, "\none trace, from Emit through Kafka to the handler and the dead-letter write:")
	tree.print(w, root.SpanContext().TraceID())

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nmetrics:")
	printMetrics(w, rm)
	return nil
}

// treeProcessor keeps the ended spans and closes done when the span named
// await has ended.
type treeProcessor struct {
	await string
	done  chan struct{}
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
	once  sync.Once
}

func (p *treeProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p *treeProcessor) Shutdown(context.Context) error                  { return nil }
func (p *treeProcessor) ForceFlush(context.Context) error                { return nil }

func (p *treeProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	p.mu.Lock()
	p.spans = append(p.spans, s)
	p.mu.Unlock()
	if s.Name() == p.await {
		p.once.Do(func() { close(p.done) })
	}
}

// print writes the spans of trace id as an indented tree, with kinds,
// status and links.
func (p *treeProcessor) print(w io.Writer, id trace.TraceID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	names := map[trace.SpanID]string{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range p.spans {
		if s.SpanContext().TraceID() != id {
			continue
		}
		names[s.SpanContext().SpanID()] = s.Name()
		if s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	fmt.Fprintf(w, "trace %s\n", id)
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		line := fmt.Sprintf("%s%s [%s]", strings.Repeat("  ", depth+1), s.Name(), s.SpanKind())
		if st := s.Status(); st.Code != 0 {
			line += fmt.Sprintf(" status=%s", st.Code)
		}
		for _, kv := range s.Attributes() {
			if kv.Key == "error.type" || kv.Key == "messaging.system" {
				line += fmt.Sprintf(" %s=%s", kv.Key, kv.Value.String())
			}
		}
		for _, l := range s.Links() {
			line += fmt.Sprintf(" link->%q", names[l.SpanContext.SpanID()])
		}
		fmt.Fprintln(w, line)
		kids := children[s.SpanContext().SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime().Before(kids[j].StartTime()) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

// printMetrics writes the sums and histogram counts, one line per data
// point.
func printMetrics(w io.Writer, rm metricdata.ResourceMetrics) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					fmt.Fprintf(w, "  %s %s = %d\n", m.Name, attrs(dp.Attributes.ToSlice()), dp.Value)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					fmt.Fprintf(w, "  %s %s: count %d\n", m.Name, attrs(dp.Attributes.ToSlice()), dp.Count)
				}
			}
		}
	}
}

// attrs formats the attributes that tell data points apart.
func attrs(kvs []attribute.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		switch kv.Key {
		case "messaging.destination.name", "messaging.consumer.group.name", "error.type":
			parts = append(parts, fmt.Sprintf("%s=%s", kv.Key, kv.Value.String()))
		}
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// slogDiscard is the bus logger: the example shows the failure as a span
// instead of a log line.
func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
