package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// connector keeps one AMQP connection open, redialing with backoff whenever
// it is lost. Users ask for the current connection with get; every
// successful dial starts a new generation.
type connector struct {
	name      string // "publish" or "consume", for logs and the connection name
	url       string
	amqpCfg   amqp.Config
	cfg       *Config
	log       *slog.Logger
	onConnect func(ctx context.Context, conn *amqp.Connection) error

	startOnce sync.Once
	done      chan struct{} // closed by close
	wg        sync.WaitGroup

	mu      sync.Mutex
	conn    *amqp.Connection // nil while disconnected
	gen     uint64
	ready   chan struct{} // closed once conn is set for the current generation
	failed  chan struct{} // closed (and replaced) after every failed dial
	lastErr error
	closed  bool
}

// newConnector returns a connector; with coalesce, the writes of its
// connections go through a coalescingConn.
func newConnector(name string, cfg *Config, uri amqp.URI, coalesce bool, onConnect func(context.Context, *amqp.Connection) error) *connector {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.ConnectionName + " (" + name + ")")
	dial := amqp.DefaultDial(cfg.DialTimeout)
	if coalesce {
		tcp := dial
		dial = func(network, addr string) (net.Conn, error) {
			c, err := tcp(network, addr)
			if err != nil {
				return nil, err
			}
			return newCoalescingConn(c), nil
		}
	}
	return &connector{
		name: name,
		url:  uri.String(),
		amqpCfg: amqp.Config{
			Vhost:           uri.Vhost,
			Heartbeat:       cfg.Heartbeat,
			TLSClientConfig: cfg.TLS,
			Properties:      props,
			Locale:          "en_US",
			Dial:            dial,
		},
		cfg:       cfg,
		log:       cfg.Logger,
		onConnect: onConnect,
		done:      make(chan struct{}),
		ready:     make(chan struct{}),
		failed:    make(chan struct{}),
	}
}

// errClosed is the error of every operation after Close.
var errClosed = fmt.Errorf("rabbitmq: %w", eventstream.ErrAdapterClosed)

// permanentDialError reports whether redialing cannot help without a
// configuration change.
func permanentDialError(err error) bool {
	if errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL) {
		return true
	}
	var ae *amqp.Error
	return errors.As(err, &ae) && (ae.Code == amqp.AccessRefused || ae.Code == amqp.NotAllowed)
}

// get returns the current connection and its generation, waiting (bounded by
// ctx) while the connector is (re)connecting.
func (c *connector) get(ctx context.Context) (*amqp.Connection, uint64, error) {
	c.startOnce.Do(func() {
		c.wg.Add(1)
		go c.loop()
	})
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, 0, errClosed
		}
		conn, gen, ready, failed, lastErr := c.conn, c.gen, c.ready, c.failed, c.lastErr
		c.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, gen, nil
		}
		if lastErr != nil && permanentDialError(lastErr) {
			return nil, 0, fmt.Errorf("rabbitmq: connect: %w", lastErr)
		}
		wait := ready
		if conn != nil {
			// Closed, but the loop has not noticed yet: poll briefly.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, 0, c.ctxErr(ctx, lastErr)
			case <-c.done:
				t.Stop()
				return nil, 0, errClosed
			case <-t.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, 0, c.ctxErr(ctx, lastErr)
		case <-c.done:
			return nil, 0, errClosed
		case <-wait:
		case <-failed:
		}
	}
}

func (c *connector) ctxErr(ctx context.Context, lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("rabbitmq: not connected (last error: %v): %w", lastErr, ctx.Err())
	}
	return fmt.Errorf("rabbitmq: not connected: %w", ctx.Err())
}

// loop dials, publishes the connection to get, and redials when it is lost.
func (c *connector) loop() {
	defer c.wg.Done()
	attempt := 0
	for {
		select {
		case <-c.done:
			return
		default:
		}
		conn, err := c.dial()
		if err != nil {
			c.mu.Lock()
			c.lastErr = err
			close(c.failed)
			c.failed = make(chan struct{})
			c.mu.Unlock()
			d := backoff(c.cfg, attempt)
			attempt++
			c.log.Warn("rabbitmq: connect failed", "connection", c.name, "error", err, "retry_in", d)
			if !c.sleep(d) {
				return
			}
			continue
		}
		closes := conn.NotifyClose(make(chan *amqp.Error, 1))
		c.mu.Lock()
		c.conn = conn
		c.gen++
		c.lastErr = nil
		close(c.ready)
		gen := c.gen
		c.mu.Unlock()
		if attempt > 0 || gen > 1 {
			c.log.Info("rabbitmq: connected", "connection", c.name, "generation", gen)
		}
		attempt = 0
		var cerr *amqp.Error
		select {
		case <-c.done:
			_ = conn.Close()
			return
		case cerr = <-closes:
		}
		c.mu.Lock()
		c.conn = nil
		c.ready = make(chan struct{})
		if cerr != nil {
			c.lastErr = cerr
		} else {
			c.lastErr = amqp.ErrClosed
		}
		c.mu.Unlock()
		c.log.Warn("rabbitmq: connection lost", "connection", c.name, "error", cerr)
		if !c.sleep(c.cfg.ReconnectMin) {
			return
		}
	}
}

func (c *connector) dial() (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(c.url, c.amqpCfg)
	if err != nil {
		return nil, err
	}
	if c.onConnect != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.OperationTimeout)
		err := c.onConnect(ctx, conn)
		cancel()
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("declare topology: %w", err)
		}
	}
	return conn, nil
}

// sleep waits d, returning false if the connector was closed meanwhile.
func (c *connector) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return false
	case <-t.C:
		return true
	}
}

// close closes the connection and stops redialing; it returns once the loop
// goroutine has exited.
func (c *connector) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.done)
	c.wg.Wait()
}

// backoff returns the wait before reconnect attempt n (0-based).
func backoff(cfg *Config, n int) time.Duration {
	d := cfg.ReconnectMin
	for i := 0; i < n && d < cfg.ReconnectMax; i++ {
		d *= 2
	}
	return min(d, cfg.ReconnectMax)
}
