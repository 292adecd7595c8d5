// Package brokertest starts private message brokers (Apache Kafka, RabbitMQ,
// Redis, NATS) for tests, on free loopback ports with their own data
// directories, and stops, kills and restarts them for fault tests.
//
//	b := brokertest.Redis(t)           // skips when redis-server is missing
//	client := redis.NewClient(&redis.Options{Addr: b.Addr()})
//	b.Kill(t)                          // SIGKILL, returns once it exited
//	b.Restart(t)                       // same port, same data dir, waits until ready
//
// Every starter waits on readiness (a protocol-level check, never a fixed
// sleep), bounded by a deadline, and fails the test with the tail of the
// broker's log when the broker does not come up. When the broker software is
// not installed the test is skipped with a message naming the one command
// that installs it (scripts/install-brokers, also `make brokers`); with
// EVENTSTREAM_REQUIRE_BROKERS=1 in the environment the skip becomes a
// failure. When the broker's address is given in the environment
// (KAFKA_BROKERS, RABBITMQ_URL, REDIS_ADDR, NATS_URL) that broker is used
// instead and no process is started; fault methods then skip.
//
// Brokers are operating-system processes in their own process group: Kill
// kills the whole group, and a broker whose test binary dies is killed with
// it (Linux parent-death signal). A running broker process costs no
// goroutines in the test process, so goleak checks are unaffected
// (NATSEmbedded, which runs the NATS server in the test process, is the
// exception).
//
// Starting a broker takes from milliseconds (Redis, NATS) to seconds
// (RabbitMQ, Kafka). Tests of one package should share a broker through a
// [Shared] closed in TestMain and use unique topic, queue and group names;
// fault tests start their own.
package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv names the variable that turns "broker software missing" skips
// into failures. Any value strconv.ParseBool accepts as true enables it.
const RequireEnv = "EVENTSTREAM_REQUIRE_BROKERS"

// InstallCommand is the command that installs every broker this package
// starts, named by its skip messages.
const InstallCommand = "scripts/install-brokers (or: make brokers)"

const (
	// startTimeout bounds the wait for a broker to become ready.
	startTimeout = 120 * time.Second
	// stopTimeout bounds a graceful stop before the process group is killed.
	stopTimeout = 60 * time.Second
	// pollInterval is how often readiness and exit are checked.
	pollInterval = 50 * time.Millisecond
)

// Broker is one private broker process, or an external broker named by the
// environment. Its methods are safe for concurrent use.
type Broker struct {
	kind     string // "redis", "nats", "rabbitmq", "kafka"
	version  string // Kafka release
	addr     string
	saslAddr string
	url      string
	external bool
	dir      string // data and config directory of a private broker
	logPath  string

	// command builds the process for a (re)start; ready reports nil once
	// the broker serves requests. Both are nil for external brokers.
	command func() *exec.Cmd
	ready   func() error
	// deathSignal is sent to the process when the test binary dies.
	deathSignal syscall.Signal
	// inProc replaces command for a broker that runs inside the test
	// process (NATSEmbedded).
	inProc inProcess
	// tool runs a Kafka Java tool class with the broker's jars.
	tool func(ctx context.Context, class string, args ...string) *exec.Cmd
	// ctl runs the broker's control tool (RabbitMQ's rabbitmqctl).
	ctl func(ctx context.Context, args ...string) *exec.Cmd

	mu      sync.Mutex
	cmd     *exec.Cmd // nil when not running
	logFile *os.File

	// StartTime is how long the last (re)start took until ready.
	startTime time.Duration
}

// Addr returns the broker's "127.0.0.1:port" address (Kafka: its bootstrap
// address; for an external Kafka the KAFKA_BROKERS value, possibly a
// comma-separated list).
func (b *Broker) Addr() string { return b.addr }

// URL returns the client URL: amqp://guest:guest@127.0.0.1:port/ (RabbitMQ),
// redis://127.0.0.1:port/0 (Redis), nats://127.0.0.1:port (NATS), and the
// same as Addr for Kafka. For an external broker it is the environment's
// value.
func (b *Broker) URL() string { return b.url }

// External reports whether the broker came from the environment rather than
// a process this package started.
func (b *Broker) External() bool { return b.external }

// Dir returns the private broker's data and configuration directory ("" for
// an external broker). It survives Stop, Kill and Restart.
func (b *Broker) Dir() string { return b.dir }

// StartTime returns how long the last start or Restart took from launching
// the process until the broker was ready (0 for an external broker).
func (b *Broker) StartTime() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.startTime
}

// Pid returns the process id of the running private broker (the group
// leader: for RabbitMQ its start script), or 0.
func (b *Broker) Pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Version returns the release of a private Kafka broker (e.g. "4.4.0"), or
// "" for other brokers.
func (b *Broker) Version() string { return b.version }

// Running reports whether the private broker process is running.
func (b *Broker) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inProc != nil {
		return b.inProc.running()
	}
	return b.cmd != nil
}

// inProcess is a broker running in the test process.
type inProcess interface {
	start() error // starts and waits until ready
	stop()        // stops and waits until stopped; no-op when stopped
	running() bool
}

// Log returns the broker's output so far, across restarts ("" for an
// external broker).
func (b *Broker) Log() string {
	if b.logPath == "" {
		return ""
	}
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", b.logPath, err)
	}
	return string(data)
}

// Stop stops the broker gracefully (SIGTERM) and returns once its process
// group has exited; a broker that does not exit within a minute is killed
// and t fails. Stopping a stopped broker does nothing. Stop skips t for an
// external broker.
func (b *Broker) Stop(t testing.TB) {
	t.Helper()
	b.skipExternal(t, "Stop")
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.stopLocked(syscall.SIGTERM, stopTimeout); err != nil {
		t.Fatalf("brokertest: stopping %s: %v\n%s", b.kind, err, b.logTail())
	}
}

// Kill kills the broker's process group with SIGKILL and returns once it has
// exited. Killing a stopped broker does nothing. Kill skips t for an
// external broker.
func (b *Broker) Kill(t testing.TB) {
	t.Helper()
	b.skipExternal(t, "Kill")
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.stopLocked(syscall.SIGKILL, stopTimeout); err != nil {
		t.Fatalf("brokertest: killing %s: %v", b.kind, err)
	}
}

// Restart starts the broker again on the same ports and data directory and
// returns once it is ready; a running broker is stopped gracefully first.
// Restart skips t for an external broker and fails it, with the broker's
// log, when the broker does not come up.
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	b.skipExternal(t, "Restart")
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.stopLocked(syscall.SIGTERM, stopTimeout); err != nil {
		t.Fatalf("brokertest: stopping %s before restart: %v\n%s", b.kind, err, b.logTail())
	}
	if err := b.startLocked(); err != nil {
		t.Fatalf("brokertest: restarting %s: %v\n%s", b.kind, err, b.logTail())
	}
}

func (b *Broker) skipExternal(t testing.TB, what string) {
	t.Helper()
	if b.external {
		t.Skipf("brokertest: %s needs a private %s broker; this one is external (%s)", what, b.kind, b.url)
	}
}

// launch starts a private broker, registers its cleanup on t and waits until
// it is ready; it fails t with the log when it is not.
func (b *Broker) launch(t testing.TB) {
	t.Helper()
	t.Cleanup(b.cleanup)
	b.mu.Lock()
	err := b.startLocked()
	b.mu.Unlock()
	if err != nil {
		t.Fatalf("brokertest: starting %s: %v\n%s", b.kind, err, b.logTail())
	}
	t.Logf("brokertest: %s on %s ready after %v (dir %s)", b.kind, b.addr, b.StartTime().Round(time.Millisecond), b.dir)
}

// cleanup kills the broker and removes its directory.
func (b *Broker) cleanup() {
	b.mu.Lock()
	_ = b.stopLocked(syscall.SIGKILL, stopTimeout)
	if b.logFile != nil {
		_ = b.logFile.Close()
		b.logFile = nil
	}
	b.mu.Unlock()
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// startLocked starts the process and waits until ready or failed.
func (b *Broker) startLocked() error {
	if b.inProc != nil {
		begin := time.Now()
		if err := b.inProc.start(); err != nil {
			return err
		}
		b.startTime = time.Since(begin)
		return nil
	}
	if b.cmd != nil {
		return errors.New("already running")
	}
	if b.logFile == nil && b.logPath != "" {
		f, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		b.logFile = f
	}
	fmt.Fprintf(b.logFile, "\n=== brokertest: starting %s at %s ===\n", b.kind, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := b.command()
	// Files, not pipes: os/exec then starts no copying goroutines.
	cmd.Stdout = b.logFile
	cmd.Stderr = b.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: b.deathSignal}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	b.cmd = cmd
	var lastErr error
	var exitStatus string
	ok := waitFor(startTimeout, func() bool {
		exited, status := b.reap()
		if exited {
			exitStatus = status
			return true
		}
		lastErr = b.ready()
		return lastErr == nil
	})
	switch {
	case exitStatus != "":
		b.waitGroupGone(5 * time.Second)
		b.cmd = nil
		return fmt.Errorf("process exited before it was ready (%s); last readiness error: %v", exitStatus, lastErr)
	case !ok:
		_ = b.stopLocked(syscall.SIGKILL, stopTimeout)
		return fmt.Errorf("not ready after %v: %v", startTimeout, lastErr)
	}
	b.startTime = time.Since(begin)
	return nil
}

// waitFor calls cond every pollInterval until it returns true (then waitFor
// returns true) or timeout passes (false).
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// stopLocked signals the process group and waits until the leader is reaped
// and no member is left; after timeout it kills the group.
func (b *Broker) stopLocked(sig syscall.Signal, timeout time.Duration) error {
	if b.inProc != nil {
		b.inProc.stop()
		return nil
	}
	if b.cmd == nil {
		return nil
	}
	pid := b.cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	if sig != syscall.SIGKILL {
		// Some brokers (the RabbitMQ start script) handle the signal in the
		// group leader only; the rest of the group follows it.
		_ = syscall.Kill(pid, sig)
	}
	var err error
	if !b.waitExit(timeout) {
		err = fmt.Errorf("still running %v after %v; killed", timeout, sig)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		if !b.waitExit(10 * time.Second) {
			return fmt.Errorf("process group %d survives SIGKILL", pid)
		}
	}
	_ = b.cmd.Process.Release()
	b.cmd = nil
	return err
}

// waitExit waits until the leader has been reaped and the group is empty.
func (b *Broker) waitExit(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	if !waitFor(timeout, func() bool { exited, _ := b.reap(); return exited }) {
		return false
	}
	return b.waitGroupGone(time.Until(deadline))
}

// reap reaps the group leader without blocking.
func (b *Broker) reap() (exited bool, status string) {
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(b.cmd.Process.Pid, &ws, syscall.WNOHANG, nil)
	switch {
	case errors.Is(err, syscall.ECHILD):
		return true, "already reaped"
	case err != nil:
		return false, ""
	case pid == 0:
		return false, ""
	}
	if ws.Signaled() {
		return true, "signal " + ws.Signal().String()
	}
	return true, "exit status " + strconv.Itoa(ws.ExitStatus())
}

// waitGroupGone waits until no process of the broker's group is left.
func (b *Broker) waitGroupGone(timeout time.Duration) bool {
	pgid := b.cmd.Process.Pid
	return waitFor(timeout, func() bool {
		return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
	})
}

// logTail returns the end of the log for failure messages.
func (b *Broker) logTail() string {
	const max = 8 << 10
	l := b.Log()
	if len(l) > max {
		l = "...\n" + l[len(l)-max:]
	}
	return "--- " + b.kind + " log (" + b.logPath + ") ---\n" + l
}

// requireBrokers reports whether missing broker software is a failure.
func requireBrokers() bool {
	v, err := strconv.ParseBool(os.Getenv(RequireEnv))
	return err == nil && v
}

// missing skips t (or fails it when RequireEnv is set) because software is
// not installed.
func missing(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("brokertest: %s is not installed; install it with %s", what, InstallCommand)
	if requireBrokers() {
		t.Fatalf("%s (%s is set, so this is a failure)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// findProgram looks a program up in the given absolute candidates first and
// then in PATH (plus the sbin directories, which a non-root PATH may lack).
func findProgram(name string, candidates ...string) string {
	for _, c := range candidates {
		if isExecutable(c) {
			return c
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin"} {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// newDir creates a private directory that outlives the test that created it
// (a Shared broker outlives its first test); cleanup removes it.
func newDir(t testing.TB, kind string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "brokertest-"+kind+"-")
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	return dir
}

// freePorts returns n distinct free loopback TCP ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("brokertest: finding a free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// dialTimeout bounds one readiness probe.
const dialTimeout = 2 * time.Second

// probe dials addr, writes req (if any) and reads until the reply contains
// every one of wants or the probe's deadline passes.
func probe(addr string, req []byte, wants ...[]byte) error {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	if len(req) > 0 {
		if _, err := c.Write(req); err != nil {
			return err
		}
	}
	var got []byte
	buf := make([]byte, 4096)
	for !containsAll(got, wants) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return fmt.Errorf("reply %q: %w", truncate(got), err)
		}
	}
	return nil
}

func containsAll(b []byte, wants [][]byte) bool {
	for _, w := range wants {
		if !bytes.Contains(b, w) {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.TrimSpace(s)
}

// writeFile writes a config file or fails t.
func writeFile(t testing.TB, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatalf("brokertest: %v", err)
	}
}
