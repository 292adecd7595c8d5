package redis_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// requireEnv turns "redis-server missing" skips into failures.
const requireEnv = "EVENTSTREAM_REQUIRE_BROKERS"

const installHint = "redis-server not found; install it with scripts/install-brokers (Debian: apt-get install redis-server)"

// broker is a private redis-server process on a free loopback port, or the
// server named by REDIS_ADDR.
type broker struct {
	addr     string
	external bool
	aof      bool
	dir      string
	cmd      *exec.Cmd
	done     chan struct{}
}

func skipOrFail(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// startBroker starts a redis-server (AOF with appendfsync always when aof
// is set). Unless shared, t.Cleanup stops it. It returns nil and the reason
// when it cannot.
func startBroker(t testing.TB, aof, shared bool) (*broker, string) {
	t.Helper()
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		return &broker{addr: addr, external: true}, ""
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, installHint
	}
	dir, err := os.MkdirTemp("", "es-redis-")
	if err != nil {
		return nil, err.Error()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err.Error()
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	b := &broker{addr: "127.0.0.1:" + strconv.Itoa(port), aof: aof, dir: dir}
	if err := b.launch(); err != nil {
		return nil, err.Error()
	}
	if !shared {
		t.Cleanup(b.stop)
	}
	return b, ""
}

func (b *broker) launch() error {
	_, port, _ := net.SplitHostPort(b.addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", b.dir, "--save", "", "--daemonize", "no",
		"--logfile", filepath.Join(b.dir, "redis.log")}
	if b.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	b.cmd = exec.Command("redis-server", args...)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		return err
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(b.cmd, b.done)
	c := goredis.NewClient(&goredis.Options{Addr: b.addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-b.done:
			log, _ := os.ReadFile(filepath.Join(b.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %s", log)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			b.stop()
			return fmt.Errorf("redis-server not ready: %v", err)
		}
	}
}

// stop terminates the server and removes its directory.
func (b *broker) stop() {
	if b.external || b.cmd == nil {
		return
	}
	b.signal(syscall.SIGTERM)
	_ = os.RemoveAll(b.dir)
}

func (b *broker) signal(sig syscall.Signal) {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(sig)
	<-b.done
}

// kill SIGKILLs the server and waits until it exited.
func (b *broker) kill(t testing.TB) {
	t.Helper()
	if b.external {
		t.Skip("REDIS_ADDR names an external server; cannot kill it")
	}
	b.signal(syscall.SIGKILL)
}

// restart starts the server again on the same port and directory.
func (b *broker) restart(t testing.TB) {
	t.Helper()
	if b.external {
		t.Skip("REDIS_ADDR names an external server; cannot restart it")
	}
	if err := b.launch(); err != nil {
		t.Fatal(err)
	}
}

// newBroker starts a private broker for one test.
func newBroker(t testing.TB, aof bool) *broker {
	t.Helper()
	b, msg := startBroker(t, aof, false)
	if b == nil {
		skipOrFail(t, msg)
	}
	if b.external && aof {
		t.Skip("REDIS_ADDR names an external server; this test needs its own")
	}
	return b
}
