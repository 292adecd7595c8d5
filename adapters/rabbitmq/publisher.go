package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// seqHeader carries the publisher's delivery tag, so that a message the
// broker returns (mandatory publish, no queue bound) can be matched to the
// Publish call waiting for it.
const seqHeader = "es-seq"

// pubResult is the outcome of one publish on a confirm channel.
type pubResult int

const (
	resAcked    pubResult = iota
	resNacked             // basic.nack
	resReturned           // basic.return, then basic.ack
	resLost               // the channel closed before the confirm: unknown outcome
)

// pubChannel is one confirm-mode channel of the publishing connection.
// Publishes are pipelined: every Publish call registers its delivery tag and
// waits for its own confirm, while any number of others are outstanding.
type pubChannel struct {
	ch  *amqp.Channel
	gen uint64 // connection generation

	mu sync.Mutex // orders GetNextPublishSeqNo and the publish

	pmu      sync.Mutex
	pending  map[uint64]chan pubResult
	returned map[uint64]bool
	lost     bool

	dead chan struct{} // closed when the channel is gone

	dmu      sync.Mutex
	declared map[string]bool // exchanges known to exist on this connection
}

func openPubChannel(conn *amqp.Connection, gen uint64, maxPending int) (*pubChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	pc := &pubChannel{
		ch:       ch,
		gen:      gen,
		pending:  make(map[uint64]chan pubResult),
		returned: make(map[uint64]bool),
		dead:     make(chan struct{}),
		declared: make(map[string]bool),
	}
	// The return channel is unbuffered: the library hands over a return
	// before it processes the confirm of the same message, and both are
	// received by the single loop goroutine, so a return is always recorded
	// before its confirm is seen.
	returns := ch.NotifyReturn(make(chan amqp.Return))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, maxPending+16))
	go pc.loop(returns, confirms)
	return pc, nil
}

func (pc *pubChannel) loop(returns <-chan amqp.Return, confirms <-chan amqp.Confirmation) {
	defer close(pc.dead)
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			if tag, ok := headerUint(r.Headers, seqHeader); ok {
				pc.pmu.Lock()
				pc.returned[tag] = true
				pc.pmu.Unlock()
			}
		case c, ok := <-confirms:
			if !ok {
				pc.pmu.Lock()
				pc.lost = true
				for tag, w := range pc.pending {
					w <- resLost
					delete(pc.pending, tag)
				}
				pc.pmu.Unlock()
				// Drain returns until the library closes them too.
				if returns != nil {
					for range returns {
					}
				}
				return
			}
			pc.pmu.Lock()
			w := pc.pending[c.DeliveryTag]
			delete(pc.pending, c.DeliveryTag)
			ret := pc.returned[c.DeliveryTag]
			delete(pc.returned, c.DeliveryTag)
			pc.pmu.Unlock()
			if w == nil {
				continue
			}
			switch {
			case !c.Ack:
				w <- resNacked
			case ret:
				w <- resReturned
			default:
				w <- resAcked
			}
		}
	}
}

func headerUint(t amqp.Table, name string) (uint64, bool) {
	switch v := t[name].(type) {
	case int64:
		return uint64(v), true
	case string:
		n, err := strconv.ParseUint(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

var errChannelLost = errors.New("rabbitmq: publish channel lost before the confirm")

// publish sends msg and returns the channel its outcome will arrive on.
func (pc *pubChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) (<-chan pubResult, error) {
	w := make(chan pubResult, 1)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	tag := pc.ch.GetNextPublishSeqNo()
	msg.Headers[seqHeader] = int64(tag)
	pc.pmu.Lock()
	if pc.lost {
		pc.pmu.Unlock()
		return nil, errChannelLost
	}
	pc.pending[tag] = w
	pc.pmu.Unlock()
	if err := pc.ch.PublishWithContext(ctx, exchange, key, true, false, msg); err != nil {
		pc.pmu.Lock()
		delete(pc.pending, tag)
		pc.pmu.Unlock()
		return nil, fmt.Errorf("%w: %w", errChannelLost, err)
	}
	return w, nil
}

func (pc *pubChannel) isDead() bool {
	select {
	case <-pc.dead:
		return true
	default:
		return false
	}
}
