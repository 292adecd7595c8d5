package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/eventstream-go/eventstream/bench"
	"github.com/google/pprof/profile"
)

// Where a goal is missed, the report says what is in the way with a CPU
// profile: after the measured repetitions of a scenario, the eventstream
// peer of every goal missed in it runs again (unrecorded) under the CPU
// profiler, and the samples are split into a few kinds of work.

// Profiled runs repeat until they cover minProfileWall (the profiler
// samples at 100 Hz, so one short drain alone would give a few dozen
// samples), at most maxProfileRuns times.
const (
	minProfileWall = 2 * time.Second
	maxProfileRuns = 200
)

// cpuShare is one line of a breakdown: a kind of work or a function, and
// its share of the sampled CPU time.
type cpuShare struct {
	Name  string
	Share float64
}

// cpuBreakdown is the CPU profile of one peer in one scenario.
type cpuBreakdown struct {
	Runs  int
	Wall  time.Duration // wall time of the profiled (timed) parts of the runs
	CPU   time.Duration // sampled CPU time
	Kinds []cpuShare    // kinds of work, largest first
	Top   []cpuShare    // hottest functions by self time, largest first
}

// profileMisses profiles, in scenario tc, the eventstream peer of every
// goal that tc misses. run performs one measurement of the named peer in
// the scenario it is given (tc's, with a profiling window).
func (r *runner) profileMisses(tc testCase, run func(peer string, sc bench.Scenario) error) {
	if r.o.cpuprofile != "" || r.o.noProfiles {
		return // a whole-run profile is being written, or profiles are off
	}
	for _, g := range goals() {
		if !g.Cases(tc) || g.Ours == "" {
			continue
		}
		v, ok := g.value(r, tc)
		if !ok || g.met(v) {
			continue
		}
		k := key(tc.Section, tc.ID, g.Ours)
		if _, done := r.profiles[k]; done {
			continue
		}
		bd, err := profileRuns(tc.Sc, minProfileWall, func(sc bench.Scenario) error { return run(g.Ours, sc) })
		if err != nil {
			r.logf("%s: profile: %v", k, err)
			continue
		}
		if r.profiles == nil {
			r.profiles = map[string]*cpuBreakdown{}
		}
		r.profiles[k] = bd
		r.logf("%s: profiled (%s missed): %s", k, g.ID, bd.kindsText(4))
	}
}

// profileRuns calls run with sc until the timed parts of its runs cover
// minWall, profiling only those parts (the windows the run opens,
// see bench.Scenario.Window: not set-up, preloading, warm-up or the forced
// GC before timing, which would otherwise crowd out what is measured), and
// breaks the samples down.
func profileRuns(sc bench.Scenario, minWall time.Duration, run func(bench.Scenario) error) (*cpuBreakdown, error) {
	var (
		parts []*profile.Profile
		wall  time.Duration
		werr  error
	)
	sc.Window = func() func() {
		var buf bytes.Buffer
		if err := pprof.StartCPUProfile(&buf); err != nil {
			werr = err
			return func() {}
		}
		start := time.Now()
		return func() {
			pprof.StopCPUProfile()
			wall += time.Since(start)
			p, err := profile.Parse(&buf)
			if err != nil {
				werr = err
				return
			}
			parts = append(parts, p)
		}
	}
	runs := 0
	for runs < maxProfileRuns && (runs == 0 || wall < minWall) {
		runs++
		if err := run(sc); err != nil {
			return nil, err
		}
		if werr != nil {
			return nil, werr
		}
	}
	if len(parts) == 0 {
		return nil, errors.New("the runs opened no timed window")
	}
	p, err := profile.Merge(parts)
	if err != nil {
		return nil, err
	}
	bd := breakdown(p)
	bd.Runs, bd.Wall = runs, wall
	return bd, nil
}

// breakdown splits the samples of a CPU profile into kinds of work and
// finds the hottest functions.
func breakdown(p *profile.Profile) *cpuBreakdown {
	vi := len(p.SampleType) - 1 // cpu nanoseconds follow the sample count
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	kinds := map[string]int64{}
	self := map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		var stack []string // leaf first
		for _, loc := range s.Location {
			// A location lists inlined functions innermost first.
			for _, ln := range loc.Line {
				if ln.Function != nil {
					stack = append(stack, ln.Function.Name)
				}
			}
		}
		if len(stack) == 0 {
			continue
		}
		total += v
		kinds[kindOf(stack)] += v
		self[stack[0]] += v
	}
	bd := &cpuBreakdown{CPU: time.Duration(total)}
	if total == 0 {
		return bd
	}
	bd.Kinds = shares(kinds, total, 0)
	bd.Top = shares(self, total, 6)
	return bd
}

func shares(m map[string]int64, total int64, limit int) []cpuShare {
	var out []cpuShare
	for name, v := range m {
		out = append(out, cpuShare{name, float64(v) / float64(total)})
	}
	slices.SortFunc(out, func(a, b cpuShare) int {
		if c := cmp.Compare(b.Share, a.Share); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// The kinds of work a sample is put in. The runtime's own activities come
// first (whoever caused them); the rest goes to the first frame, from the
// leaf up, that is not the runtime or the standard library, so an
// encoding/json call made by the engine counts as the engine's.
const (
	kindGC      = "GC (background marking and sweeping)"
	kindAlloc   = "memory allocation"
	kindSyscall = "system calls (socket reads and writes)"
	kindSched   = "goroutine hand-offs and scheduling (channels, locks, park/wake-up)"
	kindEngine  = "eventstream engine (root package, internal/wire, serializer)"
	kindHarness = "benchmark harness (handler, counting)"
	kindStd     = "runtime and standard library, other"
)

// schedFuncs are runtime functions whose presence in a stack means the
// sample is spent handing work between goroutines or waiting for it.
var schedFuncs = []string{
	"runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.gopark",
	"runtime.goready", "runtime.ready", "runtime.wakep", "runtime.startm", "runtime.stopm",
	"runtime.futex", "runtime.notesleep", "runtime.notewakeup", "runtime.netpoll",
	"runtime.selectgo", "runtime.chansend", "runtime.chanrecv", "runtime.lock2",
	"runtime.unlock2", "runtime.semacquire1", "runtime.semrelease1", "sync.(*Mutex).lockSlow",
	"sync.(*Mutex).unlockSlow", "runtime.usleep", "runtime.osyield", "runtime.mPark",
	"runtime.goschedImpl", "runtime.newproc", "runtime.goexit0", "runtime.gosched_m",
}

// kindOf classifies one sample's stack (function names, leaf first).
func kindOf(stack []string) string {
	for _, f := range stack {
		switch f {
		case "runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge":
			return kindGC
		}
	}
	leaf := stack[0]
	if strings.HasPrefix(leaf, "syscall.") || strings.HasPrefix(leaf, "internal/runtime/syscall") ||
		strings.HasPrefix(leaf, "runtime/internal/syscall") {
		return kindSyscall
	}
	for _, f := range stack {
		if f == "runtime.mallocgc" {
			return kindAlloc
		}
		if slices.Contains(schedFuncs, f) {
			return kindSched
		}
		if !isStd(f) {
			break // the sample is in code of its own, not in the runtime's hand-offs
		}
	}
	for _, f := range stack {
		if isStd(f) {
			continue
		}
		return ownerOf(f)
	}
	return kindStd
}

// isStd reports whether a function belongs to the runtime or the standard
// library: the first element of its package path has no dot.
func isStd(fn string) bool {
	first, _, _ := strings.Cut(pkgPath(fn), "/")
	return !strings.Contains(first, ".")
}

// pkgPath is the package path of a function's symbol name: up to the first
// dot after the last slash (the linker writes a dot in the last path
// element as %2e, so that dot is the separator).
func pkgPath(fn string) string {
	i := strings.LastIndex(fn, "/") + 1
	if j := strings.Index(fn[i:], "."); j >= 0 {
		return strings.ReplaceAll(fn[:i+j], "%2e", ".")
	}
	return fn
}

// ownerOf names the code a non-standard function belongs to.
func ownerOf(fn string) string {
	const self = "github.com/eventstream-go/eventstream"
	pkg := pkgPath(fn)
	if rest, ok := strings.CutPrefix(pkg, self); ok {
		switch {
		case strings.HasPrefix(rest, "/adapters/"):
			name, _, _ := strings.Cut(strings.TrimPrefix(rest, "/adapters/"), "/")
			return "adapters/" + name
		case rest == "/bench" || strings.HasPrefix(rest, "/bench/"):
			return kindHarness
		}
		return kindEngine
	}
	// The module: three path elements on github.com, two elsewhere.
	n := 2
	if strings.HasPrefix(pkg, "github.com/") {
		n = 3
	}
	if parts := strings.SplitN(pkg, "/", n+1); len(parts) > n {
		pkg = strings.Join(parts[:n], "/")
	}
	return "client library " + pkg
}

// kindsText is the breakdown's first n kinds of work on one line.
func (bd *cpuBreakdown) kindsText(n int) string {
	var parts []string
	for i, k := range bd.Kinds {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k.Name, k.Share*100))
	}
	return strings.Join(parts, ", ")
}

// shortFunc is a function's name as the report prints it: escapes undone,
// our own module path trimmed.
func shortFunc(fn string) string {
	return strings.TrimPrefix(strings.ReplaceAll(fn, "%2e", "."), "github.com/eventstream-go/")
}

// worst is the index of the case in which ge is furthest from its limit
// (-1 when nothing was measured).
func (ge goalEval) worst() int {
	w := -1
	for i, v := range ge.values {
		if !ge.have[i] {
			continue
		}
		if w < 0 || (ge.Cmp == "<=" && v > ge.values[w]) || (ge.Cmp != "<=" && v < ge.values[w]) {
			w = i
		}
	}
	return w
}

// missesSection says, for every goal in evals that is not met, what is in
// the way in its worst scenario: how every peer measured there compares
// with the goal's baseline, and where eventstream's CPU time goes.
func (r *runner) missesSection(b *strings.Builder, evals []goalEval) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	var missed []goalEval
	for _, ge := range evals {
		if i := ge.worst(); i >= 0 && !ge.met(ge.values[i]) {
			missed = append(missed, ge)
		}
	}
	if len(missed) == 0 {
		return
	}
	w("### What is in the way of the goals not met\n\n")
	w("For each goal not met, its worst scenario: every peer measured there as a multiple of the goal's baseline (same run), ")
	w("and a CPU profile of the eventstream peer in that scenario: after the measured repetitions it ran again, unrecorded, ")
	w("under the Go CPU profiler (100 Hz), which covered only the timed part of each run (not set-up, preloading, warm-up or the forced GC before timing), repeated until those parts added up to %v. ", minProfileWall)
	w("Each sample goes to the first of these that applies: GC, allocation, system calls, goroutine hand-offs and scheduling (runtime functions that move work between goroutines); ")
	w("otherwise to the first frame, from the leaf up, outside the runtime and standard library (so JSON work the engine does is the engine's). ")
	w("Client and broker share the machine's %d cores; the broker is a separate process and is not in the profile. ", r.machine.Cores)
	w("*Cores busy* is the profiled CPU time ÷ wall time: well below the core count, the client spends its time waiting (for the broker or for a goroutine to be woken), which no CPU profile shows.\n\n")
	for _, ge := range missed {
		i := ge.worst()
		tc := ge.cases[i]
		req := ge.required()
		if bl := ge.baseline(); bl != "" {
			req += " " + bl
		}
		w("- **%s** (%s) — worst in *%s*: %s.\n", ge.ID, req, tc.Title, ge.fmtValue(ge.values[i]))
		if line := r.peersVsBaseline(ge, tc); line != "" {
			w("  - %s\n", line)
		}
		bd := r.profiles[key(tc.Section, tc.ID, ge.Ours)]
		if bd == nil {
			w("  - No profile of %s in this scenario (`-no-profiles`, `-cpuprofile` or a failed run).\n", ge.Ours)
			continue
		}
		var top []string
		for _, t := range bd.Top {
			top = append(top, fmt.Sprintf("`%s` %.0f%%", shortFunc(t.Name), t.Share*100))
		}
		cores := 0.0
		if bd.Wall > 0 {
			cores = bd.CPU.Seconds() / bd.Wall.Seconds()
		}
		w("  - CPU of %s (%d run(s), %v, %.2f cores busy): %s. Hottest functions (self): %s.\n",
			ge.Ours, bd.Runs, bd.Wall.Round(10*time.Millisecond), cores, bd.kindsText(len(bd.Kinds)), strings.Join(top, ", "))
	}
	w("\n")
}

// baseline names what a goal is measured against.
func (g goal) baseline() string {
	switch {
	case g.Theirs == "":
		return ""
	case g.Theirs == g.Ours && g.Serial:
		return "the same peer with one handler"
	}
	return g.Theirs
}

// peersVsBaseline is one line comparing every peer measured in case tc
// with the goal's baseline, and saying whether any of them reaches the
// goal's limit.
func (r *runner) peersVsBaseline(ge goalEval, tc testCase) string {
	if ge.Theirs == "" || ge.Theirs == ge.Ours {
		return ""
	}
	base, ok := r.get(tc.Section, ge.theirsCase(tc), ge.Theirs)
	if !ok {
		return ""
	}
	timeRatio := ge.Cmp == "<=" // M1: ns per event ÷ the baseline's
	var parts, reach []string
	var ours string
	for _, res := range r.results {
		if res.Section != tc.Section || res.Case != tc.ID || res.Peer == ge.Theirs {
			continue
		}
		s, ok := r.get(tc.Section, tc.ID, res.Peer)
		if !ok {
			continue
		}
		v := s.PerSec() / base.PerSec()
		if timeRatio {
			v = s.NsPerEvent() / base.NsPerEvent()
		}
		part := fmt.Sprintf("%s %s", res.Peer, ge.fmtValue(v))
		if res.Peer == ge.Ours {
			ours = part
			continue
		}
		parts = append(parts, part)
		if ge.met(v) {
			reach = append(reach, res.Peer)
		}
	}
	slices.Sort(parts)
	if ours != "" {
		parts = append([]string{"**" + ours + "**"}, parts...)
	}
	if len(parts) == 0 {
		return ""
	}
	what := "throughput ÷ " + ge.Theirs + "'s"
	if timeRatio {
		what = "ns per event ÷ " + ge.Theirs + "'s"
	}
	if ge.Serial {
		what += " with one handler"
	}
	verdict := fmt.Sprintf("No other peer reaches %s here either.", ge.required())
	if len(reach) > 0 {
		verdict = fmt.Sprintf("Reaching %s here: %s.", ge.required(), strings.Join(reach, ", "))
	}
	return fmt.Sprintf("Same scenario, %s: %s. %s", what, strings.Join(parts, "; "), verdict)
}
