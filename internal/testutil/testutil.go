// Package testutil holds the test helpers of the module: receiving with a
// timeout, waiting for a condition, and collecting what handler goroutines
// see. Helpers that can fail a test must be called from the test goroutine;
// the collectors are safe to use from any goroutine and never fail a test
// themselves, so handlers (which run on worker goroutines, where
// t.FailNow is forbidden) report through them.
package testutil

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Quiet is a logger for tests that provoke failures on purpose.
var Quiet = slog.New(slog.DiscardHandler)

// Recv receives one value from ch, failing the test if none arrives within
// timeout. what names the awaited value in the failure message.
func Recv[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("waiting for %s: channel closed", what)
		}
		return v
	case <-time.After(timeout):
		t.Fatalf("no %s within %v", what, timeout)
	}
	var zero T
	return zero
}

// Done waits until ch is closed (or yields a value), failing the test after
// timeout.
func Done[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("%s did not happen within %v", what, timeout)
	}
}

// Eventually polls cond every few milliseconds until it holds, failing the
// test with the message of describe (called once, at the failure) if it
// does not within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, describe())
		}
		<-tick.C
	}
}

// Within runs fn on another goroutine and fails the test if it does not
// return within timeout. It returns how long fn took.
func Within(t testing.TB, timeout time.Duration, what string, fn func()) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	Done(t, done, timeout, what)
	return time.Since(start)
}

// Collector gathers values from any goroutine.
type Collector[T any] struct {
	mu     sync.Mutex
	vals   []T
	change chan struct{} // closed and replaced on every Add
}

// NewCollector returns an empty collector.
func NewCollector[T any]() *Collector[T] {
	return &Collector[T]{change: make(chan struct{})}
}

// Add records v.
func (c *Collector[T]) Add(v T) {
	c.mu.Lock()
	c.vals = append(c.vals, v)
	close(c.change)
	c.change = make(chan struct{})
	c.mu.Unlock()
}

// All returns a copy of the values so far.
func (c *Collector[T]) All() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.vals...)
}

// Len is the number of values so far.
func (c *Collector[T]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.vals)
}

// Wait waits until at least n values were added and returns them, failing
// the test after timeout.
func (c *Collector[T]) Wait(t testing.TB, n int, timeout time.Duration, what string) []T {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.vals) >= n {
			v := append([]T(nil), c.vals...)
			c.mu.Unlock()
			return v
		}
		ch, have := c.change, len(c.vals)
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("got %d of %d %s within %v", have, n, what, timeout)
			return nil
		}
	}
}

// Problems records what handler goroutines find wrong, for the test
// goroutine to report with Check.
type Problems struct{ c *Collector[string] }

// NewProblems returns an empty Problems.
func NewProblems() *Problems { return &Problems{c: NewCollector[string]()} }

// Addf records a problem.
func (p *Problems) Addf(format string, args ...any) { p.c.Add(fmt.Sprintf(format, args...)) }

// Check fails the test with every recorded problem.
func (p *Problems) Check(t testing.TB) {
	t.Helper()
	for _, s := range p.c.All() {
		t.Error(s)
	}
}
