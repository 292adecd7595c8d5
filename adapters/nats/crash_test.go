package nats_test

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
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
)

// seqPayload is the payload of the crash test's events.
type seqPayload struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

// Environment of the crash-consumer helper process.
const (
	envURL   = "EVENTSTREAM_NATS_TEST_URL"
	envTopic = "EVENTSTREAM_NATS_TEST_TOPIC"
	envGroup = "EVENTSTREAM_NATS_TEST_GROUP"
	envOut   = "EVENTSTREAM_NATS_TEST_OUT"
)

const crashConcurrency = 8

// crashAckWait is the AckWait of the crash test: how long the messages a
// killed member held stay invisible to the group.
const crashAckWait = 2 * time.Second

// runCrashConsumer is the consumer process of TestCrashConsumer: one
// distributed bus over the NATS adapter subscribed with concurrency 8. Its
// handler appends the event's sequence number to the file named by envOut,
// one line per handled event, before it returns nil (so the line is there
// whenever an ack may follow). SIGTERM closes the bus and the adapter and
// prints the bus Stats as JSON on stdout; SIGKILL is what the test mostly
// sends.
func runCrashConsumer() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "crash-consumer: "+format+"\n", args...)
		return 1
	}
	url, topic, group, out := os.Getenv(envURL), os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envOut)
	if url == "" || topic == "" || group == "" || out == "" {
		return fail("missing %s, %s, %s or %s", envURL, envTopic, envGroup, envOut)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	acfg := testConfig(url)
	acfg.AckWait = crashAckWait
	acfg.Logger = log
	a, err := nats.NewAdapter(acfg)
	if err != nil {
		return fail("%v", err)
	}
	defer a.Close()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.Logger = log
	cfg.DrainTimeout = 5 * time.Second
	bus, err := eventstream.New(cfg)
	if err != nil {
		return fail("%v", err)
	}
	h := eventstream.Typed(func(_ context.Context, _ *eventstream.Event, p seqPayload) error {
		line := strconv.AppendInt(make([]byte, 0, 16), int64(p.Seq), 10)
		// One write(2) per line: O_APPEND makes concurrent lines land whole.
		_, err := f.Write(append(line, '\n'))
		return err
	})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	if _, err := bus.On(topic, h, eventstream.WithConsumerGroup(group), eventstream.WithConcurrency(crashConcurrency)); err != nil {
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

// member is one consumer process (one incarnation of a slot).
type member struct {
	id, slot int
	cmd      *exec.Cmd
	outPath  string
	errPath  string
	stdout   bytes.Buffer
	done     chan struct{} // closed once Wait returned
	waitErr  error
	killed   bool
}

func startMember(t *testing.T, dir string, id, slot int, env []string) *member {
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
	m.cmd.Env = append(append(os.Environ(), env...), roleEnv+"=crash-consumer", envOut+"="+m.outPath)
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
	b := m.stderr()
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ledger tails the handled files of every member and counts, per sequence
// number, how often it was handled.
type ledger struct {
	counts   []int32
	distinct int
	total    int
	files    map[int]*tailed // by member id
}

type tailed struct {
	path  string
	off   int64
	rest  []byte
	lines int
}

func newLedger(n int) *ledger {
	return &ledger{counts: make([]int32, n), files: make(map[int]*tailed)}
}

func (l *ledger) watch(m *member) { l.files[m.id] = &tailed{path: m.outPath} }

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

// gate lets the emitters run at most window events ahead of what the
// consumers handled, so that the kills happen while events are still being
// emitted.
type gate struct {
	mu    sync.Mutex
	limit int
	ch    chan struct{}
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

// wait blocks until seq may be emitted.
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

// TestCrashConsumer runs the whole bus across processes: this process emits
// 10,000 keyed events while two consumer processes (one consumer group,
// concurrency 8 each) handle them; three times mid-stream the member that
// handled the most events in its current life is killed with SIGKILL and
// started again. The messages a killed member held come back after AckWait.
// In the end every event must have been handled at least once; duplicates
// are reported. It runs on the embedded server and on nats-server.
func TestCrashConsumer(t *testing.T) {
	for _, srv := range []struct {
		name string
		url  func(testing.TB) string
	}{
		{"embedded", sharedURL},
		{"nats-server", systemServer},
	} {
		t.Run(srv.name, func(t *testing.T) { crashConsumer(t, srv.url(t)) })
	}
}

func crashConsumer(t *testing.T, url string) {
	const (
		n        = 10000
		slots    = 2
		window   = 1500 // emitted events not yet handled, at most
		emitters = 4
	)
	topic, group := uniq(t, "crash"), "crash-group"
	// Kills happen when the number of distinct handled events passes these
	// thresholds; with the window above the emitters are still running.
	thresholds := []int{1500, 4000, 6500}
	start := time.Now()
	ctx := ctxT(t, 150*time.Second)
	dir := t.TempDir()
	env := []string{envURL + "=" + url, envTopic + "=" + topic, envGroup + "=" + group}

	led := newLedger(n)
	members := make([]*member, slots)
	var all []*member
	nextID := 0
	spawn := func(slot int) {
		m := startMember(t, dir, nextID, slot, env)
		nextID++
		led.watch(m)
		members[slot] = m
		all = append(all, m)
	}
	for s := range slots {
		spawn(s)
	}
	dump := func() {
		for _, m := range all {
			t.Logf("member %d (slot %d, killed %v, exited %v): handled %d; stderr tail:\n%s",
				m.id, m.slot, m.killed, m.exited(), led.files[m.id].lines, m.stderrTail())
		}
	}

	// Emit from this process through the bus.
	a := newAdapter(t, testConfig(url))
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	g := newGate(window)
	ectx, stopEmitters := context.WithCancel(ctx)
	var next atomic.Int64
	emitErr := make(chan error, emitters)
	emitFinished := make(chan struct{})
	var ewg sync.WaitGroup
	for range emitters {
		ewg.Add(1)
		go func() {
			defer ewg.Done()
			for {
				s := int(next.Add(1) - 1)
				if s >= n {
					return
				}
				if err := g.wait(ectx, s); err != nil {
					emitErr <- err
					return
				}
				p := seqPayload{Seq: s, Pad: "crash-test-payload"}
				if err := bus.Emit(ectx, topic, p, eventstream.WithKey("key-"+strconv.Itoa(s%509))); err != nil {
					emitErr <- fmt.Errorf("emit %d: %w", s, err)
					return
				}
			}
		}()
	}
	go func() {
		ewg.Wait()
		close(emitFinished)
	}()
	t.Cleanup(func() {
		stopEmitters()
		<-emitFinished
	})
	emitDone := emitFinished

	emitted := false
	kills := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !(emitted && kills == len(thresholds) && led.distinct == n) {
		select {
		case <-tick.C:
		case <-emitDone:
			emitted = true
			emitDone = nil // receive once
		case err := <-emitErr:
			dump()
			t.Fatalf("emitter: %v", err)
		case <-ctx.Done():
			dump()
			t.Fatalf("timed out: %d of %d events handled (%d handler calls), %d kills, all emitted: %v",
				led.distinct, n, led.total, kills, emitted)
		}
		if err := led.poll(); err != nil {
			t.Fatal(err)
		}
		limit := led.distinct + window
		if kills < len(thresholds) {
			limit = min(limit, n-1) // the last event waits for the last kill
		}
		g.raise(limit)
		for _, m := range members {
			if m.exited() {
				dump()
				t.Fatalf("member %d exited on its own: %v", m.id, m.waitErr)
			}
		}
		if kills < len(thresholds) && led.distinct >= thresholds[kills] {
			// The victim is the member that handled the most in its
			// current life, and only once it handled something.
			victim := members[0]
			for _, m := range members[1:] {
				if led.files[m.id].lines > led.files[victim.id].lines {
					victim = m
				}
			}
			if led.files[victim.id].lines < 100 {
				continue
			}
			if emitted {
				t.Fatalf("kill %d after the last event was emitted", kills+1)
			}
			victim.killed = true
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-victim.done
			kills++
			t.Logf("%v: kill %d: SIGKILL member %d (slot %d) after it handled %d; %d distinct handled, %d emitted",
				time.Since(start).Round(time.Millisecond), kills, victim.id, victim.slot,
				led.files[victim.id].lines, led.distinct, min(int(next.Load()), n))
			spawn(victim.slot)
		}
	}
	t.Logf("%v: all %d events handled; stopping the consumers with SIGTERM", time.Since(start).Round(time.Millisecond), n)

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
			dump()
			t.Fatalf("member %d did not stop after SIGTERM", m.id)
		}
		if m.waitErr != nil {
			dump()
			t.Fatalf("member %d: %v", m.id, m.waitErr)
		}
		var st eventstream.Stats
		if err := json.Unmarshal(m.stdout.Bytes(), &st); err != nil {
			t.Fatalf("stats of member %d: %q: %v", m.id, m.stdout.String(), err)
		}
		if st.Failed != 0 {
			t.Errorf("member %d failed events: %+v", m.id, st)
		}
		t.Logf("member %d stats: %+v", m.id, st)
	}
	if err := led.poll(); err != nil {
		t.Fatal(err)
	}

	var missing []int
	for s, c := range led.counts {
		if c == 0 {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d sequence numbers never handled, first %v", len(missing), missing[:min(len(missing), 10)])
	}
	if got := bus.Stats().Emitted; got != n {
		t.Errorf("emitted %d, want %d", got, n)
	}
	dups := led.total - n
	maxCount := int32(0)
	for _, c := range led.counts {
		maxCount = max(maxCount, c)
	}
	for _, m := range all {
		t.Logf("member %d (slot %d, killed %v): handled %d", m.id, m.slot, m.killed, led.files[m.id].lines)
	}
	t.Logf("crash test: %d events, %d kills, %d handler calls, %d duplicates (%.2f%%), max handled %d times, %v",
		n, kills, led.total, dups, 100*float64(dups)/n, maxCount, time.Since(start).Round(time.Millisecond))

	// The graceful leave acknowledged everything: nothing is pending for
	// the group.
	_, js := plainJS(t, url)
	info := consumerInfo(t, js, a, topic, group)
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("after the last members left: %d messages unacknowledged, %d undelivered", info.NumAckPending, info.NumPending)
	}
	// A data race in a helper process shows in its stderr.
	for _, m := range all {
		if s := m.stderr(); bytes.Contains([]byte(s), []byte("DATA RACE")) {
			t.Errorf("member %d reported a data race:\n%s", m.id, s)
		}
	}
}
