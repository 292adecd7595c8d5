package esotel_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/eventstream-go/eventstream/esotel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quiet is a logger for tests that provoke failures on purpose.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// rig is an Observer wired to a span recorder and a manual metric reader.
type rig struct {
	obs    *esotel.Observer
	tp     *sdktrace.TracerProvider
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newRig(t testing.TB, opts ...esotel.Option) *rig {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	opts = append([]esotel.Option{
		esotel.WithTracerProvider(tp),
		esotel.WithMeterProvider(mp),
		esotel.WithPropagators(propagation.TraceContext{}),
	}, opts...)
	return &rig{obs: esotel.New(opts...), tp: tp, spans: sr, reader: reader}
}

// ended returns the ended spans named name.
func (r *rig) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitSpans waits until n spans named name have ended, or fails the test.
func (r *rig) waitSpans(t testing.TB, name string, n int, timeout time.Duration) []sdktrace.ReadOnlySpan {
	t.Helper()
	var got []sdktrace.ReadOnlySpan
	waitFor(t, timeout, func() bool {
		got = r.ended(name)
		return len(got) >= n
	}, func() string { return "spans " + name + ": " + spanNames(r.spans.Ended()) })
	return got
}

func spanNames(spans []sdktrace.ReadOnlySpan) string {
	s := ""
	for _, sp := range spans {
		s += " [" + sp.Name() + "]"
	}
	return s
}

// waitFor polls cond until it holds or timeout passes, then fails with
// what() describing the state.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting: %s", timeout, what())
		case <-tick.C:
		}
	}
}

// collect reads the metrics.
func (r *rig) collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

// findMetric returns the metric named name, or fails.
func findMetric(t testing.TB, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return metricdata.Metrics{}
}

// sumInt returns the sum of an int64 Sum metric over the data points whose
// attributes include every key/value in match.
func sumInt(t testing.TB, m metricdata.Metrics, match ...attribute.KeyValue) int64 {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: data is %T, want Sum[int64]", m.Name, m.Data)
	}
	var n int64
	for _, dp := range s.DataPoints {
		if matches(dp.Attributes, match) {
			n += dp.Value
		}
	}
	return n
}

// histCount returns the count of a float64 histogram over the data points
// whose attributes include match, and the bounds of the first point.
func histCount(t testing.TB, m metricdata.Metrics, match ...attribute.KeyValue) (uint64, []float64) {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data is %T, want Histogram[float64]", m.Name, m.Data)
	}
	var n uint64
	var bounds []float64
	for _, dp := range h.DataPoints {
		if matches(dp.Attributes, match) {
			n += dp.Count
			bounds = dp.Bounds
		}
	}
	return n, bounds
}

func matches(set attribute.Set, match []attribute.KeyValue) bool {
	for _, kv := range match {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// attr returns the value of key on span, and whether it is set.
func attr(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// wantAttrs checks that span has every attribute of want.
func wantAttrs(t testing.TB, s sdktrace.ReadOnlySpan, want ...attribute.KeyValue) {
	t.Helper()
	for _, kv := range want {
		v, ok := attr(s, kv.Key)
		if !ok {
			t.Errorf("span %q: no attribute %s (want %s)", s.Name(), kv.Key, kv.Value.String())
			continue
		}
		if v != kv.Value {
			t.Errorf("span %q: %s = %s, want %s", s.Name(), kv.Key, v.String(), kv.Value.String())
		}
	}
}

// linkedTo reports whether s has a link to sc.
func linkedTo(s sdktrace.ReadOnlySpan, sc trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return true
		}
	}
	return false
}

// childOf reports whether s's parent is the span of sc.
func childOf(s sdktrace.ReadOnlySpan, sc trace.SpanContext) bool {
	return s.Parent().TraceID() == sc.TraceID() && s.Parent().SpanID() == sc.SpanID()
}

// durationBuckets are the bounds the conventions advise.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

func equalBounds(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
