package main

import "testing"

func TestKindOf(t *testing.T) {
	const es = "github.com/eventstream-go/eventstream"
	for _, tc := range []struct {
		stack []string // leaf first
		want  string
	}{
		{[]string{"runtime.scanObject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, kindGC},
		{[]string{"runtime.memclrNoHeapPointers", "runtime.mallocgc", "runtime.newobject", es + ".(*Bus).decode"}, kindAlloc},
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.Syscall", "net.(*conn).Read", "github.com/segmentio/kafka-go.(*Conn).ReadBatch"}, kindSyscall},
		{[]string{"runtime.futex", "runtime.notewakeup", "runtime.wakep", "runtime.ready", "runtime.chansend", es + "/adapters/kafka.(*reader).run"}, kindSched},
		{[]string{"runtime.lock2", "runtime.findRunnable", "runtime.schedule", "runtime.mcall"}, kindSched},
		// A runtime function under our code that is not a hand-off is
		// the code's: memmove copying a payload.
		{[]string{"runtime.memmove", es + "/internal/wire.DecodeInto", es + ".(*pool).run"}, kindEngine},
		{[]string{"encoding/json.(*decodeState).object", "encoding/json.Unmarshal", es + ".(*Event).Unmarshal", es + "/bench.handler"}, kindEngine},
		{[]string{es + "/bench.(*counter).add"}, kindHarness},
		{[]string{"bytes.(*Buffer).Write", es + "/adapters/nats.(*Adapter).onMsg"}, "adapters/nats"},
		{[]string{"github.com/nats-io/nats%2ego.(*Conn).processMsg", "github.com/nats-io/nats%2ego.(*Conn).readLoop"}, "client library github.com/nats-io/nats.go"},
		{[]string{"github.com/redis/go-redis/v9/internal/proto.(*Reader).ReadLine"}, "client library github.com/redis/go-redis"},
		{[]string{"go.uber.org/zap.(*Logger).Info"}, "client library go.uber.org/zap"},
		{[]string{"runtime.nanotime", "time.Now"}, kindStd},
	} {
		if got := kindOf(tc.stack); got != tc.want {
			t.Errorf("kindOf(%q) = %q, want %q", tc.stack, got, tc.want)
		}
	}
}

func TestShortFunc(t *testing.T) {
	if got := shortFunc("github.com/nats-io/nats%2ego.(*Conn).processMsg"); got != "github.com/nats-io/nats.go.(*Conn).processMsg" {
		t.Errorf("shortFunc unescaped to %q", got)
	}
	if got := shortFunc("github.com/eventstream-go/eventstream/adapters/kafka.(*Adapter).Ack"); got != "eventstream/adapters/kafka.(*Adapter).Ack" {
		t.Errorf("shortFunc kept the module path: %q", got)
	}
}
