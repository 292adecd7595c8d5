package main

import (
	"strings"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/bench"
)

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

func TestMissesSection(t *testing.T) {
	tc := testCase{Section: "nats-produce", ID: "par64-100B", Title: "64-way Emit/publish, 100 B"}
	r := &runner{cases: []testCase{tc}, results: map[string]*result{}}
	rate := func(peer string, perSec int) {
		s := bench.Sample{Events: perSec, Elapsed: time.Second}
		r.results[key(tc.Section, tc.ID, peer)] = &result{Section: tc.Section, Case: tc.ID, Peer: peer, Samples: []bench.Sample{s}, Median: s}
	}
	rate(bench.PeerBusNATS, 30000)       // N1 met (1×), N2 missed (1.5×)
	rate(bench.PeerNATSGo, 30000)        // the raw client: 1.5× Watermill
	rate(bench.PeerAdapterNATS, 110000)  // 5.5× Watermill
	rate(bench.PeerWatermillNATS, 20000) // N2's baseline
	r.profiles = map[string]*cpuBreakdown{key(tc.Section, tc.ID, bench.PeerBusNATS): {
		Runs: 3, Wall: 2 * time.Second, CPU: 3 * time.Second,
		Kinds: []cpuShare{{kindSched, 0.6}, {kindEngine, 0.4}},
		Top:   []cpuShare{{"runtime.futex", 0.3}},
	}}
	var b strings.Builder
	r.missesSection(&b, r.evalGoals())
	out := b.String()
	for _, want := range []string{
		"- **N2** (≥ 5× Watermill-nats JetStream) — worst in *64-way Emit/publish, 100 B*: 1.50×.",
		"**eventstream (bus over adapters/nats) 1.50×**",
		"nats.go jetstream (raw) 1.50×",
		"Reaching ≥ 5× here: adapters/nats alone (no bus).",
		"(3 run(s), 2s, 1.50 cores busy): " + kindSched + " 60%, " + kindEngine + " 40%",
		"`runtime.futex` 30%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "**N1**") {
		t.Errorf("N1 is met but is listed:\n%s", out)
	}
}

//go:noinline
func spinInside(d time.Duration) (n int) {
	for start := time.Now(); time.Since(start) < d; {
		for i := range 100000 {
			n += i * i
		}
	}
	return n
}

//go:noinline
func spinOutside(d time.Duration) (n int) {
	for start := time.Now(); time.Since(start) < d; {
		for i := range 100000 {
			n += i * i
		}
	}
	return n
}

// TestProfileRunsOnlyTimedWindows checks that a run's work outside the
// window it opens (set-up, the forced GC before timing) is not in the
// profile, and that runs repeat until the windows cover minWall.
func TestProfileRunsOnlyTimedWindows(t *testing.T) {
	runs := 0
	bd, err := profileRuns(bench.Scenario{}, 300*time.Millisecond, func(sc bench.Scenario) error {
		runs++
		spinOutside(100 * time.Millisecond)
		end := sc.Window()
		spinInside(100 * time.Millisecond)
		end()
		spinOutside(50 * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs < 3 || bd.Runs != runs {
		t.Errorf("runs = %d, breakdown says %d; want ≥ 3 runs for 300ms of 100ms windows", runs, bd.Runs)
	}
	if bd.Wall < 300*time.Millisecond || bd.Wall > 600*time.Millisecond {
		t.Errorf("profiled wall = %v, want the windows' ~%v", bd.Wall, time.Duration(runs)*100*time.Millisecond)
	}
	var inside bool
	for _, s := range bd.Top {
		if strings.HasSuffix(s.Name, ".spinOutside") {
			t.Errorf("work outside the windows was profiled: %v", bd.Top)
		}
		inside = inside || strings.HasSuffix(s.Name, ".spinInside")
	}
	if !inside || bd.CPU == 0 {
		t.Errorf("the windows' work is not in the profile: cpu %v, top %v", bd.CPU, bd.Top)
	}
}

func TestProfileRunsNeedsAWindow(t *testing.T) {
	if _, err := profileRuns(bench.Scenario{}, time.Millisecond, func(bench.Scenario) error { return nil }); err == nil {
		t.Fatal("a run that opens no window gave a profile")
	}
}
