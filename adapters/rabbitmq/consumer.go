package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	eventstream "github.com/eventstream-go/eventstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// generation is one channel of a subscription. Messages remember the
// generation that delivered them; once it is dead their acks are dropped,
// because delivery tags are per channel and the broker has requeued them.
//
// Acks are coalesced. An ack with multiple=true for tag n acknowledges
// every unacknowledged delivery of the channel up to n, so it may name n
// only when every message handed out below n has been handled. Ack records
// its tag as handled and wakes the generation's acker goroutine, which
// sends one basic.ack multiple for the handled tags below the lowest
// unhandled one, then again for whatever was recorded meanwhile: under load
// one frame (and, for a quorum queue, one settle in its log) covers many
// messages, and an idle subscription acks at once. Tags handled above an
// unhandled one wait for it, unless more than half the prefetch window
// waits or the window is full: then they are acknowledged one by one, so a
// slow message never stalls the window. Every structure is bounded by the
// prefetch window.
type generation struct {
	ch     *amqp.Channel
	dead   atomic.Bool
	total  atomic.Int64 // messages handed out
	window int          // handled tags that may wait above an unhandled one
	full   int          // the prefetch window

	mu      sync.Mutex
	out     int             // handed out, not acknowledged to the broker
	idleCh  chan struct{}   // closed when out drops to 0
	order   []uint64        // handed-out tags, ascending; the first one is unhandled
	done    map[uint64]bool // handled tags in order behind an unhandled one
	pending []uint64        // handled tags not acknowledged to the broker yet

	log      *slog.Logger
	wake     chan struct{} // a tag was recorded
	quit     chan struct{} // closed by stop
	stopOnce sync.Once
	ackerWG  sync.WaitGroup
}

// newGeneration returns the generation of ch and starts its acker.
func newGeneration(ch *amqp.Channel, prefetch int, log *slog.Logger) *generation {
	g := &generation{
		ch: ch, window: prefetch / 2, full: prefetch, done: make(map[uint64]bool),
		log: log, wake: make(chan struct{}, 1), quit: make(chan struct{}),
	}
	g.ackerWG.Go(g.acker)
	return g
}

// stop lets the acker send what was recorded, waits for it to return and
// marks the generation dead (later acks are dropped); then the channel can
// be closed. Idempotent.
func (g *generation) stop() {
	g.stopOnce.Do(func() {
		close(g.quit)
		g.ackerWG.Wait()
		g.dead.Store(true)
	})
}

func (g *generation) acker() {
	for {
		quit := false
		select {
		case <-g.wake:
		case <-g.quit:
			quit = true
		}
		if err := g.flush(); err != nil {
			g.log.Debug("rabbitmq: ack failed: the messages will be redelivered", "error", err)
		}
		if quit {
			return
		}
	}
}

// handedOut records that the message of tag was given to the subscriber
// (tags arrive in ascending order). When that fills the window while
// handled tags wait behind an unhandled one, it wakes the acker: they must
// go one by one now, or the broker sends nothing more (and the subscriber
// may be waiting for the next message before it handles the unhandled one).
func (g *generation) handedOut(tag uint64) {
	g.total.Add(1)
	g.mu.Lock()
	g.out++
	g.order = append(g.order, tag)
	wake := g.out >= g.full && len(g.pending) > 0
	g.mu.Unlock()
	if wake {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// takeBack undoes handedOut for the last message handed out, which the
// subscriber never received.
func (g *generation) takeBack(tag uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := len(g.order); n > 0 && g.order[n-1] == tag {
		g.order = g.order[:n-1]
	}
	g.settleLocked(1)
}

// drop counts a handed-out message whose ack is dropped (its channel is
// gone).
func (g *generation) drop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.settleLocked(1)
}

func (g *generation) settleLocked(n int) {
	g.out = max(g.out-n, 0)
	if g.out == 0 && g.idleCh != nil {
		close(g.idleCh)
		g.idleCh = nil
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// idle returns a channel closed once every handed-out message was
// acknowledged to the broker (or dropped).
func (g *generation) idle() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.out == 0 {
		return closedChan
	}
	if g.idleCh == nil {
		g.idleCh = make(chan struct{})
	}
	return g.idleCh
}

// ack records the message of tag as handled (once per message) and wakes
// the acker.
func (g *generation) ack(tag uint64) {
	g.mu.Lock()
	if len(g.order) > 0 && g.order[0] == tag {
		g.order = g.order[1:]
		for len(g.order) > 0 && g.done[g.order[0]] {
			delete(g.done, g.order[0])
			g.order = g.order[1:]
		}
	} else {
		g.done[tag] = true
	}
	g.pending = append(g.pending, tag)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// forgetLocked removes tags that are acknowledged one by one from order and
// done: they wait for no multiple ack, so that while a message stays
// unhandled order and done hold only what the prefetch window holds.
func (g *generation) forgetLocked(tags []uint64) {
	slices.Sort(tags)
	for _, t := range tags {
		delete(g.done, t)
	}
	g.order = slices.DeleteFunc(g.order, func(t uint64) bool {
		_, found := slices.BinarySearch(tags, t)
		return found
	})
}

// flush sends what the recorded tags allow, until nothing is left, and
// returns the first error.
func (g *generation) flush() error {
	var first error
	g.mu.Lock()
	for {
		low := uint64(math.MaxUint64) // the lowest unhandled tag
		if len(g.order) > 0 {
			low = g.order[0]
		}
		var multi uint64
		covered := 0
		keep := g.pending[:0]
		for _, t := range g.pending {
			if t < low {
				covered++
				multi = max(multi, t)
			} else {
				keep = append(keep, t)
			}
		}
		g.pending = keep
		var singles []uint64
		if len(g.pending) > g.window || len(g.pending) > 0 && g.out >= g.full {
			singles = slices.Clone(g.pending)
			g.pending = g.pending[:0]
			g.forgetLocked(singles)
		}
		if covered == 0 && len(singles) == 0 {
			g.mu.Unlock()
			return first
		}
		g.mu.Unlock()
		var err error
		if g.dead.Load() {
			err = amqp.ErrClosed
		} else {
			if covered > 0 {
				err = g.ch.Ack(multi, true)
			}
			for _, t := range singles {
				if e := g.ch.Ack(t, false); err == nil {
					err = e
				}
			}
		}
		if first == nil {
			first = err
		}
		g.mu.Lock()
		g.settleLocked(covered + len(singles))
	}
}

// subscription is one Subscribe call: a goroutine that consumes the group's
// queues on a channel of the consuming connection and opens a new channel
// (a new generation) whenever the old one is lost.
type subscription struct {
	a            *Adapter
	topic, group string
	queues       []string

	out    chan eventstream.Message
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned (after out was closed)
}

// Subscribe joins group on topic: it declares the group's durable queue (or
// partition queues) bound to the topic's exchange, waiting for the
// connection bounded by ctx, and then consumes it with manual acks and
// Config.Prefetch unacknowledged messages at most. Members of a group share
// the queue and compete for its messages; in partitioned mode the members
// share out the partition queues, each consumed by one member at a time
// (see the package documentation). The subscription survives
// lost connections and channels: it reconnects with backoff, declares the
// topology again and resumes; messages that were not acknowledged are
// redelivered by the broker. It ends when cancel is called, ctx is done or
// the adapter is closed; then the channel is closed, unacknowledged
// messages go back to the queue, and cancel returns once every goroutine of
// the subscription has returned.
func (a *Adapter) Subscribe(ctx context.Context, topic, groupID string) (<-chan eventstream.Message, func(), error) {
	if a.isClosed() {
		return nil, nil, fmt.Errorf("rabbitmq: subscribe: %w", eventstream.ErrAdapterClosed)
	}
	queues, _, err := a.queues(topic, groupID)
	if err == nil && len(queues) > 1 {
		_, err = memberSlotName(topic, groupID, maxSlots-1)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("rabbitmq: subscribe: %w", err)
	}
	if err := a.DeclareGroup(ctx, topic, groupID); err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{
		a:      a,
		topic:  topic,
		group:  groupID,
		queues: queues,
		out:    make(chan eventstream.Message),
		ctx:    sctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		cancel()
		return nil, nil, fmt.Errorf("rabbitmq: subscribe: %w", eventstream.ErrAdapterClosed)
	}
	a.subs[s] = struct{}{}
	a.wg.Add(1)
	a.mu.Unlock()
	go s.run()
	return s.out, s.stop, nil
}

// stop ends the subscription and waits for its goroutines.
func (s *subscription) stop() {
	s.cancel()
	<-s.done
}

func (s *subscription) run() {
	defer func() {
		s.a.mu.Lock()
		delete(s.a.subs, s)
		s.a.mu.Unlock()
		close(s.out)
		close(s.done)
		s.a.wg.Done()
		s.cancel()
	}()
	for attempt := 0; s.ctx.Err() == nil; attempt++ {
		conn, _, err := s.a.subConn.get(s.ctx)
		if err != nil {
			return // ctx done or adapter closed
		}
		var delivered bool
		if len(s.queues) > 1 {
			delivered, err = s.partSession(conn)
		} else {
			delivered, err = s.session(conn)
		}
		if s.ctx.Err() != nil {
			return
		}
		if delivered {
			attempt = 0
		}
		d := backoff(&s.a.cfg, attempt)
		s.a.log.Warn("rabbitmq: subscription channel lost, resubscribing", "topic", s.topic, "group", s.group, "error", err, "retry_in", d)
		if sleepCtx(s.ctx, d) != nil {
			return
		}
	}
}

// session consumes the group's queue on one new channel of conn until the
// channel is lost or the subscription ends (partitioned mode runs
// partSession instead). delivered reports whether any message arrived.
func (s *subscription) session(conn *amqp.Connection) (delivered bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	gen := newGeneration(ch, s.a.cfg.Prefetch, s.a.log)
	defer func() {
		gen.stop()
		// Closing the channel requeues every unacknowledged message,
		// including those prefetched but not handed out yet.
		_ = ch.Close()
	}()
	closes := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(s.a.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("qos: %w", err)
	}
	if err := s.a.declareGroupOn(ch, s.topic, s.group); err != nil {
		return false, err
	}
	deliveries, err := ch.Consume(s.queues[0], "", false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consume %q: %w", s.queues[0], err)
	}

	stop := make(chan struct{})
	ended := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ended)
		for {
			select {
			case <-stop:
				return
			case d, ok := <-deliveries:
				if !ok {
					return
				}
				m := newMessage(s.a, s.topic, s.group, gen, 0, &d)
				gen.handedOut(d.DeliveryTag)
				select {
				case s.out <- m:
				case <-stop:
					gen.takeBack(d.DeliveryTag)
					return
				}
			}
		}
	})
	var cerr error
	select {
	case <-s.ctx.Done():
	case e := <-closes:
		if e != nil {
			cerr = e
		} else {
			cerr = amqp.ErrClosed
		}
	case <-ended:
		cerr = errors.New("consumer cancelled by the broker")
	}
	close(stop)
	wg.Wait()
	return gen.total.Load() > 0, cerr
}
