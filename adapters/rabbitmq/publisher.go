package rabbitmq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

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

	pmu     sync.Mutex
	pending map[uint64]*pendingPub
	lost    bool

	dead chan struct{} // closed when the channel is gone

	dmu      sync.Mutex
	declared map[string]bool // exchanges known to exist on this connection
	known    sync.Map        // the same, read without dmu
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
		pending:  make(map[uint64]*pendingPub),
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
			pc.pmu.Lock()
			for _, p := range pc.matchReturn(&r) {
				p.returned = true
			}
			pc.pmu.Unlock()
		case c, ok := <-confirms:
			if !ok {
				pc.pmu.Lock()
				pc.lost = true
				for tag, p := range pc.pending {
					p.w <- resLost
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
			p := pc.pending[c.DeliveryTag]
			delete(pc.pending, c.DeliveryTag)
			pc.pmu.Unlock()
			if p == nil {
				continue
			}
			switch {
			case !c.Ack:
				p.w <- resNacked
			case p.returned:
				p.w <- resReturned
			default:
				p.w <- resAcked
			}
		}
	}
}

// pendingPub is a published message waiting for its confirm.
type pendingPub struct {
	w             chan pubResult
	exchange, key string
	msg           *amqp.Publishing
	returned      bool // basic.return seen; the confirm follows
}

// matchReturn returns the pending publishes a basic.return is charged to
// (called with pmu held). A return carries no delivery tag, and the adapter
// does not add an identifying header to every message; the broker returns
// messages in publish order and before their confirm, so the message is
// still pending: it is the oldest pending publish, not returned yet, with
// the same exchange, routing key, body and headers. Should two identical
// messages be pending, one routable and one not, the return may be charged
// to the older one: the caller whose Publish succeeds then has an identical
// message stored, and the other one gets ErrUnroutable and publishes again,
// so nothing is lost. Should no publish match (the broker changed the
// message), the one it belongs to cannot be told, so every pending publish
// to the same exchange and routing key is charged, for the same reason: a
// wrong ErrUnroutable costs a duplicate, a missed one a lost message.
func (pc *pubChannel) matchReturn(r *amqp.Return) []*pendingPub {
	var exact *pendingPub
	var exactTag uint64
	var route []*pendingPub
	for tag, p := range pc.pending {
		if p.returned || p.exchange != r.Exchange || p.key != r.RoutingKey {
			continue
		}
		route = append(route, p)
		if (exact == nil || tag < exactTag) && bytes.Equal(p.msg.Body, r.Body) && sameTable(p.msg.Headers, r.Headers) {
			exact, exactTag = p, tag
		}
	}
	if exact != nil {
		return []*pendingPub{exact}
	}
	return route
}

// sameTable reports whether the headers a message was published with equal
// those the broker returned (decoded from the wire).
func sameTable(sent, got amqp.Table) bool {
	if len(sent) != len(got) {
		return false
	}
	for k, v := range sent {
		g, ok := got[k]
		if !ok {
			return false
		}
		switch x := v.(type) {
		case string:
			if s, ok := g.(string); !ok || s != x {
				return false
			}
		case []byte:
			if b, ok := g.([]byte); !ok || !bytes.Equal(b, x) {
				return false
			}
		case int64:
			if n, ok := g.(int64); !ok || n != x {
				return false
			}
		default:
			if !reflect.DeepEqual(v, g) {
				return false
			}
		}
	}
	return true
}

var errChannelLost = errors.New("rabbitmq: publish channel lost before the confirm")

// publish sends msg and returns the channel its outcome will arrive on.
func (pc *pubChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) (<-chan pubResult, error) {
	p := &pendingPub{w: make(chan pubResult, 1), exchange: exchange, key: key, msg: &msg}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	tag := pc.ch.GetNextPublishSeqNo()
	pc.pmu.Lock()
	if pc.lost {
		pc.pmu.Unlock()
		return nil, errChannelLost
	}
	pc.pending[tag] = p
	pc.pmu.Unlock()
	if err := pc.ch.PublishWithContext(ctx, exchange, key, true, false, msg); err != nil {
		pc.pmu.Lock()
		delete(pc.pending, tag)
		pc.pmu.Unlock()
		return nil, fmt.Errorf("%w: %w", errChannelLost, err)
	}
	return p.w, nil
}

func (pc *pubChannel) isDead() bool {
	select {
	case <-pc.dead:
		return true
	default:
		return false
	}
}
