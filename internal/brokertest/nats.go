package brokertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// NATS starts a private nats-server (the Debian package nats-server) with
// JetStream and a file store in its own directory, on a free loopback port,
// and returns once the server greets clients with JetStream enabled. It skips
// t when nats-server is not installed (fails it with RequireEnv set). With
// NATS_URL set it returns that server as External instead.
func NATS(t testing.TB) *Broker {
	t.Helper()
	if u := os.Getenv("NATS_URL"); u != "" {
		return &Broker{kind: "nats", addr: hostPort(u), url: u, external: true}
	}
	bin := findProgram("nats-server")
	if bin == "" {
		missing(t, "nats-server (Debian package nats-server)")
	}
	dir := newDir(t, "nats")
	port := freePorts(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	store := filepath.Join(dir, "jetstream")
	b := &Broker{
		kind:        "nats",
		addr:        addr,
		url:         "nats://" + addr,
		dir:         dir,
		logPath:     filepath.Join(dir, "broker.log"),
		deathSignal: syscall.SIGKILL,
		command: func() *exec.Cmd {
			return exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port),
				"-js", "-sd", store, "-n", "brokertest-"+strconv.Itoa(port))
		},
		// The server sends INFO only once it accepts clients, and it
		// enables JetStream (recovering the store) before that; PING/PONG
		// proves the connection works.
		ready: func() error {
			return probe(addr, []byte("CONNECT {\"verbose\":false}\r\nPING\r\n"), []byte(`"jetstream":true`), []byte("PONG"))
		},
	}
	b.launch(t)
	return b
}

// hostPort turns a URL such as nats://host:port or amqp://u:p@host:port/ into
// host:port (best effort; the URL itself is what clients should use).
func hostPort(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.LastIndex(u, "@"); i >= 0 {
		u = u[i+1:]
	}
	if i := strings.IndexAny(u, "/?,"); i >= 0 {
		u = u[:i]
	}
	return u
}
