package e2e_test

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

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// seqPayload is the payload of the crash test's events.
type seqPayload struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

// Environment of the crash-consumer helper process.
const (
	envBrokers = "EVENTSTREAM_E2E_BROKERS"
	envTopic   = "EVENTSTREAM_E2E_TOPIC"
	envGroup   = "EVENTSTREAM_E2E_GROUP"
	envOut     = "EVENTSTREAM_E2E_OUT"
	envConfig  = "EVENTSTREAM_E2E_CONFIG" // "fast" or "default", see crashConfig
)

const crashConcurrency = 8

// runCrashConsumer is the consumer process of TestCrashConsumerAtLeastOnce:
// one distributed bus over the Kafka adapter subscribed with concurrency 8.
// Its handler appends the event's sequence number to the file named by
// envOut, one line per handled event, before it returns nil (so the line is
// there whenever an ack may follow). SIGTERM closes the bus and the adapter
// and prints the bus Stats as JSON on stdout; SIGKILL is what the test
// mostly sends.
func runCrashConsumer() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "crash-consumer: "+format+"\n", args...)
		return 1
	}
	brokers := strings.Split(os.Getenv(envBrokers), ",")
	topic, group, out := os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envOut)
	if topic == "" || group == "" || out == "" {
		return fail("missing %s, %s or %s", envTopic, envGroup, envOut)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()

	// Warnings go to stderr, which the test keeps in a file per process.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	acfg := crashConfig(os.Getenv(envConfig), brokers)
	acfg.Logger = log
	a, err := kafka.NewAdapter(acfg)
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
	require.NoError(t, err)
	m := &member{
		id: id, slot: slot,
		outPath: filepath.Join(dir, fmt.Sprintf("handled-%02d.txt", id)),
		errPath: filepath.Join(dir, fmt.Sprintf("stderr-%02d.txt", id)),
		done:    make(chan struct{}),
	}
	stderr, err := os.Create(m.errPath)
	require.NoError(t, err)
	defer stderr.Close() // the child has its own descriptor
	m.cmd = exec.Command(exe)
	m.cmd.Env = append(append(os.Environ(), env...), roleEnv+"=crash-consumer", envOut+"="+m.outPath)
	m.cmd.Stdout = &m.stdout
	m.cmd.Stderr = stderr
	require.NoError(t, m.cmd.Start())
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

// crashRun is one run of the crash test: where the broker is and how the
// consumers are configured.
type crashRun struct {
	brokers []string
	// config names the consumers' adapter config: "fast" (fastGroupConfig)
	// or "default" (kafka.Config defaults).
	config string
	// session is the consumers' session timeout; the stream must be
	// finished within session+5s of the last kill.
	session time.Duration
	// kills is how many times a member is killed.
	kills int
}

// defaultSessionTimeout is kafka.Config's documented default.
const defaultSessionTimeout = 10 * time.Second

// crashConfig is the adapter config of the consumer processes.
func crashConfig(name string, brokers []string) kafka.Config {
	if name == "default" {
		return kafka.Config{Brokers: brokers, Logger: logger()}
	}
	return fastGroupConfig(brokers)
}

// crashRuns is how many times the crash test runs on the embedded broker
// with short group timeouts: EVENTSTREAM_CRASH_RUNS, default 2.
func crashRuns(t *testing.T) int {
	s := os.Getenv("EVENTSTREAM_CRASH_RUNS")
	if s == "" {
		return 2
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("EVENTSTREAM_CRASH_RUNS=%q is not a positive number", s)
	}
	return n
}

// TestCrashConsumerAtLeastOnce runs the whole bus across processes: this
// process emits 20,000 keyed events on a 4-partition topic while two
// consumer processes (one consumer group, concurrency 8 each) handle them.
// Five times mid-stream (twice with the default timeouts) the member that
// handled the most events in its current life is killed with SIGKILL; after
// every kill but the last a new process takes its place, after the last the
// surviving member alone has to finish the stream. A killed member never leaves the group, so its
// partitions move only after its session timeout: the stream must be
// finished within SessionTimeout + 5s of the last kill, and every event must
// have been handled at least once.
//
// Every kill waits until the group is Stable with every live process as a
// member and each of them handled events in its current life, so a kill
// always hits a member that owns partitions, never one held in a join (the
// embedded broker gives a member that dies there no session timer and only
// drops it after the rebalance timeout). The emitters stay at most a window
// ahead of what was handled, and the last event waits for the last kill,
// so the stream cannot be finished by one member before the others joined.
//
// It runs on the embedded broker with short group timeouts
// (EVENTSTREAM_CRASH_RUNS times, default 2) and with the adapter's
// defaults, and on Apache Kafka 4.x and 3.9.x with short timeouts.
func TestCrashConsumerAtLeastOnce(t *testing.T) {
	const partitions = 4
	kfakeCluster := func(t *testing.T) []string {
		return kafkatest.NewCluster(t, kfake.SeedTopics(partitions, crashTopic,
			eventstream.DeadLetterTopicName(crashTopic, crashGroup))).Addrs()
	}
	for i := range crashRuns(t) {
		t.Run(fmt.Sprintf("kfake/run-%d", i+1), func(t *testing.T) {
			runCrash(t, crashRun{brokers: kfakeCluster(t), config: "fast", session: fastGroupConfig(nil).SessionTimeout, kills: 5})
		})
	}
	t.Run("kfake/defaults", func(t *testing.T) {
		// Two kills only: each takes a session timeout (10s) to recover.
		runCrash(t, crashRun{brokers: kfakeCluster(t), config: "default", session: defaultSessionTimeout, kills: 2})
	})
	for _, v := range []string{"4.x", "3.9.x"} {
		t.Run("kafka-"+v, func(t *testing.T) {
			b := brokertest.Kafka(t, brokertest.KafkaVersion(v))
			brokers := []string{b.Addr()}
			createTopic(t, brokers, crashTopic, partitions)
			createTopic(t, brokers, eventstream.DeadLetterTopicName(crashTopic, crashGroup), partitions)
			runCrash(t, crashRun{brokers: brokers, config: "fast", session: fastGroupConfig(nil).SessionTimeout, kills: 5})
		})
	}
}

const (
	crashTopic = "crash"
	crashGroup = "crash-group"
)

func runCrash(t *testing.T, run crashRun) {
	const (
		n          = 20000
		partitions = 4
		slots      = 2
		window     = 2000 // emitted events not yet handled, at most
		emitters   = 4
		topic      = crashTopic
		group      = crashGroup
	)
	// Kills happen when the number of distinct handled events passes these
	// thresholds, from 2000 to 18000 (and the group is stable); with the
	// window above the emitters are still running, and at most 2000 events
	// are left after the last kill, so the time until the stream is finished
	// is mostly the failover.
	thresholds := []int{2000}
	for i := 1; i < run.kills; i++ {
		thresholds = append(thresholds, 2000+i*16000/(run.kills-1))
	}
	dlq := eventstream.DeadLetterTopicName(topic, group)
	start := time.Now()
	brokers := run.brokers
	ctx := testContext(t, 150*time.Second+10*run.session)
	dir := t.TempDir()
	env := []string{envBrokers + "=" + strings.Join(brokers, ","), envTopic + "=" + topic,
		envGroup + "=" + group, envConfig + "=" + run.config}
	admin := adminClient(t, brokers)
	defer admin.Close()

	led := newLedger(n)
	var members []*member // live
	var all []*member
	nextID := 0
	spawn := func(slot int) {
		m := startMember(t, dir, nextID, slot, env)
		nextID++
		led.watch(m)
		members = append(members, m)
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
	a := newAdapter(t, fastGroupConfig(brokers))
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
	var lastKill time.Time
	var regrouped time.Duration // last kill until the group was Stable with the survivors alone
	lastStable := time.Time{}
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
		require.NoError(t, led.poll())
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
		if kills == len(thresholds) && regrouped == 0 && time.Since(lastStable) >= 50*time.Millisecond {
			lastStable = time.Now()
			if groupStable(t, ctx, admin, group, len(members)) {
				regrouped = time.Since(lastKill)
			}
		}
		if kills == len(thresholds) || led.distinct < thresholds[kills] {
			continue
		}
		// Every live member handled events in its current life...
		victim := members[0]
		ready := true
		for _, m := range members {
			ready = ready && led.files[m.id].lines >= 50
			if led.files[m.id].lines > led.files[victim.id].lines {
				victim = m
			}
		}
		// ...and the group is Stable with all of them (asked at most every
		// 100ms).
		if !ready || time.Since(lastStable) < 100*time.Millisecond {
			continue
		}
		lastStable = time.Now()
		if !groupStable(t, ctx, admin, group, len(members)) {
			continue
		}
		require.False(t, emitted, "kill %d after the last event was emitted", kills+1)
		victim.killed = true
		require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
		<-victim.done
		lastKill = time.Now()
		kills++
		members = slices.DeleteFunc(members, func(m *member) bool { return m == victim })
		t.Logf("%v: kill %d: SIGKILL member %d (slot %d) after it handled %d; %d distinct handled, %d emitted",
			time.Since(start).Round(time.Millisecond), kills, victim.id, victim.slot,
			led.files[victim.id].lines, led.distinct, min(int(next.Load()), n))
		if kills < len(thresholds) {
			spawn(victim.slot)
		}
	}
	failover := time.Since(lastKill)
	t.Logf("%v: all %d events handled, %v after the last kill; the group was Stable without the killed member after %v "+
		"(session timeout %v, %s config); stopping the consumers with SIGTERM",
		time.Since(start).Round(time.Millisecond), n, failover.Round(time.Millisecond), regrouped.Round(time.Millisecond),
		run.session, run.config)
	if limit := run.session + 5*time.Second; failover > limit {
		dump()
		t.Errorf("the stream was finished %v after the last kill, more than session timeout + 5s = %v", failover.Round(time.Millisecond), limit)
	}

	// The last members leave gracefully and report their counters.
	for _, m := range members {
		require.NoError(t, m.cmd.Process.Signal(syscall.SIGTERM))
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
		require.NoError(t, json.Unmarshal(m.stdout.Bytes(), &st), "stats of member %d: %q", m.id, m.stdout.String())
		require.Zero(t, st.Failed, "member %d failed events: %+v", m.id, st)
		t.Logf("member %d stats: %+v", m.id, st)
	}
	require.NoError(t, led.poll())

	// Every event handled at least once.
	var missing []int
	for s, c := range led.counts {
		if c == 0 {
			missing = append(missing, s)
		}
	}
	require.Empty(t, missing, "sequence numbers never handled")
	require.Equal(t, uint64(n), bus.Stats().Emitted)
	dups := led.total - n
	maxCount := int32(0)
	for _, c := range led.counts {
		maxCount = max(maxCount, c)
	}
	for _, m := range all {
		t.Logf("member %d (slot %d, killed %v): handled %d", m.id, m.slot, m.killed, led.files[m.id].lines)
	}
	t.Logf("crash test: %d events, %d kills, %d handler calls, %d duplicates (%.2f%%), max handled %d times, %v; "+
		"last kill to group Stable again: %v, to stream finished: %v",
		n, kills, led.total, dups, 100*float64(dups)/n, maxCount, time.Since(start).Round(time.Millisecond),
		regrouped.Round(time.Millisecond), failover.Round(time.Millisecond))

	// Nothing was dead-lettered and the graceful leave committed everything.
	for p, off := range endOffsets(t, brokers, dlq, partitions) {
		require.Zero(t, off, "dead-letter partition %d", p)
	}
	require.Equal(t, endOffsets(t, brokers, topic, partitions), committedOffsets(t, brokers, group, topic, partitions),
		"committed offsets after the last members left")

	if os.Getenv("E2E_DUMP") != "" {
		dump()
	}
	// A data race in a helper process shows in its stderr.
	for _, m := range all {
		if s := m.stderr(); strings.Contains(s, "DATA RACE") {
			t.Errorf("member %d reported a data race:\n%s", m.id, s)
		}
	}
}

// groupStable reports whether group is Stable with exactly members members,
// asking the broker directly.
func groupStable(t *testing.T, ctx context.Context, admin *kgo.Client, group string, members int) bool {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := req.RequestWith(rctx, admin)
	if err != nil {
		t.Logf("describe group %s: %v", group, err)
		return false
	}
	if len(resp.Groups) != 1 || resp.Groups[0].ErrorCode != 0 {
		return false
	}
	return resp.Groups[0].State == "Stable" && len(resp.Groups[0].Members) == members
}
