// Package backoff computes retry delays. It is the one backoff
// implementation of the module: eventstream.RetryPolicy (handler retries),
// the bus's dead-letter write retries and adapters use it.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Policy describes a sequence of delays. The zero Policy means no delay.
type Policy struct {
	// Initial is the first delay; 0 or less means every delay is 0.
	Initial time.Duration
	// Max caps every delay; 0 means no cap.
	Max time.Duration
	// Multiplier is the growth factor per step when Exponential; 0 means 2.
	Multiplier float64
	// Exponential makes delays grow by Multiplier; otherwise every delay is
	// Initial.
	Exponential bool
	// Jitter in [0, 1] spreads each delay randomly by up to that fraction.
	Jitter float64
}

// Delay returns the delay before retry n (1 for the first), without jitter.
// It saturates instead of overflowing: at Max, or the largest Duration.
func (p Policy) Delay(n int) time.Duration {
	if n < 1 || p.Initial <= 0 {
		return 0
	}
	limit := time.Duration(math.MaxInt64)
	if p.Max > 0 {
		limit = p.Max
	}
	d := p.Initial
	if p.Exponential {
		m := p.Multiplier
		if m == 0 {
			m = 2
		}
		f := float64(p.Initial) * math.Pow(m, float64(n-1))
		if f >= float64(limit) || math.IsInf(f, 0) || math.IsNaN(f) {
			return limit
		}
		d = time.Duration(f)
	}
	return min(d, limit)
}

// Jittered returns Delay(n) spread by the policy's jitter.
func (p Policy) Jittered(n int) time.Duration {
	return p.Spread(p.Delay(n))
}

// Spread applies the policy's jitter to d.
func (p Policy) Spread(d time.Duration) time.Duration {
	if p.Jitter == 0 || d <= 0 {
		return d
	}
	f := float64(d) * (1 + p.Jitter*(2*rand.Float64()-1))
	if f >= math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(max(f, 0))
}

// Sleep waits d, or until ctx is done or stop is closed (stop may be nil).
// It reports whether the full delay passed. A zero or negative d returns
// true at once unless ctx is already done or stop already closed, so that
// loops with zero delays still notice cancellation.
func Sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}
