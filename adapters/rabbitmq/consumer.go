package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	eventstream "github.com/eventstream-go/eventstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// generation is one channel of a subscription. Messages remember the
// generation that delivered them; once it is dead their acks are dropped,
// because delivery tags are per channel and the broker has requeued them.
type generation struct {
	ch   *amqp.Channel
	dead atomic.Bool
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
// the queue and compete for its messages; in partitioned mode each
// partition queue has a single active consumer. The subscription survives
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
		delivered, err := s.session(conn)
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

// session consumes on one new channel of conn until the channel is lost or
// the subscription ends. delivered reports whether any message arrived.
func (s *subscription) session(conn *amqp.Connection) (delivered bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	gen := &generation{ch: ch}
	defer func() {
		gen.dead.Store(true)
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
	type feed struct {
		part int
		d    <-chan amqp.Delivery
	}
	feeds := make([]feed, 0, len(s.queues))
	// Register on the partition queues in a rotated order, so that members
	// do not all line up behind the same first queue.
	start := 0
	if len(s.queues) > 1 {
		start = rand.IntN(len(s.queues))
	}
	for i := range s.queues {
		p := (start + i) % len(s.queues)
		d, err := ch.Consume(s.queues[p], "", false, false, false, false, nil)
		if err != nil {
			return false, fmt.Errorf("consume %q: %w", s.queues[p], err)
		}
		part := p
		if len(s.queues) == 1 {
			part = 0
		}
		feeds = append(feeds, feed{part, d})
	}

	stop := make(chan struct{})
	ended := make(chan struct{}, len(feeds))
	var got atomic.Bool
	var wg sync.WaitGroup
	for _, f := range feeds {
		wg.Go(func() {
			defer func() { ended <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				case d, ok := <-f.d:
					if !ok {
						return
					}
					got.Store(true)
					m := newMessage(s.a, s.topic, s.group, gen, f.part, &d)
					select {
					case s.out <- m:
					case <-stop:
						return
					}
				}
			}
		})
	}
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
	gen.dead.Store(true)
	close(stop)
	wg.Wait()
	return got.Load(), cerr
}
