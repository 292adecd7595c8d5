package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
)

// Adapter is an eventstream.MQAdapter backed by Redis Streams. It also
// implements eventstream.RecordPublisher, and the messages it delivers
// implement eventstream.HeaderCarrier.
//
// All methods are safe for concurrent use. Create one with NewAdapter and
// release it with Close.
type Adapter struct {
	cfg        Config
	rdb        goredis.UniversalClient
	ownsClient bool
	log        *slog.Logger
	host       string        // consumer name prefix: host-pid
	block      time.Duration // BLOCK of XREADGROUP: Config.Block within the client's read timeout
	cluster    bool          // rdb is a cluster client: reads go through go-redis' parsers

	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	closing chan struct{} // closed at the start of Close
	once    sync.Once

	mu     sync.RWMutex // guards closed; held shared while registering work
	closed bool

	queue chan *pubReq
	reqs  sync.Pool      // *pubReq
	wg    sync.WaitGroup // producer and trimmer goroutines

	kmu  sync.RWMutex
	keys map[string]*string // stream keys of topics, see streamKeyArg

	smu  sync.Mutex
	subs map[*subscription]struct{}

	tmu     sync.Mutex
	trimSet map[string]bool // stream keys published to since the last trim, or still too long
}

var (
	_ eventstream.MQAdapter       = (*Adapter)(nil)
	_ eventstream.RecordPublisher = (*Adapter)(nil)
)

// NewAdapter validates cfg and returns an Adapter. It does not contact
// Redis: connection problems surface from Publish and Subscribe. Invalid
// configuration is reported with an error wrapping
// eventstream.ErrInvalidConfig.
func NewAdapter(cfg Config) (*Adapter, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rdb, owns := c.Client, false
	if rdb == nil {
		if rdb, err = c.newClient(); err != nil {
			return nil, err
		}
		owns = true
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Adapter{
		cfg:        c,
		rdb:        rdb,
		ownsClient: owns,
		log:        c.Logger,
		block:      readBlock(rdb, c.Block),
		cluster:    isCluster(rdb),
		host:       host + "-" + strconv.Itoa(os.Getpid()),
		ctx:        ctx,
		cancel:     cancel,
		closing:    make(chan struct{}),
		queue:      make(chan *pubReq, c.MaxQueuedPublishes),
		subs:       make(map[*subscription]struct{}),
		trimSet:    make(map[string]bool),
		keys:       make(map[string]*string),
	}
	a.wg.Add(1)
	go a.produce()
	if c.MaxLen > 0 {
		a.wg.Add(1)
		go a.trimLoop()
	}
	return a, nil
}

// readBlock returns the BLOCK of XREADGROUP: block, but at most two thirds of
// the client's read timeout. The read is sent as a plain command (its reply
// is parsed by the adapter), which go-redis gives only that timeout, not the
// longer one of its own blocking commands.
func readBlock(rdb goredis.UniversalClient, block time.Duration) time.Duration {
	rt := 5 * time.Second // go-redis' default
	switch c := rdb.(type) {
	case *goredis.Client:
		rt = c.Options().ReadTimeout
	case *goredis.ClusterClient:
		rt = c.Options().ReadTimeout
	}
	if rt <= 0 { // no read timeout
		return block
	}
	return max(min(block, rt*2/3), time.Millisecond)
}

func isCluster(rdb goredis.UniversalClient) bool {
	_, ok := rdb.(*goredis.ClusterClient)
	return ok
}

// MessagingSystem returns "redis", the OpenTelemetry messaging.system value.
func (a *Adapter) MessagingSystem() string { return "redis" }

// StreamKey returns the Redis key of topic's stream: Config.KeyPrefix +
// topic.
func (a *Adapter) StreamKey(topic string) string { return a.cfg.KeyPrefix + topic }

// Close ends every subscription (closing its channel after its goroutines
// returned, sending its last acks and handing its pending entries back to
// the group), fails publishes that are still waiting with an error wrapping
// eventstream.ErrAdapterClosed and closes the client unless it was supplied
// in Config.Client. It is idempotent and returns nil.
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
			s.cancel()
		}
		a.cancel()
		a.wg.Wait()
		closedErr := fmt.Errorf("redis: publish: %w", eventstream.ErrAdapterClosed)
		for {
			select {
			case r := <-a.queue:
				r.finish(closedErr)
				continue
			default:
			}
			break
		}
		if a.ownsClient {
			_ = a.rdb.Close()
		}
	})
	return nil
}

// Publish adds message to topic's stream and returns nil once XADD
// succeeded. See PublishRecord.
func (a *Adapter) Publish(ctx context.Context, topic string, message []byte) error {
	return a.PublishRecord(ctx, topic, eventstream.Record{Value: message})
}

// PublishRecord adds r to topic's stream as
//
//	XADD <KeyPrefix><topic> * v <value> [k <key>] [t <unix ms>] [h:<name> <value>]...
//
// and returns nil only once Redis answered the XADD. Concurrent publishes are
// pipelined: while one pipeline is in flight the next ones queue and go out
// together. A failure that may be temporary (connection lost, server
// loading, failover) is retried until ctx is done; since a lost reply cannot
// tell whether the entry was added, a retry may add it twice (at least
// once). Errors from Redis that retrying cannot fix (wrong key type, out of
// memory, no permission) are returned at once.
func (a *Adapter) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	if topic == "" {
		return fmt.Errorf("redis: publish: %w", eventstream.ErrEmptyTopic)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: publish to %q: %w", topic, err)
	}
	key := a.streamKeyArg(topic)
	req := a.newReq(ctx, key, &r)

	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return fmt.Errorf("redis: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	select {
	case a.queue <- req:
		a.mu.RUnlock()
	case <-ctx.Done():
		a.mu.RUnlock()
		return fmt.Errorf("redis: publish to %q: %w", topic, ctx.Err())
	case <-a.closing:
		a.mu.RUnlock()
		return fmt.Errorf("redis: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	if a.cfg.MaxLen > 0 {
		a.markTrim(*key)
	}
	select {
	case err := <-req.done:
		a.release(req) // answered: the producer is done with it
		if err != nil {
			return fmt.Errorf("redis: publish to %q: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		if req.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return fmt.Errorf("redis: publish to %q: %w", topic, ctx.Err())
		}
		return fmt.Errorf("redis: publish to %q: %w (the entry may have been added)", topic, ctx.Err())
	}
}

const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// pubReq is one queued XADD. Requests are reused (Adapter.reqs) once their
// publisher received the result.
type pubReq struct {
	ctx   context.Context
	args  []any
	done  chan error // buffered; receives exactly one result
	state atomic.Int32

	vals []bytesArg // the arguments of args that are byte slices
	buf  []byte     // bytes of the arguments built for this XADD
}

// bytesArg is an XADD argument given to go-redis by pointer
// (encoding.BinaryMarshaler), which, unlike a []byte in an interface, does
// not allocate.
type bytesArg struct{ b []byte }

// MarshalBinary returns the argument's bytes.
func (a *bytesArg) MarshalBinary() ([]byte, error) { return a.b, nil }

// newReq returns a request, new or reused, holding the XADD of r to key.
func (a *Adapter) newReq(ctx context.Context, key *string, r *eventstream.Record) *pubReq {
	req, _ := a.reqs.Get().(*pubReq)
	if req == nil {
		req = &pubReq{done: make(chan error, 1)}
	}
	req.ctx = ctx
	req.state.Store(reqQueued)
	req.args = append(req.args[:0], "xadd", key, "*")
	req.vals = slices.Grow(req.vals[:0], 3+2*len(r.Headers))
	req.buf = req.buf[:0]
	req.encodeFields(r)
	return req
}

// release puts req, whose result its publisher received, back for reuse.
func (a *Adapter) release(req *pubReq) {
	req.ctx = nil
	clear(req.args)
	clear(req.vals) // the caller's value and key
	a.reqs.Put(req)
}

// arg appends b as an argument.
func (r *pubReq) arg(b []byte) {
	r.vals = append(r.vals, bytesArg{b})
	r.args = append(r.args, &r.vals[len(r.vals)-1])
}

// built appends as an argument what was appended to r.buf since offset start.
func (r *pubReq) built(start int) { r.arg(r.buf[start:len(r.buf):len(r.buf)]) }

// streamKeyArg returns the stream key of topic as an XADD argument. Keys
// are kept for the first maxCachedKeys topics.
func (a *Adapter) streamKeyArg(topic string) *string {
	a.kmu.RLock()
	k := a.keys[topic]
	a.kmu.RUnlock()
	if k != nil {
		return k
	}
	key := a.StreamKey(topic)
	k = &key
	a.kmu.Lock()
	if len(a.keys) < maxCachedKeys {
		a.keys[topic] = k
	}
	a.kmu.Unlock()
	return k
}

const maxCachedKeys = 4096

func (r *pubReq) finish(err error) { r.done <- err }

// produce sends the queued XADDs, everything that queued up while the
// previous pipeline was in flight in one pipeline, until Close.
func (a *Adapter) produce() {
	defer a.wg.Done()
	batch := make([]*pubReq, 0, a.cfg.MaxPublishBatch)
	cmds := make([]*goredis.StringCmd, 0, a.cfg.MaxPublishBatch)
	for {
		select {
		case r := <-a.queue:
			batch = append(batch[:0], r)
		case <-a.ctx.Done():
			return
		}
	fill:
		for len(batch) < a.cfg.MaxPublishBatch {
			select {
			case r := <-a.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		live := batch[:0]
		for _, r := range batch {
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				live = append(live, r)
			}
		}
		cmds = a.send(live, cmds)
		clear(batch)
	}
}

// send runs reqs as one pipeline and retries the XADDs that failed with a
// temporary error until their context ends. It returns cmds, emptied, for
// the next call.
func (a *Adapter) send(reqs []*pubReq, cmds []*goredis.StringCmd) []*goredis.StringCmd {
	defer clear(cmds[:cap(cmds)])
	for attempt := 0; len(reqs) > 0; attempt++ {
		if attempt > 0 {
			if err := sleepCtx(a.ctx, backoff(attempt-1)); err != nil {
				for _, r := range reqs {
					r.finish(eventstream.ErrAdapterClosed)
				}
				return cmds[:0]
			}
		}
		cmds = cmds[:0]
		_, _ = a.rdb.Pipelined(a.ctx, func(p goredis.Pipeliner) error {
			for _, r := range reqs {
				cmd := goredis.NewStringCmd(a.ctx, r.args...)
				_ = p.Process(a.ctx, cmd)
				cmds = append(cmds, cmd)
			}
			return nil
		})
		retry := reqs[:0]
		for i, r := range reqs {
			err := cmds[i].Err()
			switch {
			case err == nil:
				r.finish(nil)
			case a.ctx.Err() != nil:
				r.finish(eventstream.ErrAdapterClosed)
			case !temporary(err):
				r.finish(err)
			case r.ctx.Err() != nil:
				r.finish(fmt.Errorf("%w (last error: %v)", r.ctx.Err(), err))
			default:
				if attempt == 0 || attempt%20 == 0 {
					a.log.Warn("redis: XADD failed; retrying", "stream", *r.args[1].(*string), "attempt", attempt+1, "error", err)
				}
				retry = append(retry, r)
			}
		}
		reqs = retry
	}
	return cmds[:0]
}

// temporary reports whether a command that failed with err may succeed when
// sent again: network errors and the server replies that mean "not now".
func temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return true // network, pool or protocol error
	}
	msg := rerr.Error()
	for _, p := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "MOVED", "ASK"} {
		if strings.HasPrefix(msg, p+" ") || msg == p {
			return true
		}
	}
	return false
}

// Subscribe joins consumer group groupID on topic's stream (creating the
// stream and the group, from the start of the stream, when missing) as a new
// consumer with a unique name, and delivers the group's new entries and the
// entries it takes over from other consumers. See the package documentation.
func (a *Adapter) Subscribe(ctx context.Context, topic, groupID string) (<-chan eventstream.Message, func(), error) {
	if topic == "" {
		return nil, nil, fmt.Errorf("redis: subscribe: %w", eventstream.ErrEmptyTopic)
	}
	if groupID == "" {
		return nil, nil, fmt.Errorf("redis: subscribe to %q: %w", topic, ErrEmptyGroup)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("redis: subscribe to %q: %w", topic, err)
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return nil, nil, fmt.Errorf("redis: subscribe to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	key := a.StreamKey(topic)
	// Create the group before returning, so that entries published after
	// Subscribe returned reach it even if it is new.
	cctx, cancel := context.WithTimeout(ctx, a.cfg.ShutdownTimeout)
	err := a.createGroup(cctx, key, groupID)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("redis: subscribe to %q as %q: %w", topic, groupID, err)
	}
	s := newSubscription(a, ctx, topic, key, groupID, a.host+"-"+uuid.NewString())
	a.smu.Lock()
	a.subs[s] = struct{}{}
	a.smu.Unlock()
	s.start()
	return s.ch, s.cancel, nil
}

// createGroup creates group on the stream key, from its first entry, and the
// stream if it is missing. An existing group is left alone.
func (a *Adapter) createGroup(ctx context.Context, key, group string) error {
	err := a.rdb.XGroupCreateMkStream(ctx, key, group, "0").Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil
	}
	return err
}

func (a *Adapter) removeSub(s *subscription) {
	a.smu.Lock()
	delete(a.subs, s)
	a.smu.Unlock()
}

// Ack records that groupID processed msg. While msg's subscription runs,
// the ID joins the subscription's next XACK (sent as soon as the previous
// one returned) and Ack returns at once; if that XACK fails it is retried
// until the subscription ends, after which the entry is delivered again.
// After the subscription ended Ack sends XACK itself under ctx. Acking twice
// is harmless. A message of another adapter or group is refused with an
// error wrapping ErrUnknownMessage.
func (a *Adapter) Ack(ctx context.Context, groupID string, msg eventstream.Message) error {
	m, ok := msg.(*Message)
	if !ok || m == nil || m.sub == nil || m.sub.a != a || m.sub.group != groupID {
		return ErrUnknownMessage
	}
	return m.sub.ack(ctx, m)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
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
