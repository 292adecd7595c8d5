// Package crashtest runs the bus across processes and kills consumers with
// SIGKILL mid-stream, for the adapters' at-least-once tests.
//
// The test process emits numbered events through a bus while consumer
// processes (the test binary itself, started again in the consumer role)
// handle them in one consumer group. Each consumer appends the number of
// every event it handled to a file of its own before its handler returns, so
// the file holds a line for every event that may have been acknowledged. The
// test process tails those files, kills the busiest consumer at given
// points, starts a new one in its slot, and checks in the end that every
// event was handled at least once, counting the duplicates.
//
// A package uses it from TestMain (before anything else):
//
//	if crashtest.IsConsumer() {
//		os.Exit(crashtest.Consume(newAdapter))
//	}
//
// and from a test with Run.
package crashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
)

// Environment of a consumer process.
const (
	envRole        = "EVENTSTREAM_CRASHTEST_ROLE"
	envTopic       = "EVENTSTREAM_CRASHTEST_TOPIC"
	envGroup       = "EVENTSTREAM_CRASHTEST_GROUP"
	envOut         = "EVENTSTREAM_CRASHTEST_OUT"
	envConcurrency = "EVENTSTREAM_CRASHTEST_CONCURRENCY"
	envSync        = "EVENTSTREAM_CRASHTEST_SYNC"
)

// Payload is the payload of the events Run emits.
type Payload struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

// IsConsumer reports whether this process was started by Run as a consumer.
func IsConsumer() bool { return os.Getenv(envRole) == "consumer" }

// Consume is the body of a consumer process: a distributed bus over the
// adapter newAdapter returns (it gets the process's logger, which writes to
// stderr), subscribed to the topic and group Run chose. It returns the
// process's exit code once SIGTERM closed the bus, after printing the bus
// Stats as JSON on stdout. Environment the adapter needs (a broker address)
// comes from Config.Env.
func Consume(newAdapter func(log *slog.Logger) (eventstream.MQAdapter, error)) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "crashtest consumer: "+format+"\n", args...)
		return 1
	}
	topic, group, out := os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envOut)
	concurrency, err := strconv.Atoi(os.Getenv(envConcurrency))
	if topic == "" || group == "" || out == "" || err != nil {
		return fail("missing or bad %s, %s, %s or %s", envTopic, envGroup, envOut, envConcurrency)
	}
	sync := os.Getenv(envSync) == "1"
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := newAdapter(log)
	if err != nil {
		return fail("adapter: %v", err)
	}
	defer a.Close()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.Logger = log
	cfg.DrainTimeout = 5 * time.Second
	bus, err := eventstream.New(cfg)
	if err != nil {
		return fail("New: %v", err)
	}
	h := eventstream.Typed(func(_ context.Context, _ *eventstream.Event, p Payload) error {
		line := strconv.AppendInt(make([]byte, 0, 16), int64(p.Seq), 10)
		// One write(2) per line: O_APPEND makes concurrent lines land whole.
		if _, err := f.Write(append(line, '\n')); err != nil {
			return err
		}
		if sync {
			// A slower handler: the members hold more delivered events when
			// they are killed.
			return f.Sync()
		}
		return nil
	})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	if _, err := bus.On(topic, h, eventstream.WithConsumerGroup(group), eventstream.WithConcurrency(concurrency)); err != nil {
		return fail("On: %v", err)
	}
	<-sigs
	cerr := bus.Close()
	if err := a.Close(); err != nil && cerr == nil {
		cerr = err
	}
	if err := json.NewEncoder(os.Stdout).Encode(bus.Stats()); err != nil {
		return fail("writing stats: %v", err)
	}
	if cerr != nil {
		return fail("close: %v", cerr)
	}
	return 0
}

// Config describes one crash run. Zero fields take the defaults named.
type Config struct {
	// Bus emits the events, in the test process. Required.
	Bus eventstream.Bus
	// Topic and Group the consumers subscribe with. Required.
	Topic, Group string
	// Env is added to the environment of every consumer process: what its
	// adapter needs, such as the broker's address.
	Env []string
	// Events is how many events are emitted. Default 10,000.
	Events int
	// Members is how many consumer processes run at once. Default 2.
	Members int
	// Concurrency of each consumer's subscription. Default 8.
	Concurrency int
	// Window is how far the emitters may run ahead of what was handled, so
	// that the kills happen while events are still being emitted. Default
	// 1,500.
	Window int
	// Kills are the numbers of distinct handled events at which the busiest
	// member is killed. Default {1500, 4000, 6500}.
	Kills []int
	// MinHandled is how many events a member must have handled in its
	// current life before it may be killed. Default 100.
	MinHandled int
	// Emitters is how many goroutines emit. Default 4.
	Emitters int
	// Keys is how many distinct event keys there are. Default 509.
	Keys int
	// Sync makes each handler fsync its line: a slower handler.
	Sync bool
	// Timeout bounds the whole run. Default 150s.
	Timeout time.Duration
	// AllHandled makes a kill wait until every live member, not only the
	// victim, handled MinHandled events in its current life.
	AllHandled bool
	// Ready, if set, is asked whether the live members (live of them) are
	// ready to lose one, such as whether the broker sees them all in a
	// settled group: at the start, until it reports true (the emitters
	// wait after the first Window events meanwhile, so that one member
	// cannot handle the whole stream before the others joined and then
	// no kill could find every member with MinHandled); once a kill is
	// due, until it reports true; and after the last kill until it first
	// reports true again (Result.ReadyAgain). It is asked at most every
	// ReadyInterval. An error fails the run.
	Ready func(ctx context.Context, live int) (bool, error)
	// ReadyInterval is how often Ready may be asked. Default 100ms.
	ReadyInterval time.Duration
	// SurvivorsFinish leaves the member killed last unreplaced: the other
	// members alone finish the stream. It needs at least 2 Members.
	SurvivorsFinish bool
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Events, 10000)
	def(&c.Members, 2)
	def(&c.Concurrency, 8)
	def(&c.Window, 1500)
	def(&c.MinHandled, 100)
	def(&c.Emitters, 4)
	def(&c.Keys, 509)
	if c.Kills == nil {
		c.Kills = []int{1500, 4000, 6500}
	}
	if c.Timeout == 0 {
		c.Timeout = 150 * time.Second
	}
	if c.ReadyInterval == 0 {
		c.ReadyInterval = 100 * time.Millisecond
	}
}

// Result is what a run measured.
type Result struct {
	// HandlerCalls counts every line the consumers wrote; Duplicates is
	// HandlerCalls minus Events.
	HandlerCalls, Duplicates int
	// MaxHandled is the most times one event was handled.
	MaxHandled int
	// SinceLastKill is the time from the last kill until every event was
	// handled: how long the group took to recover and finish the stream.
	SinceLastKill time.Duration
	// ReadyAgain is the time from the last kill until Config.Ready first
	// reported true after it; zero without Ready, without kills, or when
	// the stream was finished first.
	ReadyAgain time.Duration
	// Stats are the bus counters of the members that left gracefully.
	Stats []eventstream.Stats
	// Counts holds, by event number, how many times it was handled.
	Counts []int32
	// Logs holds what every member (killed or not) wrote to stderr, its
	// slog records among them.
	Logs []string
}

// Run runs the crash test described by c and fails t unless every event was
// handled at least once, no member failed an event or reported a data
// race, and the last members left gracefully.
func Run(t testing.TB, c Config) Result {
	t.Helper()
	c.defaults()
	if c.Bus == nil || c.Topic == "" || c.Group == "" {
		t.Fatal("crashtest: Config.Bus, Topic and Group are required")
	}
	if c.SurvivorsFinish && c.Members < 2 {
		t.Fatal("crashtest: Config.SurvivorsFinish needs at least 2 Members")
	}
	if len(c.Kills) > 0 && c.Kills[len(c.Kills)-1] >= c.Events {
		t.Fatalf("crashtest: the last kill (%d) must come before the last event (%d)", c.Kills[len(c.Kills)-1], c.Events)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	dir := t.TempDir()
	env := append([]string{
		envRole + "=consumer", envTopic + "=" + c.Topic, envGroup + "=" + c.Group,
		envConcurrency + "=" + strconv.Itoa(c.Concurrency),
	}, c.Env...)
	if c.Sync {
		env = append(env, envSync+"=1")
	}

	led := &ledger{counts: make([]int32, c.Events), files: map[int]*tailed{}}
	var members []*member // live
	var all []*member
	spawn := func(slot int) {
		m := startMember(t, dir, len(all), slot, env)
		led.files[m.id] = &tailed{path: m.outPath}
		members = append(members, m)
		all = append(all, m)
	}
	for s := range c.Members {
		spawn(s)
	}
	dump := func() {
		for _, m := range all {
			t.Logf("member %d (slot %d, killed %v, exited %v): handled %d; stderr tail:\n%s",
				m.id, m.slot, m.killed, m.exited(), led.files[m.id].lines, m.stderrTail())
		}
	}
	failf := func(format string, args ...any) {
		t.Helper()
		dump()
		t.Fatalf(format, args...)
	}

	g := newGate(c.Window)
	ectx, stopEmitters := context.WithCancel(ctx)
	var next atomic.Int64
	emitErr := make(chan error, c.Emitters)
	var ewg sync.WaitGroup
	for range c.Emitters {
		ewg.Go(func() {
			for {
				s := int(next.Add(1) - 1)
				if s >= c.Events {
					return
				}
				if err := g.wait(ectx, s); err != nil {
					emitErr <- err
					return
				}
				p := Payload{Seq: s, Pad: "crash-test-payload"}
				if err := c.Bus.Emit(ectx, c.Topic, p, eventstream.WithKey("key-"+strconv.Itoa(s%c.Keys))); err != nil {
					emitErr <- fmt.Errorf("emit %d: %w", s, err)
					return
				}
			}
		})
	}
	emitFinished := make(chan struct{})
	go func() {
		ewg.Wait()
		close(emitFinished)
	}()
	defer func() {
		stopEmitters()
		<-emitFinished
	}()

	emitDone := emitFinished
	emitted := false
	kills := 0
	var lastKill time.Time
	var readyAgain time.Duration
	var lastReady time.Time // when Ready was last asked
	// ready asks c.Ready, at most every c.ReadyInterval (false in
	// between).
	ready := func() bool {
		if time.Since(lastReady) < c.ReadyInterval {
			return false
		}
		lastReady = time.Now()
		ok, err := c.Ready(ctx, len(members))
		if err != nil {
			failf("ready: %v", err)
		}
		return ok
	}
	joined := c.Ready == nil // every member joined: the emitters may pass the first window
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !(emitted && kills == len(c.Kills) && led.distinct == c.Events) {
		select {
		case <-tick.C:
		case <-emitDone:
			emitted = true
			emitDone = nil // receive once
		case err := <-emitErr:
			failf("emitter: %v", err)
		case <-ctx.Done():
			failf("timed out after %v: %d of %d events handled (%d handler calls), %d kills, all emitted: %v, all joined: %v",
				c.Timeout, led.distinct, c.Events, led.total, kills, emitted, joined)
		}
		if err := led.poll(); err != nil {
			t.Fatal(err)
		}
		limit := led.distinct + c.Window
		if kills < len(c.Kills) {
			limit = min(limit, c.Events-1) // the last event waits for the last kill
		}
		if !joined && ready() {
			joined = true
		}
		if joined {
			g.raise(limit)
		}
		for _, m := range members {
			if m.exited() {
				failf("member %d exited on its own: %v", m.id, m.waitErr)
			}
		}
		if c.Ready != nil && kills > 0 && kills == len(c.Kills) && readyAgain == 0 {
			if ready() {
				readyAgain = time.Since(lastKill)
			}
		}
		if kills < len(c.Kills) && led.distinct >= c.Kills[kills] {
			// The victim is the member that handled the most in its
			// current life, and only once it handled enough (and, with
			// AllHandled, every member did).
			victim := members[0]
			enough := true
			for _, m := range members {
				if led.files[m.id].lines > led.files[victim.id].lines {
					victim = m
				}
				enough = enough && (!c.AllHandled || led.files[m.id].lines >= c.MinHandled)
			}
			if !enough || led.files[victim.id].lines < c.MinHandled {
				continue
			}
			if c.Ready != nil {
				if !ready() {
					continue
				}
			}
			if emitted {
				failf("kill %d after the last event was emitted", kills+1)
			}
			victim.killed = true
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-victim.done
			lastKill = time.Now()
			kills++
			t.Logf("%v: kill %d: SIGKILL member %d (slot %d) after it handled %d; %d distinct handled, %d emitted",
				time.Since(start).Round(time.Millisecond), kills, victim.id, victim.slot,
				led.files[victim.id].lines, led.distinct, min(int(next.Load()), c.Events))
			members = slices.DeleteFunc(members, func(m *member) bool { return m == victim })
			if kills < len(c.Kills) || !c.SurvivorsFinish {
				spawn(victim.slot)
			}
		}
	}
	res := Result{ReadyAgain: readyAgain}
	if !lastKill.IsZero() {
		res.SinceLastKill = time.Since(lastKill)
	}
	t.Logf("%v: all %d events handled, %v after the last kill; stopping the consumers with SIGTERM",
		time.Since(start).Round(time.Millisecond), c.Events, res.SinceLastKill.Round(time.Millisecond))

	// The last members leave gracefully and report their counters.
	for _, m := range members {
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		select {
		case <-m.done:
		case <-ctx.Done():
			failf("member %d did not stop after SIGTERM", m.id)
		}
		if m.waitErr != nil {
			failf("member %d: %v", m.id, m.waitErr)
		}
		var st eventstream.Stats
		if err := json.Unmarshal(m.stdout.Bytes(), &st); err != nil {
			t.Fatalf("stats of member %d: %q: %v", m.id, m.stdout.String(), err)
		}
		if st.Failed != 0 {
			t.Errorf("member %d failed events: %+v", m.id, st)
		}
		res.Stats = append(res.Stats, st)
	}
	if err := led.poll(); err != nil {
		t.Fatal(err)
	}

	var missing []int
	for s, n := range led.counts {
		if n == 0 {
			missing = append(missing, s)
		}
		res.MaxHandled = max(res.MaxHandled, int(n))
	}
	if len(missing) > 0 {
		failf("%d events never handled, first %v", len(missing), missing[:min(len(missing), 10)])
	}
	res.HandlerCalls = led.total
	res.Duplicates = led.total - c.Events
	res.Counts = led.counts
	for _, m := range all {
		t.Logf("member %d (slot %d, killed %v): handled %d", m.id, m.slot, m.killed, led.files[m.id].lines)
		log := m.stderr()
		res.Logs = append(res.Logs, log)
		// A data race in a consumer process shows in its stderr.
		if strings.Contains(log, "DATA RACE") {
			t.Errorf("member %d reported a data race:\n%s", m.id, m.stderrTail())
		}
	}
	readyLine := ""
	if c.Ready != nil {
		readyLine = fmt.Sprintf(", ready again %v after the last kill", res.ReadyAgain.Round(time.Millisecond))
	}
	t.Logf("crash test: %d events, %d kills, %d handler calls, %d duplicates (%.2f%%), max handled %d times, %v after the last kill%s, %v in all",
		c.Events, kills, res.HandlerCalls, res.Duplicates, 100*float64(res.Duplicates)/float64(c.Events),
		res.MaxHandled, res.SinceLastKill.Round(time.Millisecond), readyLine, time.Since(start).Round(time.Millisecond))
	return res
}

// member is one consumer process (one incarnation of a slot).
type member struct {
	id, slot int
	cmd      *exec.Cmd
	outPath  string
	errPath  string
	stdout   bytes.Buffer
	done     chan struct{} // closed once Wait returned
	waitErr  error         // valid once done is closed
	killed   bool
}

func startMember(t testing.TB, dir string, id, slot int, env []string) *member {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := &member{
		id: id, slot: slot,
		outPath: filepath.Join(dir, fmt.Sprintf("handled-%02d.txt", id)),
		errPath: filepath.Join(dir, fmt.Sprintf("stderr-%02d.txt", id)),
		done:    make(chan struct{}),
	}
	stderr, err := os.Create(m.errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close() // the child has its own descriptor
	m.cmd = exec.Command(exe)
	m.cmd.Env = append(append(os.Environ(), env...), envOut+"="+m.outPath)
	m.cmd.Stdout = &m.stdout
	m.cmd.Stderr = stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		<-m.done
	})
	return m
}

func (m *member) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *member) stderr() string {
	b, err := os.ReadFile(m.errPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func (m *member) stderrTail() string {
	s := m.stderr()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// ledger counts, per event number, how often the members handled it, from
// the files they append to.
type ledger struct {
	counts   []int32 // by event number
	distinct int     // event numbers with a count above 0
	total    int     // sum of counts
	files    map[int]*tailed
}

// tailed is one member's file: what of it was read.
type tailed struct {
	path  string
	off   int64  // bytes read so far
	rest  []byte // a line read in part
	lines int    // whole lines read
}

// poll reads what was appended to every file since the last poll.
func (l *ledger) poll() error {
	for _, f := range l.files {
		if err := l.pollFile(f); err != nil {
			return err
		}
	}
	return nil
}

func (l *ledger) pollFile(f *tailed) error {
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // the process has not opened it yet
	}
	if err != nil {
		return err
	}
	defer fh.Close()
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(fh)
	if err != nil {
		return err
	}
	f.off += int64(len(b))
	b = append(f.rest, b...)
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		f.rest = b
		return nil
	}
	for line := range bytes.Lines(b[:end+1]) {
		s, err := strconv.Atoi(string(bytes.TrimSuffix(line, []byte("\n"))))
		if err != nil || s < 0 || s >= len(l.counts) {
			return fmt.Errorf("%s: bad line %q", f.path, line)
		}
		if l.counts[s] == 0 {
			l.distinct++
		}
		l.counts[s]++
		l.total++
		f.lines++
	}
	f.rest = append([]byte(nil), b[end+1:]...)
	return nil
}

// gate lets the emitters emit event numbers below a limit that only grows.
type gate struct {
	mu    sync.Mutex
	limit int
	ch    chan struct{} // closed when limit grows
}

func newGate(limit int) *gate { return &gate{limit: limit, ch: make(chan struct{})} }

func (g *gate) raise(limit int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if limit > g.limit {
		g.limit = limit
		close(g.ch)
		g.ch = make(chan struct{})
	}
}

// wait blocks until seq may be emitted or ctx is done.
func (g *gate) wait(ctx context.Context, seq int) error {
	for {
		g.mu.Lock()
		ok, ch := seq < g.limit, g.ch
		g.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
