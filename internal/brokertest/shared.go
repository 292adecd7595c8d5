package brokertest

import (
	"fmt"
	"sync"
	"testing"
)

// Shared keeps brokers alive for a whole test binary: the first test that
// asks for a broker under a name starts it, later tests get the same one,
// and Close (called from TestMain after m.Run) stops them all. If the first
// start skipped or failed, every later Get under that name skips or fails
// the same way without trying again. Brokers under different names start
// concurrently when parallel tests ask for them; a Get for a name whose
// start is under way waits for it. The zero value is ready to use.
//
//	var brokers brokertest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		brokers.Close()
//		os.Exit(code)
//	}
//
//	func rabbit(t *testing.T) *brokertest.Broker {
//		return brokers.Get(t, "rabbitmq", brokertest.RabbitMQ)
//	}
//
// Running brokers hold no goroutines, so goleak.VerifyTestMain(m) may be
// used instead of the explicit TestMain above; the processes then die with
// the test binary (parent-death signal) instead of being stopped by Close.
type Shared struct {
	mu       sync.Mutex
	entries  map[string]*sharedEntry
	cleanups []func()
}

type sharedEntry struct {
	ready   chan struct{} // closed when the first start returned or ended its test
	b       *Broker
	skipped string // the first start skipped with this message
	failed  string // the first start failed with this message
}

// Get returns the broker started under name by start, starting it on the
// first call. start is one of this package's starters (or a closure adding
// options, e.g. func(t testing.TB) *Broker { return Redis(t, RedisAOF()) });
// the cleanups it registers run at Close instead of at the end of t. Do not
// Stop, Kill or Restart a shared broker: other tests use it.
func (s *Shared) Get(t testing.TB, name string, start func(testing.TB) *Broker) *Broker {
	t.Helper()
	s.mu.Lock()
	if e, ok := s.entries[name]; ok {
		s.mu.Unlock()
		<-e.ready
		switch {
		case e.skipped != "":
			t.Skip(e.skipped)
		case e.failed != "":
			t.Fatalf("brokertest: shared %s broker failed to start in an earlier test: %s", name, e.failed)
		}
		return e.b
	}
	if s.entries == nil {
		s.entries = make(map[string]*sharedEntry)
	}
	e := &sharedEntry{ready: make(chan struct{})}
	s.entries[name] = e
	s.mu.Unlock()
	st := &sharedTB{TB: t, s: s, e: e}
	done := false
	defer func() {
		// start ended the test (Skip or Fatal call runtime.Goexit).
		if !done && e.skipped == "" && e.failed == "" {
			e.failed = "start did not return"
		}
		close(e.ready)
	}()
	e.b = start(st)
	done = true
	return e.b
}

// Close stops every shared broker and removes its directory, in reverse
// start order. Get may be called again afterwards and starts new brokers.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
	s.entries = nil
}

// sharedTB is the testing.TB a shared broker starts with: cleanups go to
// the Shared, skips and failures are remembered for later tests.
type sharedTB struct {
	testing.TB
	s *Shared
	e *sharedEntry
}

func (st *sharedTB) Cleanup(f func()) {
	st.s.mu.Lock()
	st.s.cleanups = append(st.s.cleanups, f)
	st.s.mu.Unlock()
}

func (st *sharedTB) Skip(args ...any) {
	st.TB.Helper()
	st.e.skipped = fmt.Sprint(args...)
	st.TB.Skip(args...)
}

func (st *sharedTB) Skipf(format string, args ...any) {
	st.TB.Helper()
	st.e.skipped = fmt.Sprintf(format, args...)
	st.TB.Skip(st.e.skipped)
}

func (st *sharedTB) SkipNow() {
	st.TB.Helper()
	st.e.skipped = "skipped"
	st.TB.SkipNow()
}

func (st *sharedTB) Fatal(args ...any) {
	st.TB.Helper()
	st.e.failed = fmt.Sprint(args...)
	st.TB.Fatal(args...)
}

func (st *sharedTB) Fatalf(format string, args ...any) {
	st.TB.Helper()
	st.e.failed = fmt.Sprintf(format, args...)
	st.TB.Fatal(st.e.failed)
}

func (st *sharedTB) FailNow() {
	st.TB.Helper()
	st.e.failed = "failed"
	st.TB.FailNow()
}
