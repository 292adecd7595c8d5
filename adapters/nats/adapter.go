package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Adapter is an eventstream.MQAdapter backed by NATS JetStream. It also
// implements eventstream.RecordPublisher, and the messages it delivers
// implement eventstream.HeaderCarrier.
//
// All methods are safe for concurrent use. Create one with NewAdapter and
// release it with Close.
type Adapter struct {
	cfg Config
	log *slog.Logger
	nc  *natsgo.Conn
	js  jetstream.JetStream
	pub atomic.Pointer[publisher] // set once connected

	closing  chan struct{} // closed at the start of Close
	connGone chan struct{} // closed by Close just before the connection closes
	once     sync.Once

	mu     sync.RWMutex // guards closed; held shared while starting work
	closed bool
	work   sync.WaitGroup // Publish calls in progress

	topics sync.Map // topic -> *topicInfo

	smu  sync.Mutex
	subs map[*subscription]struct{}
}

var (
	_ eventstream.MQAdapter       = (*Adapter)(nil)
	_ eventstream.RecordPublisher = (*Adapter)(nil)
)

// NewAdapter validates cfg and connects to the server. Invalid configuration
// is reported with an error wrapping eventstream.ErrInvalidConfig; a server
// that cannot be reached (or refuses the credentials) with the connection
// error. Once connected, the adapter reconnects forever after connection
// losses.
func NewAdapter(cfg Config) (*Adapter, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Adapter{
		cfg:      c,
		log:      c.Logger,
		closing:  make(chan struct{}),
		connGone: make(chan struct{}),
		subs:     make(map[*subscription]struct{}),
	}
	opts := []natsgo.Option{
		natsgo.Name(c.Name),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(c.ReconnectWait),
		natsgo.ReconnectBufSize(c.ReconnectBufSize),
		natsgo.Timeout(c.ConnectTimeout),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			a.log.Warn("nats: disconnected", "err", err)
			if p := a.pub.Load(); p != nil {
				p.disconnected()
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			a.log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
			if p := a.pub.Load(); p != nil {
				p.reconnected()
			}
			a.smu.Lock()
			for s := range a.subs {
				s.reconnected()
			}
			a.smu.Unlock()
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			a.log.Warn("nats: asynchronous error", "subject", subj, "err", err)
		}),
	}
	switch {
	case c.User != "":
		opts = append(opts, natsgo.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, natsgo.Token(c.Token))
	case c.CredentialsFile != "":
		opts = append(opts, natsgo.UserCredentials(c.CredentialsFile))
	case c.NKeySeedFile != "":
		o, err := natsgo.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, invalid("NKeySeedFile: %v", err)
		}
		opts = append(opts, o)
	}
	if c.TLS != nil {
		opts = append(opts, natsgo.Secure(c.TLS.Clone()))
	}
	opts = append(opts, c.ConnOptions...)
	nc, err := natsgo.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", c.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(c.RequestTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	pub, err := newPublisher(nc, c.MaxPendingPublishes, c.PublishTimeout)
	if err != nil {
		nc.Close()
		return nil, err
	}
	a.nc, a.js = nc, js
	a.pub.Store(pub)
	return a, nil
}

// MessagingSystem returns "nats", the OpenTelemetry messaging.system value
// of this adapter.
func (a *Adapter) MessagingSystem() string { return "nats" }

// BareEnvelope reports true unless Config.EnvelopeHeaders is set (see
// eventstream.BareEnvelope): the bus then publishes its structured events as
// the CloudEvents NATS binding maps them, the JSON envelope as the payload
// with no headers (nor es-time: a receiver's Timestamp is the server's
// store time, the event's own time is in the envelope), so that consumers,
// this adapter's and plain nats.go alike, skip header parsing, which costs
// nats.go more than the rest of a message. Keyed events keep es-key, and
// events with headers or trace context carry those as headers.
func (a *Adapter) BareEnvelope() bool { return !a.cfg.EnvelopeHeaders }

// Conn returns the adapter's connection, for status checks and for reading
// or writing subjects directly. Closing it breaks the adapter.
func (a *Adapter) Conn() *natsgo.Conn { return a.nc }

// StreamName returns the name of the JetStream stream that holds topic:
// Config.StreamPrefix followed by the escaped topic (letters, digits and
// '-' stay, every other byte becomes '_' and two hex digits).
func (a *Adapter) StreamName(topic string) string { return a.topic(topic).stream }

// Subject returns the subject topic's messages are published to:
// Config.SubjectPrefix, '.', and the escaped topic as one token. A plain
// NATS client that publishes to this subject with JetStream reaches the
// adapter's subscribers.
func (a *Adapter) Subject(topic string) string { return a.topic(topic).subject }

// topicInfo caches what the adapter knows about a topic.
type topicInfo struct {
	stream, subject string
	known           atomic.Bool // the stream is known to exist
}

func (a *Adapter) topic(topic string) *topicInfo {
	if ti, ok := a.topics.Load(topic); ok {
		return ti.(*topicInfo)
	}
	esc := escapeName(topic)
	ti, _ := a.topics.LoadOrStore(topic, &topicInfo{stream: a.cfg.StreamPrefix + esc, subject: a.cfg.SubjectPrefix + "." + esc})
	return ti.(*topicInfo)
}

// ConsumerName returns the name of the durable consumer of group: the
// escaped group name.
func (a *Adapter) ConsumerName(group string) string { return escapeName(group) }

// maxNameLen is the longest stream or consumer name the adapter creates;
// the server allows 255 bytes, and file storage uses the name as a
// directory name.
const maxNameLen = 240

func escapeName(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

func (a *Adapter) checkTopic(topic string) error {
	if topic == "" {
		return eventstream.ErrEmptyTopic
	}
	if n := len(a.StreamName(topic)); n > maxNameLen {
		return fmt.Errorf("%w: stream name for topic %q would be %d bytes, at most %d allowed", ErrInvalidTopic, topic, n, maxNameLen)
	}
	return nil
}

// ensureStream makes sure the stream of topic exists, creating it with the
// configured limits. An existing stream is used as it is.
func (a *Adapter) ensureStream(ctx context.Context, topic string, recheck bool) error {
	ti := a.topic(topic)
	name := ti.stream
	if !recheck && ti.known.Load() {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	_, err := a.js.Stream(rctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = a.js.CreateStream(rctx, a.streamConfig(topic))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // created concurrently, with another config
		}
		if err == nil {
			a.log.Info("nats: created stream", "stream", name, "topic", topic)
		}
	}
	if err != nil {
		return fmt.Errorf("nats: stream %s for topic %q: %w", name, topic, err)
	}
	ti.known.Store(true)
	return nil
}

func (a *Adapter) forgetStream(topic string) {
	a.topic(topic).known.Store(false)
}

func (a *Adapter) streamConfig(topic string) jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:         a.StreamName(topic),
		Description:  "eventstream topic " + strconv.Quote(topic),
		Subjects:     []string{a.Subject(topic)},
		Retention:    jetstream.LimitsPolicy,
		MaxConsumers: -1,
		MaxMsgs:      -1,
		MaxBytes:     -1,
		MaxAge:       a.cfg.MaxAge,
		MaxMsgSize:   -1,
		Storage:      jetstream.FileStorage,
		Replicas:     a.cfg.Replicas,
		Duplicates:   a.cfg.DuplicateWindow,
		Discard:      jetstream.DiscardOld,
	}
	if a.cfg.MaxMsgs > 0 {
		sc.MaxMsgs = a.cfg.MaxMsgs
	}
	if a.cfg.MaxBytes > 0 {
		sc.MaxBytes = a.cfg.MaxBytes
	}
	if a.cfg.MaxMsgSize > 0 {
		sc.MaxMsgSize = a.cfg.MaxMsgSize
	}
	if a.cfg.Storage == MemoryStorage {
		sc.Storage = jetstream.MemoryStorage
	}
	if a.cfg.Discard == DiscardNew {
		sc.Discard = jetstream.DiscardNew
	}
	return sc
}

// Close ends every subscription (handing the messages they hold and that
// were not acknowledged back to their group with a negative
// acknowledgement, so they are delivered again at once), waits up to
// Config.CloseTimeout for outstanding publish acknowledgements, and closes
// the connection. Publish and Subscribe fail with an error wrapping
// eventstream.ErrAdapterClosed afterwards. It is idempotent and returns nil.
func (a *Adapter) Close() error {
	a.once.Do(func() {
		close(a.closing)
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()

		a.smu.Lock()
		subs := make([]*subscription, 0, len(a.subs))
		for s := range a.subs {
			subs = append(subs, s)
		}
		a.smu.Unlock()
		for _, s := range subs {
			s.stop()
		}

		// Publishes already handed to the client get their answer (or
		// their timeout) before the connection goes.
		done := make(chan struct{})
		go func() {
			a.work.Wait()
			close(done)
		}()
		t := time.NewTimer(a.cfg.CloseTimeout)
		select {
		case <-done:
		case <-t.C:
			a.log.Warn("nats: Close: publishes still waiting for acknowledgements", "timeout", a.cfg.CloseTimeout)
		}
		t.Stop()
		// Acks and naks are buffered writes: send them before closing.
		fctx, cancel := context.WithTimeout(context.Background(), a.cfg.CloseTimeout)
		if err := a.nc.FlushWithContext(fctx); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
			a.log.Warn("nats: Close: flush", "err", err)
		}
		cancel()
		close(a.connGone)
		a.nc.Close()
		a.pub.Load().close()
		<-done
	})
	return nil
}

// backoff returns the wait before retry attempt n (0-based): 20ms doubling
// up to 1s.
func backoff(n int) time.Duration {
	d := 20 * time.Millisecond
	for i := 0; i < n && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}
