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
// waits for its own confirm (the library's deferred confirmation), while any
// number of others are outstanding.
//
// Returns (basic.return, for mandatory messages no queue took) carry no
// delivery tag. The broker sends a message's return before its confirm and
// the library's reader hands the return to the buffered returns channel
// before it processes that confirm, so once a publish is confirmed its
// return, if any, is in the channel: every publisher drains the channel
// (under pmu) after its confirm, before it looks at its own outcome, and
// charges each return to the pending publish it matches.
type pubChannel struct {
	ch  *amqp.Channel
	gen uint64 // connection generation

	mu sync.Mutex // orders GetNextPublishSeqNo and the publish

	pmu     sync.Mutex
	pending map[uint64]*pendingPub // published, outcome not taken yet
	returns chan amqp.Return       // nil once the library closed it

	dmu   sync.Mutex // serializes declarations
	known sync.Map   // topic → exchange name, for exchanges known to exist on this connection
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
	return &pubChannel{
		ch:      ch,
		gen:     gen,
		pending: make(map[uint64]*pendingPub),
		// At most one return per outstanding publish, and a publish holds
		// one of the MaxPending slots until it is settled, also when its
		// caller gave up (see wait and Adapter.PublishRecord), so this
		// never fills (the library would drop a return after blocking 5 s).
		returns: ch.NotifyReturn(make(chan amqp.Return, 2*maxPending+16)),
	}, nil
}

// pendingPub is a published message waiting for its confirm.
type pendingPub struct {
	tag           uint64
	dc            *amqp.DeferredConfirmation // set once published
	exchange, key string
	msg           amqp.Publishing
	returned      bool // basic.return seen; the confirm follows
}

// drainReturnsLocked charges every return received so far (called with pmu
// held).
func (pc *pubChannel) drainReturnsLocked() {
	for pc.returns != nil {
		select {
		case r, ok := <-pc.returns:
			if !ok {
				pc.returns = nil
				return
			}
			for _, p := range pc.matchReturn(&r) {
				p.returned = true
			}
		default:
			return
		}
	}
}

// matchReturn returns the pending publishes a basic.return is charged to
// (called with pmu held). A return carries no delivery tag, and the adapter
// does not add an identifying header to every message; the broker returns
// messages in publish order and before their confirm, so the message is
// still pending: it is the oldest pending publish, not returned yet, with
// the same exchange, routing key, content type, body and headers. Should
// two identical messages be pending, one routable and one not, the return
// may be charged to the older one: the caller whose Publish succeeds then
// has an identical message stored, and the other one gets ErrUnroutable and
// publishes again, so nothing is lost. Should no publish match (the broker changed the
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
		if (exact == nil || tag < exactTag) && p.msg.ContentType == r.ContentType && bytes.Equal(p.msg.Body, r.Body) && sameTable(p.msg.Headers, r.Headers) {
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

// publish sends msg and returns its pending publish, for wait.
func (pc *pubChannel) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) (*pendingPub, error) {
	p := &pendingPub{exchange: exchange, key: key, msg: msg}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.ch.IsClosed() {
		return nil, errChannelLost
	}
	// Registered before it is sent: its return may come before
	// PublishWithDeferredConfirm returns.
	p.tag = pc.ch.GetNextPublishSeqNo()
	pc.pmu.Lock()
	pc.pending[p.tag] = p
	pc.pmu.Unlock()
	dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, p.msg)
	if err == nil && dc == nil {
		err = errors.New("channel not in confirm mode")
	}
	if err != nil {
		pc.pmu.Lock()
		delete(pc.pending, p.tag)
		pc.pmu.Unlock()
		return nil, fmt.Errorf("%w: %w", errChannelLost, err)
	}
	p.dc = dc // read only by this caller's wait and settle, not by matchReturn
	return p, nil
}

// wait waits for the outcome of p, or for the end of ctx; then the caller
// must still have p settled (settleLate) once its confirm comes, so that
// its return is charged to it and not to another publish.
func (pc *pubChannel) wait(ctx context.Context, p *pendingPub) (pubResult, error) {
	select {
	case <-p.dc.Done():
		return pc.settle(p), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// settleLate waits for p's confirm (or the end of its channel, which
// confirms every outstanding publish negatively) and settles p.
func (pc *pubChannel) settleLate(p *pendingPub) {
	<-p.dc.Done()
	pc.settle(p)
}

// settle takes the outcome of a confirmed p.
func (pc *pubChannel) settle(p *pendingPub) pubResult {
	pc.pmu.Lock()
	pc.drainReturnsLocked()
	delete(pc.pending, p.tag)
	returned := p.returned
	pc.pmu.Unlock()
	switch {
	case p.dc.Acked() && returned:
		return resReturned
	case p.dc.Acked():
		return resAcked
	case pc.ch.IsClosed():
		// The library confirms every outstanding publish negatively
		// when the channel closes: the outcome is unknown.
		return resLost
	default:
		return resNacked
	}
}

func (pc *pubChannel) isDead() bool { return pc.ch.IsClosed() }
