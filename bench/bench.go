package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Scenario describes one measurement.
type Scenario struct {
	// Groups is the number of subscriptions (memory) or consumer groups
	// (Kafka) that each receive every event: 1, or 4 for fan-out.
	Groups int
	// Concurrency is the number of handler goroutines per subscription.
	Concurrency int
	// Producers is the number of goroutines emitting at once: 1 for
	// sequential Emit, 64 for 64-way.
	Producers int
	// Payload is the payload size in bytes.
	Payload int
	// Events is the number of events emitted (memory, produce) or consumed
	// by each group (Kafka consumption).
	Events int
	// Window, if set, is called as each timed part of a measurement
	// begins, and the function it returns as that part ends: set-up,
	// preloading, warm-up and the forced GC before timing are outside.
	// The report uses it to profile only what is timed.
	Window func() (end func())
}

// window opens sc.Window if it is set; the result closes it.
func (sc Scenario) window() (end func()) {
	if sc.Window == nil {
		return func() {}
	}
	return sc.Window()
}

func (sc Scenario) String() string {
	return fmt.Sprintf("groups=%d conc=%d producers=%d payload=%dB events=%d",
		sc.Groups, sc.Concurrency, sc.Producers, sc.Payload, sc.Events)
}

// Sample is the result of one measurement.
type Sample struct {
	// Events is the number of events emitted (or consumed per group).
	Events int
	// Handled is the number of handler calls (Events × Groups).
	Handled int64
	// Elapsed is the timed part: from the first Emit until the last handler
	// call returned (memory), until the last publish returned (Kafka
	// produce), or from subscribing to the last handled message less
	// Startup (Kafka consumption).
	Elapsed time.Duration
	// Mallocs is the number of heap allocations of this process during the
	// timed part (the broker runs in another process).
	Mallocs uint64
	// CPU is the CPU time of this process during the timed part, and
	// BrokerCPU that of the broker process (Kafka; 0 when unknown).
	CPU, BrokerCPU time.Duration
	// Startup is, for Kafka consumption, the time from subscribing until
	// a one-message backlog reached the handler (group join and first
	// fetch); it is not part of Elapsed.
	Startup time.Duration
}

// NsPerEvent is the elapsed time per emitted (or consumed) event.
func (s Sample) NsPerEvent() float64 {
	if s.Events == 0 {
		return math.NaN()
	}
	return float64(s.Elapsed.Nanoseconds()) / float64(s.Events)
}

// PerSec is the number of events emitted (or consumed per group) per second.
func (s Sample) PerSec() float64 {
	if s.Elapsed <= 0 {
		return math.NaN()
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

// AllocsPerEvent is the number of heap allocations per emitted event.
func (s Sample) AllocsPerEvent() float64 {
	if s.Events == 0 {
		return math.NaN()
	}
	return float64(s.Mallocs) / float64(s.Events)
}

// CPUPerEvent is this process's CPU time per emitted (or consumed) event.
func (s Sample) CPUPerEvent() time.Duration { return perEvent(s.CPU, s.Events) }

// BrokerCPUPerEvent is the broker's CPU time per event.
func (s Sample) BrokerCPUPerEvent() time.Duration { return perEvent(s.BrokerCPU, s.Events) }

func perEvent(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

// NotApplicable is returned when a peer does not support a scenario.
type NotApplicable struct{ Reason string }

func (e *NotApplicable) Error() string { return "n/a: " + e.Reason }

func na(format string, args ...any) error {
	return &NotApplicable{Reason: fmt.Sprintf(format, args...)}
}

// IsNA reports whether err says the scenario does not apply, and why.
func IsNA(err error) (string, bool) {
	var e *NotApplicable
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}

// Median returns the sample with the median elapsed time per event; its
// Mallocs, CPU, BrokerCPU (per event) and Startup are the medians of their
// own.
func Median(samples []Sample) Sample {
	if len(samples) == 0 {
		return Sample{}
	}
	s := slices.Clone(samples)
	slices.SortFunc(s, func(a, b Sample) int {
		return cmpFloat(a.NsPerEvent(), b.NsPerEvent())
	})
	m := s[len(s)/2]
	allocs := make([]float64, len(s))
	starts := make([]float64, len(s))
	cpu := make([]float64, len(s))
	bcpu := make([]float64, len(s))
	for i, x := range s {
		allocs[i] = x.AllocsPerEvent()
		starts[i] = float64(x.Startup)
		cpu[i] = float64(x.CPU) / float64(max(x.Events, 1))
		bcpu[i] = float64(x.BrokerCPU) / float64(max(x.Events, 1))
	}
	m.Mallocs = uint64(medianFloat(allocs) * float64(m.Events))
	m.Startup = time.Duration(medianFloat(starts))
	m.CPU = time.Duration(medianFloat(cpu) * float64(m.Events))
	m.BrokerCPU = time.Duration(medianFloat(bcpu) * float64(m.Events))
	return m
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func medianFloat(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// Latency summarizes Emit→handler latencies.
type Latency struct {
	Samples  int
	P50, P99 time.Duration
}

// Summarize computes the percentiles of d.
func Summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	pct := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Latency{Samples: len(s), P50: pct(0.50), P99: pct(0.99)}
}

// MedianLatency returns the medians of the P50s and of the P99s.
func MedianLatency(ls []Latency) Latency {
	if len(ls) == 0 {
		return Latency{}
	}
	p50 := make([]float64, len(ls))
	p99 := make([]float64, len(ls))
	n := 0
	for i, l := range ls {
		p50[i], p99[i] = float64(l.P50), float64(l.P99)
		n += l.Samples
	}
	return Latency{Samples: n, P50: time.Duration(medianFloat(p50)), P99: time.Duration(medianFloat(p99))}
}

// counter counts handler calls and closes done when want is reached.
type counter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
	last atomic.Int64 // unix nanos of the call that reached want
}

func newCounter(want int64) *counter {
	return &counter{want: want, done: make(chan struct{})}
}

func (c *counter) add() {
	if c.n.Add(1) == c.want {
		c.last.Store(time.Now().UnixNano())
		close(c.done)
	}
}

// wait waits for want calls or until d passed.
func (c *counter) wait(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		return fmt.Errorf("timeout after %v: %d of %d events handled", d, c.n.Load(), c.want)
	}
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// quiet is the logger given to every library: benchmarks must not print.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Payload is the in-process event payload; peers pass a pointer to it.
type Payload struct {
	Seq  int64
	Data []byte
}

func newData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// split divides n events among p producers.
func split(n, p int) []int {
	out := make([]int, p)
	for i := range out {
		out[i] = n / p
		if i < n%p {
			out[i]++
		}
	}
	return out
}

// runProducers runs producers goroutines that call send counts[i] times
// each and returns the first error.
func runProducers(producers, events int, send func(worker, i int) error) error {
	var wg sync.WaitGroup
	var errOnce sync.Once
	var first error
	for w, n := range split(events, producers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := send(w, i); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
