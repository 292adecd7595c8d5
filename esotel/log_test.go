package esotel_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/eventstream-go/eventstream"
)

// logRecord is one record the bus logged, with the span context of the
// context it was logged with: what a slog-to-OpenTelemetry bridge would use
// to correlate it with the trace.
type logRecord struct {
	msg  string
	span trace.SpanContext
}

// spanCapture is a slog.Handler that keeps every record with its span.
type spanCapture struct {
	mu      sync.Mutex
	records []logRecord
}

func (h *spanCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *spanCapture) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *spanCapture) WithGroup(string) slog.Handler            { return h }
func (h *spanCapture) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, logRecord{msg: r.Message, span: trace.SpanContextFromContext(ctx)})
	return nil
}

func (h *spanCapture) find(msg string) (logRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.msg == msg {
			return r, true
		}
	}
	return logRecord{}, false
}

// TestFailureLogsCarryTheAttemptSpan checks that the records the bus logs
// about a handler attempt (a panic, and the final failure) are logged with
// the context of that attempt, whose span is the process span esotel
// started, in the emitter's trace.
func TestFailureLogsCarryTheAttemptSpan(t *testing.T) {
	r := newRig(t)
	logs := &spanCapture{}
	cfg := eventstream.DefaultConfig()
	cfg.Logger = slog.New(logs)
	cfg.Observer = r.obs
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bus.Close() }()

	var mu sync.Mutex
	var attempts []trace.SpanContext
	_, err = bus.On("payments", func(ctx context.Context, e *eventstream.Event) error {
		mu.Lock()
		attempts = append(attempts, trace.SpanContextFromContext(ctx))
		n := len(attempts)
		mu.Unlock()
		if n == 1 {
			panic("first attempt panics")
		}
		return errors.New("card declined")
	}, eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: 1, BackoffStrategy: eventstream.BackoffFixed}))
	if err != nil {
		t.Fatal(err)
	}
	rctx, root := r.tp.Tracer("test").Start(context.Background(), "request")
	if err := bus.Emit(rctx, "payments", map[string]int{"amount": 5}); err != nil {
		t.Fatal(err)
	}
	root.End()

	waitFor(t, 10*time.Second, func() bool {
		_, ok := logs.find("eventstream: event failed")
		return ok
	}, func() string { return "no \"event failed\" record was logged" })

	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 {
		t.Fatalf("handler ran %d times, want 2", len(attempts))
	}
	for i, want := range []struct {
		msg     string
		attempt trace.SpanContext
	}{
		{"eventstream: handler did not return normally", attempts[0]},
		{"eventstream: event failed", attempts[1]},
	} {
		rec, ok := logs.find(want.msg)
		if !ok {
			t.Errorf("%d: no %q record", i, want.msg)
			continue
		}
		if !rec.span.IsValid() {
			t.Errorf("%q was logged with a context without a span", want.msg)
			continue
		}
		if rec.span.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%q: trace %s, want the emitter's trace %s", want.msg, rec.span.TraceID(), root.SpanContext().TraceID())
		}
		if rec.span.SpanID() != want.attempt.SpanID() {
			t.Errorf("%q: span %s, want the span of the attempt it is about (%s)", want.msg, rec.span.SpanID(), want.attempt.SpanID())
		}
	}
}
