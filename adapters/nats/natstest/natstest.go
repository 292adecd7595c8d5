// Package natstest runs an embedded NATS server with JetStream
// (github.com/nats-io/nats-server/v2, in-process) for tests of code that uses
// the eventstream NATS adapter.
//
//	srv := natstest.NewServer(t, natstest.Options{})
//	a, err := nats.NewAdapter(nats.Config{URL: srv.URL()})
//
// The server listens on a free loopback port and keeps its JetStream store
// (file storage) in a temporary directory. Restart stops it and starts it
// again on the same port and store, so a test can check what survives a
// server restart. Importing this package links the NATS server; the
// adapter package itself does not.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure a Server. The zero Options are valid.
type Options struct {
	// StoreDir is the JetStream store directory. Empty means a new
	// temporary directory, removed by Close (NewServer uses tb.TempDir).
	StoreDir string
	// Port is the client port. 0 means a free port chosen at the first
	// start; restarts keep the port either way.
	Port int
	// MaxPayload is the server's maximum message size (max_payload),
	// headers included. 0 means the NATS default of 1 MiB.
	MaxPayload int32
	// ReadyTimeout bounds waiting for the server to accept connections.
	// Default 10s.
	ReadyTimeout time.Duration
	// Logs, when true, makes the server log to stderr.
	Logs bool
}

// Server is an embedded NATS server with JetStream. Its methods are safe for
// concurrent use.
type Server struct {
	opts    Options
	ownDir  bool
	mu      sync.Mutex
	srv     *server.Server
	port    int
	stopped bool
	closed  bool
}

// Start starts a server. The caller must Close it.
func Start(o Options) (*Server, error) {
	s := &Server{opts: o, port: o.Port}
	if s.opts.ReadyTimeout <= 0 {
		s.opts.ReadyTimeout = 10 * time.Second
	}
	if s.opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "natstest-")
		if err != nil {
			return nil, fmt.Errorf("natstest: %w", err)
		}
		s.opts.StoreDir, s.ownDir = dir, true
	}
	if err := s.start(); err != nil {
		if s.ownDir {
			_ = os.RemoveAll(s.opts.StoreDir)
		}
		return nil, err
	}
	return s, nil
}

// NewServer starts a server with its store in tb.TempDir() (unless
// o.StoreDir is set), fails tb when that is impossible, and closes the
// server in tb.Cleanup.
func NewServer(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.StoreDir == "" {
		o.StoreDir = tb.TempDir()
	}
	s, err := Start(o)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// URL returns the client URL, "nats://127.0.0.1:<port>".
func (s *Server) URL() string { return "nats://" + s.Addr() }

// Addr returns the client address, "127.0.0.1:<port>".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Server returns the running server instance (a new one after every
// Restart), or nil while the server is stopped.
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	return s.srv
}

// Stop shuts the server down gracefully, keeping its store, and returns
// once it has stopped. Clients see a disconnection. It does nothing when
// the server is stopped already.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.stopped || s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.stopped = true
}

// Restart stops the server if it runs and starts it again on the same port
// with the same store; it returns once the new server accepts connections.
func (s *Server) Restart() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("natstest: Restart after Close")
	}
	s.stopLocked()
	s.mu.Unlock()
	return s.start()
}

// Close stops the server and removes the store directory if Start created
// it. It is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if !s.closed && s.ownDir {
		_ = os.RemoveAll(s.opts.StoreDir)
	}
	s.closed = true
}

func (s *Server) start() error {
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	if port == 0 {
		port = -1 // random
	}
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   s.opts.StoreDir,
		MaxPayload: s.opts.MaxPayload,
		NoLog:      !s.opts.Logs,
		NoSigs:     true,
		// No HTTP monitoring, cluster or leaf listeners.
	}
	var srv *server.Server
	var err error
	// The port of a server that just stopped may still be in use for a
	// moment; retry binding it for a while.
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	for {
		srv, err = server.NewServer(opts)
		if err != nil {
			return fmt.Errorf("natstest: %w", err)
		}
		if s.opts.Logs {
			srv.ConfigureLogger()
		}
		srv.Start()
		if srv.ReadyForConnections(s.opts.ReadyTimeout) {
			break
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if time.Now().After(deadline) {
			return fmt.Errorf("natstest: server on port %d not ready within %v", port, s.opts.ReadyTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv = srv
	s.stopped = false
	if tcp, ok := srv.Addr().(*net.TCPAddr); ok {
		s.port = tcp.Port
	}
	return nil
}
