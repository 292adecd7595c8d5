package esotel

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/eventstream-go/eventstream"
)

// knownErrors maps the sentinel errors of eventstream and context to their
// error.type values, in the order they are tested.
var knownErrors = [...]struct {
	err  error
	name string
}{
	{eventstream.ErrHandlerPanic, "handler_panic"},
	{eventstream.ErrDecode, "decode"},
	{eventstream.ErrContentType, "content_type"},
	{eventstream.ErrUnsubscribed, "unsubscribed"},
	{eventstream.ErrClosed, "closed"},
	{eventstream.ErrAdapterClosed, "adapter_closed"},
	{eventstream.ErrDrainTimeout, "drain_timeout"},
	{context.DeadlineExceeded, "timeout"},
	{context.Canceled, "canceled"},
}

// Wrappers that say nothing about the error.
var (
	permanentType = reflect.TypeOf(eventstream.Permanent(errors.New("")))
	fmtWrapType   = reflect.TypeOf(fmt.Errorf("%w", errors.New("")))
)

// ErrorType returns the error.type value esotel records for err: the
// result of an ErrorType() string method in err's chain, if any; otherwise
// a short name for the eventstream and context sentinels err wraps
// ("handler_panic" for a panic, "decode", "content_type", "unsubscribed",
// "closed", "adapter_closed", "drain_timeout", "timeout", "canceled");
// otherwise the package-qualified Go type of err after fmt.Errorf and
// eventstream.Permanent wrappers (as semconv.ErrorType does), or "_OTHER" when that type is one of the
// anonymous standard-library error types (errors.New, fmt.Errorf), which
// say nothing. A nil err gives "_OTHER".
func ErrorType(err error) string {
	if err == nil {
		return semconv.ErrorTypeOther.Value.AsString()
	}
	var et interface{ ErrorType() string }
	if errors.As(err, &et) {
		if s := et.ErrorType(); s != "" {
			return s
		}
	}
	for _, k := range knownErrors {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	for t := reflect.TypeOf(err); t == permanentType || t == fmtWrapType; t = reflect.TypeOf(err) {
		inner := errors.Unwrap(err)
		if inner == nil {
			break
		}
		err = inner
	}
	s := semconv.ErrorType(err).Value.AsString()
	switch s {
	case "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
		return semconv.ErrorTypeOther.Value.AsString()
	}
	return s
}
