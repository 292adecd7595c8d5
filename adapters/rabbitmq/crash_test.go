package rabbitmq_test

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

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
)

// roleEnv selects what the test binary does when a test starts it as a
// helper process.
const roleEnv = "EVENTSTREAM_RABBITMQ_ROLE"

// Environment of the crash-consumer helper process.
const (
	envURL   = "EVENTSTREAM_RABBITMQ_URL"
	envTopic = "EVENTSTREAM_RABBITMQ_TOPIC"
	envGroup = "EVENTSTREAM_RABBITMQ_GROUP"
	envOut   = "EVENTSTREAM_RABBITMQ_OUT"
)

func runRole(role string) int {
	switch role {
	case "crash-consumer":
		return runCrashConsumer()
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
		return 2
	}
}

type seqPayload struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

const crashConcurrency = 8

// runCrashConsumer is the consumer process of TestCrashConsumer: a
// distributed bus over the adapter, subscribed with concurrency 8. Its
// handler appends the sequence number to the file named by envOut (one
// write per line) before it returns nil, so the line exists whenever an ack
// may follow. SIGTERM closes the bus and prints its Stats as JSON.
func runCrashConsumer() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "crash-consumer: "+format+"\n", args...)
		return 1
	}
	url, topic, group, out := os.Getenv(envURL), os.Getenv(envTopic), os.Getenv(envGroup), os.Getenv(envOut)
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail("%v", err)
	}
	defer f.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	acfg := testConfig(url)
	acfg.Logger = log
	a, err := rabbitmq.NewAdapter(acfg)
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
		_, err := f.Write(append(strconv.AppendInt(nil, int64(p.Seq), 10), '\n'))
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
	if err := json.NewEncoder(os.Stdout).Encode(bus.Stats()); err != nil {
		return fail("stats: %v", err)
	}
	if cerr != nil {
		return fail("close: %v", cerr)
	}
	return 0
}

// member is one consumer process.
type member struct {
	id      int
	cmd     *exec.Cmd
	outPath string
	errPath string
	stdout  bytes.Buffer
	done    chan struct{}
	waitErr error
	killed  bool
}

func startMember(t *testing.T, dir string, id int, env []string) *member {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := &member{
		id:      id,
		outPath: filepath.Join(dir, fmt.Sprintf("handled-%02d.txt", id)),
		errPath: filepath.Join(dir, fmt.Sprintf("stderr-%02d.txt", id)),
		done:    make(chan struct{}),
	}
	stderr, err := os.Create(m.errPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	m.cmd = exec.Command(exe, "-test.run=^$")
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

// ledger tails the members' handled files and counts handlings per event.
type ledger struct {
	counts   []int32
	distinct int
	total    int
	files    map[int]*tailed
}

type tailed struct {
	path  string
	off   int64
	rest  []byte
	lines int
}

func (l *ledger) poll() error {
	for _, f := range l.files {
		fh, err := os.Open(f.path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		_, err = fh.Seek(f.off, io.SeekStart)
		var b []byte
		if err == nil {
			b, err = io.ReadAll(fh)
		}
		fh.Close()
		if err != nil {
			return err
		}
		f.off += int64(len(b))
		b = append(f.rest, b...)
		end := bytes.LastIndexByte(b, '\n')
		if end < 0 {
			f.rest = b
			continue
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
	}
	return nil
}

// TestCrashConsumer emits 10,000 keyed events through the bus while two
// consumer processes (one group, concurrency 8 each) handle them; three
// times mid-stream the member that handled the most in its current life is
// killed with SIGKILL and started again. The broker requeues what a killed
// member had not acknowledged, so every event must be handled at least
// once; duplicates are reported.
func TestCrashConsumer(t *testing.T) {
	const (
		n        = 10000
		window   = 2000
		emitters = 4
		topic    = "crash"
		group    = "crash-group"
	)
	thresholds := []int{1500, 4000, 6500}
	url := brokerURL(t)
	start := time.Now()
	ctx := ctxT(t, 170*time.Second)
	dir := t.TempDir()
	env := []string{envURL + "=" + url, envTopic + "=" + topic, envGroup + "=" + group}

	a := newAdapter(t, testConfig(url))
	if err := a.DeclareGroup(ctx, topic, group); err != nil {
		t.Fatal(err)
	}
	led := &ledger{counts: make([]int32, n), files: map[int]*tailed{}}
	var members [2]*member
	var all []*member
	spawn := func(slot int) {
		m := startMember(t, dir, len(all), env)
		led.files[m.id] = &tailed{path: m.outPath}
		members[slot] = m
		all = append(all, m)
	}
	spawn(0)
	spawn(1)
	dump := func() {
		for _, m := range all {
			t.Logf("member %d (killed %v): handled %d; stderr:\n%s", m.id, m.killed, led.files[m.id].lines, m.stderrTail())
		}
	}

	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.DrainTimeout = 5 * time.Second
	bus, err := eventstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()

	var limit atomic.Int64
	limit.Store(window)
	ectx, stopEmitters := context.WithCancel(ctx)
	var next atomic.Int64
	emitErr := make(chan error, emitters)
	var ewg sync.WaitGroup
	for range emitters {
		ewg.Go(func() {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				s := next.Add(1) - 1
				if s >= n {
					return
				}
				for s >= limit.Load() {
					select {
					case <-tick.C:
					case <-ectx.Done():
						return
					}
				}
				p := seqPayload{Seq: int(s), Pad: "crash-test-payload"}
				if err := bus.Emit(ectx, topic, p, eventstream.WithKey("key-"+strconv.Itoa(int(s)%509))); err != nil {
					emitErr <- fmt.Errorf("emit %d: %w", s, err)
					return
				}
			}
		})
	}
	defer func() { stopEmitters(); ewg.Wait() }()

	kills := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !(kills == len(thresholds) && led.distinct == n) {
		select {
		case <-tick.C:
		case err := <-emitErr:
			dump()
			t.Fatalf("emitter: %v", err)
		case <-ctx.Done():
			dump()
			t.Fatalf("timed out: %d of %d handled (%d calls), %d kills", led.distinct, n, led.total, kills)
		}
		if err := led.poll(); err != nil {
			t.Fatal(err)
		}
		l := int64(led.distinct + window)
		if kills < len(thresholds) {
			l = min(l, n-1) // the last event waits for the last kill
		}
		limit.Store(l)
		for _, m := range members {
			if m.exited() {
				dump()
				t.Fatalf("member %d exited on its own: %v", m.id, m.waitErr)
			}
		}
		if kills < len(thresholds) && led.distinct >= thresholds[kills] {
			slot := 0
			if led.files[members[1].id].lines > led.files[members[0].id].lines {
				slot = 1
			}
			victim := members[slot]
			if led.files[victim.id].lines < 100 {
				continue
			}
			victim.killed = true
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-victim.done
			kills++
			t.Logf("%v: kill %d: SIGKILL member %d after it handled %d; %d distinct handled, %d emitted",
				time.Since(start).Round(time.Millisecond), kills, victim.id, led.files[victim.id].lines,
				led.distinct, min(next.Load(), n))
			spawn(slot)
		}
	}
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
	for s, c := range led.counts {
		if c == 0 {
			t.Fatalf("event %d never handled", s)
		}
	}
	maxCount := int32(0)
	for _, c := range led.counts {
		maxCount = max(maxCount, c)
	}
	t.Logf("crash test: %d events, %d kills, %d handler calls, %d duplicates (%.2f%%), max handled %d times, %v",
		n, kills, led.total, led.total-n, 100*float64(led.total-n)/n, maxCount, time.Since(start).Round(time.Millisecond))
	for _, m := range all {
		if strings.Contains(m.stderrTail(), "DATA RACE") {
			t.Errorf("member %d reported a data race", m.id)
		}
	}
}
