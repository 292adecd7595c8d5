package rabbitmq

import (
	"net"
	"sync"
	"time"
)

// maxBuffered is how many bytes a coalescingConn holds before Write blocks
// for the flusher: enough for hundreds of small publishes, and a bound on
// the memory a stalled broker connection keeps.
const maxBuffered = 256 << 10

// coalescingConn is the socket of the publishing connection. amqp091-go
// writes every publish (method, header and body frames) with a write system
// call of its own while holding its connection's write lock, so 64
// concurrent publishers cost 64 system calls and the broker 64 socket reads.
// coalescingConn's Write only appends to a buffer and returns; one flusher
// goroutine writes everything appended meanwhile with one system call. That
// halves the client CPU per pipelined publish and hands the broker fewer,
// larger reads.
//
// A Write that returned nil has not necessarily reached the socket; an
// error of the socket is returned by every later Write and ends the AMQP
// connection. That weakens nothing: a publish succeeds only once its
// publisher confirm is read, and a connection that fails before it loses the
// confirm, so the publish is retried.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond // signalled when buf gains data or drains, and on close or a write error
	buf     []byte     // appended by Write, taken by flush
	err     error      // sticky: the socket's write error
	closing bool       // Close was called: Write fails, flush drains buf and stops
	done    chan struct{}
	once    sync.Once
}

// closeFlushTimeout bounds how long Close waits for the buffered bytes (the
// AMQP connection.close or close-ok, typically) to reach the socket.
const closeFlushTimeout = time.Second

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c, done: make(chan struct{})}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.flush()
	return cc
}

// Write appends p to the buffer for the flusher (waiting while the buffer
// holds maxBuffered bytes) and returns len(p); after a write error it
// returns that error, after Close net.ErrClosed.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closing && len(c.buf) >= maxBuffered {
		c.cond.Wait()
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.closing {
		return 0, net.ErrClosed
	}
	if len(c.buf) == 0 {
		c.cond.Broadcast()
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// flush writes the buffer to the socket until a write fails, or Close was
// called and the buffer is empty.
func (c *coalescingConn) flush() {
	defer close(c.done)
	var spare []byte
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for c.err == nil && !c.closing && len(c.buf) == 0 {
			c.cond.Wait()
		}
		if c.err != nil || len(c.buf) == 0 {
			return
		}
		out := c.buf
		c.buf = spare[:0]
		c.cond.Broadcast() // room for blocked writers
		c.mu.Unlock()
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		if cap(out) <= 2*maxBuffered { // keep one buffer, not an oversized one
			spare = out
		}
		if err != nil {
			c.err = err
			c.buf = nil
			c.cond.Broadcast()
			// Frames were lost: close the socket so that the connection's
			// reader fails at once and every outstanding confirm fails with
			// it, instead of waiting for the next write or a heartbeat.
			_ = c.Conn.Close()
			return
		}
	}
}

// Close fails later writes, gives what is buffered up to closeFlushTimeout
// to reach the socket, closes the socket and returns once the flusher has
// stopped.
func (c *coalescingConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.cond.Broadcast()
		c.mu.Unlock()
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		<-c.done
	})
	return c.Conn.Close()
}
