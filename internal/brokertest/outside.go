package brokertest

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
)

// Outside runs start, one of this package's starters (Kafka, RabbitMQ, ...),
// outside a test, for commands and the benchmark report. The starters report
// through testing.TB, whose Fatal and Skip end the calling goroutine, so
// start runs in a goroutine of its own. It returns the started broker and the
// function that stops it (the starter's cleanups, newest first), or the
// message of the starter's Fatal or Skip as an error. logf, when not nil,
// receives the starter's logs.
func Outside(logf func(format string, args ...any), start func(testing.TB) *Broker) (*Broker, func(), error) {
	tb := &outsideTB{logf: logf}
	done := make(chan *Broker, 1)
	go func() {
		defer close(done)
		done <- start(tb)
	}()
	b := <-done
	if b == nil {
		tb.cleanup()
		if tb.msg == "" {
			return nil, nil, errors.New("brokertest: the starter returned no broker")
		}
		return nil, nil, errors.New(tb.msg)
	}
	return b, tb.cleanup, nil
}

// outsideTB is the testing.TB the starters need. The methods it does not
// override panic (the embedded interface is nil); the starters do not call
// them.
type outsideTB struct {
	testing.TB
	logf     func(format string, args ...any)
	msg      string
	cleanups []func()
}

func (t *outsideTB) Helper()                   {}
func (t *outsideTB) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }
func (t *outsideTB) Log(args ...any)           { t.Logf("%s", fmt.Sprint(args...)) }
func (t *outsideTB) Failed() bool              { return t.msg != "" }
func (t *outsideTB) Fatal(args ...any)         { t.stop(fmt.Sprint(args...)) }
func (t *outsideTB) Fatalf(f string, a ...any) { t.stop(fmt.Sprintf(f, a...)) }
func (t *outsideTB) Skip(args ...any)          { t.stop(fmt.Sprint(args...)) }
func (t *outsideTB) Skipf(f string, a ...any)  { t.stop(fmt.Sprintf(f, a...)) }
func (t *outsideTB) stop(msg string)           { t.msg = msg; runtime.Goexit() }

func (t *outsideTB) Logf(format string, args ...any) {
	if t.logf != nil {
		t.logf(format, args...)
	}
}

func (t *outsideTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
