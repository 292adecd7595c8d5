package eventstream

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/eventstream-go/eventstream/internal/backoff"
)

// BackoffStrategy selects how the delay between handler attempts grows.
type BackoffStrategy int

const (
	// BackoffFixed waits InitialDelay before every retry.
	BackoffFixed BackoffStrategy = iota
	// BackoffExponential waits InitialDelay before the first retry and
	// multiplies the delay by Multiplier for each further retry, up to
	// MaxDelay.
	BackoffExponential
)

// String returns the strategy name.
func (s BackoffStrategy) String() string {
	switch s {
	case BackoffFixed:
		return "fixed"
	case BackoffExponential:
		return "exponential"
	}
	return fmt.Sprintf("BackoffStrategy(%d)", int(s))
}

// RetryPolicy says how often and how patiently a failing handler is retried.
//
// A handler is called at most 1+MaxRetries times for one delivery. A handler
// error that wraps a Permanent error, or ErrDecode, is not retried. When the
// attempts are used up the event goes to the subscription's failure path (the
// Config.OnFailure callback and, where configured, a dead-letter topic).
// Waits between attempts end early when the subscription is removed or the bus
// closes, and so do retry loops without delay.
type RetryPolicy struct {
	// MaxRetries is the number of retries after the first attempt; 0 means
	// the handler is called once. Negative values are invalid.
	MaxRetries int
	// BackoffStrategy selects fixed or exponential delays.
	BackoffStrategy BackoffStrategy
	// InitialDelay is the delay before the first retry. Negative values are
	// invalid; 0 retries at once.
	InitialDelay time.Duration
	// MaxDelay caps every delay. 0 means no cap (not zero delay). When
	// non-zero it must not be less than InitialDelay.
	MaxDelay time.Duration
	// Multiplier is the growth factor of BackoffExponential; 0 means 2.
	// Other values below 1, NaN and infinity are invalid.
	Multiplier float64
	// Jitter, in [0, 1], spreads each delay randomly by up to that fraction
	// (0.2 means ±20%) so that many failing consumers do not retry in step.
	Jitter float64
}

// DefaultRetryPolicy returns the policy used when neither the Config nor the
// subscription sets one: 3 retries, exponential from 100ms, doubling, capped at
// 10s, with 20% jitter.
func DefaultRetryPolicy() *RetryPolicy {
	return &RetryPolicy{
		MaxRetries:      3,
		BackoffStrategy: BackoffExponential,
		InitialDelay:    100 * time.Millisecond,
		MaxDelay:        10 * time.Second,
		Multiplier:      2,
		Jitter:          0.2,
	}
}

// Validate reports whether p is usable. The error wraps ErrInvalidRetryPolicy.
func (p *RetryPolicy) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRetryPolicy, fmt.Sprintf(format, args...))
	}
	switch {
	case p == nil:
		return bad("nil policy")
	case p.MaxRetries < 0:
		return bad("MaxRetries %d is negative", p.MaxRetries)
	case p.BackoffStrategy != BackoffFixed && p.BackoffStrategy != BackoffExponential:
		return bad("unknown %v", p.BackoffStrategy)
	case p.InitialDelay < 0:
		return bad("InitialDelay %v is negative", p.InitialDelay)
	case p.MaxDelay < 0:
		return bad("MaxDelay %v is negative", p.MaxDelay)
	case p.MaxDelay > 0 && p.MaxDelay < p.InitialDelay:
		return bad("MaxDelay %v is less than InitialDelay %v", p.MaxDelay, p.InitialDelay)
	case math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) || (p.Multiplier != 0 && p.Multiplier < 1):
		return bad("Multiplier %v must be 0 (meaning 2) or at least 1", p.Multiplier)
	case math.IsNaN(p.Jitter) || p.Jitter < 0 || p.Jitter > 1:
		return bad("Jitter %v must be within [0, 1]", p.Jitter)
	}
	return nil
}

// Delay returns the wait before retry number retry (1 for the first retry),
// without jitter. It never overflows: a delay that would exceed MaxDelay, or
// the largest time.Duration when MaxDelay is 0, is capped there.
func (p *RetryPolicy) Delay(retry int) time.Duration {
	return p.backoff().Delay(retry)
}

// backoff is p as the module's one backoff implementation.
func (p *RetryPolicy) backoff() backoff.Policy {
	return backoff.Policy{Initial: p.InitialDelay, Max: p.MaxDelay, Multiplier: p.Multiplier,
		Exponential: p.BackoffStrategy == BackoffExponential, Jitter: p.Jitter}
}

// permanentError marks an error as not worth retrying.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the bus does not retry the handler: the event
// goes straight to the failure path. Permanent(nil) returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was made by
// Permanent or wraps ErrDecode (a payload that cannot be decoded will not
// decode on a retry either).
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || errors.Is(err, ErrDecode)
}
