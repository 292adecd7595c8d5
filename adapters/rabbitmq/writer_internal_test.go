package rabbitmq

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/internal/testutil"
)

// TestCoalescingConnWrites: concurrent writes reach the socket whole, each
// writer's in its order, and what is buffered when Close is called is
// written before the socket closes.
func TestCoalescingConnWrites(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		lines []string
		err   error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		var r result
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			r.lines = append(r.lines, sc.Text())
		}
		r.err = sc.Err()
		got <- r
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := newCoalescingConn(raw)
	const writers, per = 16, 500
	pad := strings.Repeat("x", 200)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				line := fmt.Sprintf("%d %d %s\n", w, i, pad)
				if n, err := cc.Write([]byte(line)); err != nil || n != len(line) {
					t.Errorf("Write = %d, %v; want %d, nil", n, err, len(line))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := cc.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := cc.Write([]byte("late\n")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	r := testutil.Recv(t, got, 10*time.Second, "the reader's lines")
	if r.err != nil {
		t.Fatalf("read: %v", r.err)
	}
	if len(r.lines) != writers*per {
		t.Fatalf("read %d lines, want %d", len(r.lines), writers*per)
	}
	next := make([]int, writers)
	for _, l := range r.lines {
		var w, i int
		var p string
		if _, err := fmt.Sscanf(l, "%d %d %s", &w, &i, &p); err != nil || w < 0 || w >= writers || p != pad {
			t.Fatalf("torn line %q (%v)", l, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: line %d after %d", w, i, next[w]-1)
		}
		next[w]++
	}
}

// stuckConn is a socket whose writes block until its write deadline is set,
// or fail with err.
type stuckConn struct {
	net.Conn
	err      error
	deadline chan struct{}
	once     sync.Once
	closed   atomic.Bool
}

func (s *stuckConn) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	<-s.deadline
	return 0, errors.New("i/o timeout")
}

func (s *stuckConn) SetWriteDeadline(time.Time) error {
	s.once.Do(func() { close(s.deadline) })
	return nil
}

func (s *stuckConn) Close() error { s.closed.Store(true); return nil }

// TestCoalescingConnBounded: while the socket accepts nothing, Write blocks
// once maxBuffered bytes wait, and Close releases it with an error instead
// of a hang.
func TestCoalescingConnBounded(t *testing.T) {
	cc := newCoalescingConn(&stuckConn{deadline: make(chan struct{})})
	chunk := make([]byte, 4096)
	blocked := make(chan error, 1)
	go func() {
		for {
			if _, err := cc.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
	}()
	testutil.Eventually(t, 10*time.Second, func() bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.buf) >= maxBuffered
	}, func() string { return "the buffer never filled" })
	select {
	case err := <-blocked:
		t.Fatalf("Write returned %v with the buffer full", err)
	default:
	}
	testutil.Within(t, 10*time.Second, "Close of a stuck connection", func() { _ = cc.Close() })
	if err := testutil.Recv(t, blocked, 10*time.Second, "the blocked Write"); err == nil {
		t.Fatal("blocked Write returned nil after Close")
	}
}

// TestCoalescingConnWriteError: a failed socket write closes the socket
// (so that the connection's reader fails and outstanding confirms with it)
// and fails every later Write with that error.
func TestCoalescingConnWriteError(t *testing.T) {
	boom := errors.New("boom")
	sc := &stuckConn{err: boom, deadline: make(chan struct{})}
	cc := newCoalescingConn(sc)
	defer cc.Close()
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, err := cc.Write([]byte("x"))
		return errors.Is(err, boom)
	}, func() string { return "Write never returned the socket's error" })
	if _, err := cc.Write([]byte("y")); !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want %v", err, boom)
	}
	if !sc.closed.Load() {
		t.Error("the socket is still open after its write failed")
	}
}
