package brokertest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSEmbedded starts a NATS server with JetStream inside the test process
// (github.com/nats-io/nats-server/v2, the version in go.mod, newer than the
// Debian package NATS starts) on a free loopback port with a file store in
// its own directory, and returns once it accepts connections. It needs no
// installed software, so it never skips. Stop and Kill shut the server
// down (an in-process server cannot be SIGKILLed: crash tests should use
// NATS), Restart starts a new server on the same port and store. A running
// embedded server has goroutines: stop it (t.Cleanup does) before a goleak
// check. With NATS_URL set it returns that server as External instead.
func NATSEmbedded(t testing.TB) *Broker {
	t.Helper()
	if u := os.Getenv("NATS_URL"); u != "" {
		return &Broker{kind: "nats", addr: hostPort(u), url: u, external: true}
	}
	dir := newDir(t, "nats-embedded")
	port := freePorts(t, 1)[0]
	addr := "127.0.0.1:" + strconv.Itoa(port)
	e := &embeddedNATS{opts: server.Options{
		ServerName: "brokertest-" + strconv.Itoa(port),
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		NoSigs:     true,
		NoLog:      true,
	}}
	b := &Broker{kind: "nats-embedded", addr: addr, url: "nats://" + addr, dir: dir, inProc: e}
	b.launch(t)
	return b
}

type embeddedNATS struct {
	opts server.Options
	srv  *server.Server
}

func (e *embeddedNATS) start() error {
	if e.srv != nil {
		return errors.New("already running")
	}
	opts := e.opts // NewServer keeps and changes its options
	s, err := server.NewServer(&opts)
	if err != nil {
		return err
	}
	s.Start()
	if !s.ReadyForConnections(startTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return errors.New("embedded NATS server not ready for connections")
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return errors.New("embedded NATS server started without JetStream")
	}
	e.srv = s
	return nil
}

func (e *embeddedNATS) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = nil
}

func (e *embeddedNATS) running() bool { return e.srv != nil }
