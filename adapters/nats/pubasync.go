package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publisher pipelines JetStream publishes on the adapter's connection:
// every message carries a reply subject <inbox>.<id>, the server's
// publish acknowledgement arrives on one wildcard subscription, and onAck
// hands it to the waiting caller. (nats.go's PublishMsgAsync does the
// same, but with a timer per message and the acknowledgement decoded by
// reflection under the lock its publishers need.)
//
// Timeouts are coarse: every timeout/4 the janitor advances the epoch and
// fails the publishes that have waited for four epochs or more, so a
// publish times out after between 1 and 1.25 × timeout.
type publisher struct {
	nc      *natsgo.Conn
	prefix  string // <inbox>.
	sub     *natsgo.Subscription
	slots   chan struct{} // one per outstanding publish (MaxPendingPublishes)
	timeout time.Duration
	stop    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	next    uint64
	epoch   uint64
	cut     uint64 // ids up to cut were published before the last disconnect
	pending map[uint64]pendingPub
}

type pendingPub struct {
	res   chan error // capacity 1: the outcome, sent once
	epoch uint64     // when it was published
}

// errPublishTimeout is the outcome of a publish without acknowledgement
// within Config.PublishTimeout. It wraps natsgo.ErrTimeout.
var errPublishTimeout = fmt.Errorf("no publish acknowledgement in time: %w", natsgo.ErrTimeout)

func newPublisher(nc *natsgo.Conn, maxPending int, timeout time.Duration) (*publisher, error) {
	p := &publisher{
		nc:      nc,
		prefix:  nc.NewInbox() + ".",
		slots:   make(chan struct{}, maxPending),
		timeout: timeout,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[uint64]pendingPub),
	}
	sub, err := nc.Subscribe(p.prefix+"*", p.onAck)
	if err == nil {
		// Outstanding publishes are bounded by slots: never drop an
		// acknowledgement.
		if err = sub.SetPendingLimits(-1, -1); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nats: publish acknowledgement inbox: %w", err)
	}
	p.sub = sub
	go p.janitor()
	return p, nil
}

// publish sends m (with a reply subject of the publisher's) and waits for
// its acknowledgement, for the end of ctx or for gone. It waits for a slot
// first while MaxPendingPublishes publishes are outstanding.
func (p *publisher) publish(ctx context.Context, m *natsgo.Msg, gone <-chan struct{}) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-gone:
		return eventstream.ErrAdapterClosed
	}
	res := make(chan error, 1)
	p.mu.Lock()
	p.next++
	id := p.next
	p.pending[id] = pendingPub{res: res, epoch: p.epoch}
	p.mu.Unlock()
	m.Reply = p.prefix + strconv.FormatUint(id, 36)
	if err := p.nc.PublishMsg(m); err != nil {
		p.forget(id)
		return err
	}
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		if _, ok := p.take(id); !ok {
			return <-res // resolved meanwhile: its outcome is on the way
		}
		return ctx.Err()
	case <-gone:
		if _, ok := p.take(id); !ok {
			return <-res
		}
		return eventstream.ErrAdapterClosed
	}
}

// take removes publish id and frees its slot; it reports whether id was
// still outstanding (whoever takes it sends its outcome).
func (p *publisher) take(id uint64) (pendingPub, bool) {
	p.mu.Lock()
	pp, ok := p.pending[id]
	if ok {
		delete(p.pending, id)
	}
	p.mu.Unlock()
	if ok {
		<-p.slots
	}
	return pp, ok
}

func (p *publisher) forget(id uint64) { p.take(id) }

// onAck resolves the publish an acknowledgement (or a status reply) is for.
func (p *publisher) onAck(msg *natsgo.Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(msg.Subject, p.prefix), 36, 64)
	if err != nil {
		return
	}
	pp, ok := p.take(id)
	if !ok {
		return // timed out, abandoned or failed by a reconnect before
	}
	pp.res <- pubAckError(msg)
}

// pubAckError reads a publish acknowledgement: nil for a stored message,
// natsgo.ErrNoResponders when no stream holds the subject, the server's
// *jetstream.APIError when it refused the message.
func pubAckError(msg *natsgo.Msg) error {
	if len(msg.Data) == 0 {
		if code := msg.Header.Get(statusHdr); code == "503" {
			return natsgo.ErrNoResponders
		} else if code != "" {
			return fmt.Errorf("publish answered with status %s %s", code, msg.Header.Get(descrHdr))
		}
		return jetstream.ErrInvalidJSAck
	}
	// The common answer is {"stream":"ES_x","seq":42} (perhaps with
	// "domain" or "duplicate"): no need for a full decode.
	if bytes.HasPrefix(msg.Data, []byte(`{"stream":`)) && !bytes.Contains(msg.Data, []byte(`"error"`)) {
		return nil
	}
	var ack struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	if err := json.Unmarshal(msg.Data, &ack); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if ack.Error != nil {
		return ack.Error
	}
	if ack.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// disconnected notes that the connection broke: acknowledgements of what
// was published until now may never come.
func (p *publisher) disconnected() {
	p.mu.Lock()
	p.cut = p.next
	p.mu.Unlock()
}

// reconnected fails the publishes sent before the disconnect that are
// still waiting (their acknowledgements went to the old connection), so
// that they are retried now rather than after the timeout. What was
// published while disconnected went out with the reconnect and gets its
// acknowledgement.
func (p *publisher) reconnected() {
	p.failWhere(func(id uint64, _ pendingPub) bool { return id <= p.cut }, natsgo.ErrDisconnected)
}

// failWhere fails the outstanding publishes for which match (called with
// p.mu held) reports true.
func (p *publisher) failWhere(match func(uint64, pendingPub) bool, err error) {
	var failed []chan error
	p.mu.Lock()
	for id, pp := range p.pending {
		if match(id, pp) {
			delete(p.pending, id)
			failed = append(failed, pp.res)
		}
	}
	p.mu.Unlock()
	for _, res := range failed {
		<-p.slots
		res <- err
	}
}

// janitor times out publishes that wait too long.
func (p *publisher) janitor() {
	defer close(p.done)
	const epochs = 4
	t := time.NewTicker(max(p.timeout/epochs, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		p.epoch++
		now := p.epoch
		p.mu.Unlock()
		p.failWhere(func(_ uint64, pp pendingPub) bool { return now-pp.epoch >= epochs }, errPublishTimeout)
	}
}

// close stops the janitor; the connection's end ends the subscription.
func (p *publisher) close() {
	close(p.stop)
	<-p.done
}
