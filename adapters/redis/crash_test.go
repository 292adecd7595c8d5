package redis_test

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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/redis"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	goredis "github.com/redis/go-redis/v9"
)

// seqPayload is the payload of the crash test's events.
type seqPayload struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

// Environment of the crash-consumer helper process.
const (
	envAddr  = "EVENTSTREAM_REDIS_ADDR"
	envTopic = "EVENTSTREAM_REDIS_TOPIC"
	envGroup = "EVENTSTREAM_REDIS_GROUP"
	envOut   = "EVENTSTREAM_REDIS_OUT"
)

const crashConcurrency = 8

// crashConfig is the adapter config of the crash test's members: a dead
// member's entries are taken over after 2s.
func crashConfig(addr string, log *slog.Logger) redis.Config {
	cfg := testConfig(addr)
	cfg.Logger = log
	return cfg
}

// runCrashConsumer is the consumer process of TestCrashConsumerTakeover: a
// distributed bus over the Redis adapter subscribed with concurrency 8. Its
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
	addr, topic, group, out := os.Getenv(envAddr), os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envOut)
	if addr == "" || topic == "" || group == "" || out == "" {
		return fail("missing %s, %s, %s or %s", envAddr, envTopic, envGroup, envOut)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := redis.NewAdapter(crashConfig(addr, log))
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
		if _, err := f.Write(append(line, '\n')); err != nil {
			return err
		}
		// fsync makes the handler slower than the emitters, so that the
		// members hold many delivered entries when they are killed.
		return f.Sync()
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

func (m *member) stderrTail() string {
	b, err := os.ReadFile(m.errPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 3000 {
		b = b[len(b)-3000:]
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

// TestCrashConsumerTakeover runs the whole bus across processes: this
// process emits 12,000 keyed events while three consumer processes (one
// consumer group, concurrency 8 each) handle them; three times mid-stream
// the member that handled the most in its current life is killed with
// SIGKILL, so its pending entries stay with a consumer that never comes
// back, and a new process takes its slot. The live members must take those
// entries over (XAUTOCLAIM after ClaimIdle): in the end every event was
// handled at least once, and after the last members left gracefully the
// group has no pending entry.
func TestCrashConsumerTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consumer processes; skipped with -short")
	}
	const (
		n        = 12000
		slots    = 3
		window   = 2500 // emitted events not yet handled, at most
		emitters = 4
	)
	thresholds := []int{1500, 5000, 8500}
	start := time.Now()
	b := brokertest.Redis(t)
	topic, group := "crash", "crash-group"
	ctx := testContext(t, 150*time.Second)
	dir := t.TempDir()
	env := []string{envAddr + "=" + b.Addr(), envTopic + "=" + topic, envGroup + "=" + group}

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

	a := newAdapter(t, testConfig(b.Addr()))
	bus := newBus(t, a, nil)
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
			emitDone = nil
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
			t.Fatalf("stats of member %d: %v (%q)", m.id, err, m.stdout.String())
		}
		if st.Failed != 0 {
			t.Errorf("member %d failed events: %+v", m.id, st)
		}
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
		dump()
		t.Fatalf("%d sequence numbers never handled, first %v", len(missing), missing[:min(10, len(missing))])
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

	// The members that left gracefully acknowledged or handed back
	// everything, and the dead members' entries were taken over: whatever
	// is still pending was handed back (idle far beyond ClaimIdle) and is a
	// duplicate of an event that was handled, waiting for the next member.
	rdb := plainClient(t, b.Addr())
	key := a.StreamKey(topic)
	pend, err := rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: 10000}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pend {
		es, err := rdb.XRange(ctx, key, p.ID, p.ID).Result()
		if err != nil || len(es) != 1 {
			t.Fatalf("XRANGE %s: %v %v", p.ID, es, err)
		}
		var env struct {
			Data seqPayload `json:"data"`
		}
		v, _ := es[0].Values["v"].(string)
		if err := json.Unmarshal([]byte(v), &env); err != nil {
			t.Fatalf("entry %s: %v", p.ID, err)
		}
		if led.counts[env.Data.Seq] == 0 || p.Idle < time.Hour {
			t.Errorf("entry %s (seq %d, handled %d times) pending with %s, idle %v: not a handed-back duplicate",
				p.ID, env.Data.Seq, led.counts[env.Data.Seq], p.Consumer, p.Idle)
		}
	}
	t.Logf("entries handed back at the end (handled already, delivered again to the next member): %d", len(pend))
	if dlq := a.StreamKey(eventstream.DeadLetterTopicName(topic, group)); rdb.Exists(ctx, dlq).Val() != 0 {
		t.Errorf("events were dead-lettered: %d in %s", rdb.XLen(ctx, dlq).Val(), dlq)
	}
	// The test is only meaningful if live members did take entries over.
	takenOver := 0
	for _, m := range all {
		log, err := os.ReadFile(m.errPath)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "DATA RACE") {
			t.Errorf("member %d reported a data race:\n%s", m.id, m.stderrTail())
		}
		for line := range strings.Lines(string(log)) {
			if !strings.Contains(line, "took over pending entries") {
				continue
			}
			_, after, _ := strings.Cut(line, " entries=")
			k, _ := strconv.Atoi(strings.TrimSpace(after))
			takenOver += k
		}
	}
	t.Logf("entries taken over from dead members: %d", takenOver)
	if takenOver == 0 {
		t.Error("no member logged a takeover: the kills left nothing pending, so the test proved nothing")
	}
}
