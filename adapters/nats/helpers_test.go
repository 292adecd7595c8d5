package nats_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/nats"
	"github.com/eventstream-go/eventstream/adapters/nats/natstest"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	"github.com/eventstream-go/eventstream/internal/crashtest"
)

// roleEnv selects what the test binary does when a test of this package
// starts it as a helper process.
const roleEnv = "EVENTSTREAM_NATS_TEST_ROLE"

func TestMain(m *testing.M) {
	if crashtest.IsConsumer() {
		os.Exit(crashtest.Consume(newCrashAdapter))
	}
	switch role := os.Getenv(roleEnv); role {
	case "":
	case "embedded-server":
		os.Exit(runEmbeddedServer())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
		os.Exit(2)
	}
	// Like goleak.VerifyTestMain, but the shared server process is stopped
	// (and its pipe readers return) before the check.
	code := m.Run()
	stopShared()
	brokers.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runEmbeddedServer is the helper process that runs an embedded server
// (natstest) outside the test process, so that the server's own goroutines
// do not show in the goroutine-leak checks. It prints the URL and runs
// until its stdin is closed (the test process exited or killed it).
func runEmbeddedServer() int {
	srv, err := natstest.Start(natstest.Options{StoreDir: os.Getenv("EVENTSTREAM_NATS_TEST_STORE")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()
	fmt.Println(srv.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// serverProcess is an embedded server running in a helper process.
type serverProcess struct {
	url  string
	cmd  *exec.Cmd
	in   io.WriteCloser
	done chan struct{}
}

func startServerProcess() (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nats-adapter-test-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=embedded-server", "EVENTSTREAM_NATS_TEST_STORE="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serverProcess{cmd: cmd, in: in, done: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
		close(p.done)
	}()
	select {
	case url, ok := <-lines:
		if !ok || !strings.HasPrefix(url, "nats://") {
			p.stop()
			return nil, fmt.Errorf("embedded server process did not start (first line %q)", url)
		}
		p.url = url
		return p, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("embedded server process did not start within 30s")
	}
}

func (p *serverProcess) stop() {
	_ = p.in.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// The embedded server in a helper process shared by the tests of this
// binary; fault tests start their own servers.
var shared struct {
	once sync.Once
	p    *serverProcess
	err  error
}

func sharedURL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.p, shared.err = startServerProcess() })
	if shared.err != nil {
		t.Fatalf("embedded server: %v", shared.err)
	}
	return shared.p.url
}

func stopShared() {
	if shared.p != nil {
		shared.p.stop()
	}
}

// testLogger is quiet unless NATS_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("NATS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is a Config with short timeouts for tests.
func testConfig(url string) nats.Config {
	return nats.Config{
		URL:            url,
		ReconnectWait:  100 * time.Millisecond,
		AckWait:        5 * time.Second,
		PullExpiry:     2 * time.Second,
		PublishTimeout: 2 * time.Second,
		RequestTimeout: 2 * time.Second,
		Logger:         testLogger(),
	}
}

func newAdapter(t testing.TB, cfg nats.Config) *nats.Adapter {
	t.Helper()
	a, err := nats.NewAdapter(cfg)
	if err != nil {
		t.Fatalf("NewAdapter: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func subscribe(t testing.TB, a *nats.Adapter, topic, group string) (<-chan eventstream.Message, func()) {
	t.Helper()
	ch, cancel, err := a.Subscribe(context.Background(), topic, group)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q): %v", topic, group, err)
	}
	t.Cleanup(cancel)
	return ch, cancel
}

func publish(t testing.TB, a *nats.Adapter, topic, key, value string) {
	t.Helper()
	r := eventstream.Record{Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.PublishRecord(ctx, topic, r); err != nil {
		t.Fatalf("PublishRecord(%q, %q): %v", topic, value, err)
	}
}

const timeout = 10 * time.Second

func recv(t testing.TB, ch <-chan eventstream.Message) *nats.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed unexpectedly")
		}
		return m.(*nats.Message)
	case <-time.After(timeout):
		t.Fatalf("no message within %v", timeout)
		return nil
	}
}

func ack(t testing.TB, a *nats.Adapter, group string, m eventstream.Message) {
	t.Helper()
	if err := a.Ack(context.Background(), group, m); err != nil {
		t.Fatalf("Ack(%q): %v", m.Value(), err)
	}
}

// waitFor polls cond every 10ms until it holds, failing t after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// brokers holds the nats-server (Debian binary) shared by the tests of this
// binary; fault tests start their own.
var brokers brokertest.Shared

// eachServer runs test as a subtest against the embedded server and against
// the nats-server binary.
func eachServer(t *testing.T, test func(t *testing.T, url string)) {
	for _, s := range []struct {
		name string
		url  func(testing.TB) string
	}{{"embedded", sharedURL}, {"nats-server", systemServer}} {
		t.Run(s.name, func(t *testing.T) { test(t, s.url(t)) })
	}
}

// eachOwnServer runs test as a subtest against a private embedded server and
// a private nats-server process, each of which down stops and up starts
// again on the same port and store; with sigkill also against a nats-server
// process that down kills with SIGKILL.
func eachOwnServer(t *testing.T, sigkill bool, test func(t *testing.T, url string, down, up func())) {
	t.Run("embedded", func(t *testing.T) {
		srv := natstest.NewServer(t, natstest.Options{})
		test(t, srv.URL(), srv.Stop, func() {
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("nats-server", func(t *testing.T) {
		b := brokertest.NATS(t)
		test(t, b.URL(), func() { b.Stop(t) }, func() { b.Restart(t) })
	})
	if sigkill {
		t.Run("nats-server-SIGKILL", func(t *testing.T) {
			b := brokertest.NATS(t)
			test(t, b.URL(), func() { b.Kill(t) }, func() { b.Restart(t) })
		})
	}
}

// systemServer returns the URL of the shared nats-server process (or of
// NATS_URL), skipping t when nats-server is not installed.
func systemServer(t testing.TB) string {
	t.Helper()
	return brokers.Get(t, "nats", brokertest.NATS).URL()
}
