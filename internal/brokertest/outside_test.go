package brokertest

import (
	"strings"
	"testing"
)

// TestOutside: a starter's Fatal or Skip becomes an error and its cleanups
// run; a started broker comes back with the function that runs them.
func TestOutside(t *testing.T) {
	for _, end := range []func(testing.TB){
		func(t testing.TB) { t.Fatalf("no %s", "broker") },
		func(t testing.TB) { t.Skip("no broker") },
	} {
		cleaned := 0
		b, stop, err := Outside(nil, func(t testing.TB) *Broker {
			t.Cleanup(func() { cleaned++ })
			end(t)
			return &Broker{}
		})
		if b != nil || stop != nil || err == nil || !strings.Contains(err.Error(), "no broker") || cleaned != 1 {
			t.Errorf("failed start: broker %v, error %v, %d cleanups run; want nil, \"no broker\", 1", b, err, cleaned)
		}
	}
	var order []int
	var logs []string
	want := &Broker{}
	b, stop, err := Outside(func(f string, a ...any) { logs = append(logs, f) }, func(t testing.TB) *Broker {
		t.Cleanup(func() { order = append(order, 1) })
		t.Cleanup(func() { order = append(order, 2) })
		t.Logf("started")
		return want
	})
	if err != nil || b != want || len(order) != 0 || len(logs) != 1 {
		t.Fatalf("start: broker %v, error %v, cleanups %v, logs %v", b, err, order, logs)
	}
	stop()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran as %v, want [2 1]", order)
	}
}
