package nats

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/internal/headerset"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// subscription is one member of a group: one puller of the group's durable
// consumer.
type subscription struct {
	a        *Adapter
	topic    string
	group    string
	stream   string
	consumer string
	log      *slog.Logger
	out      chan eventstream.Message
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}

	cons jetstream.Consumer // the group's consumer, for its configuration

	// Pull requests are sent to nextSubject with reply subjects
	// inbox.<n>; sub receives their messages and status replies (onMsg).
	inbox       string
	nextSubject string
	sub         *natsgo.Subscription
	reqSeq      uint64         // used by run only
	lastHeaders *headerset.Set // the user headers of the last message with any; used by onMsg only (see newMessage)
	wake        chan struct{}  // capacity 1: onMsg has news for run

	freed    chan struct{} // signalled (capacity 1) when held shrinks while run waits for room
	wantRoom atomic.Bool   // run waits for room

	mu        sync.Mutex
	held      map[*Message]struct{} // arrived, not acknowledged, not handed back
	heldBytes int                   // the sizes of the held messages (Message.size)
	capBytes  int                   // MaxInFlightBytes; 0 (no byte bound) on a server before 2.11, see Config.MaxInFlightBytes
	need      int                   // bytes the next message needs at least, as the last pull found (0: unknown); set by run
	ready     []*Message            // held, not yet taken by run
	behind    bool                  // run has messages to send: onMsg queues new ones behind them
	req       pull                  // the outstanding pull request
	pinID     string                // Exclusive: the pin the server gave this member
	gotAny    bool                  // a message arrived
	ended     bool                  // finish took the held messages; later arrivals are handed back at once

	// released: the cancel function was called, so the reader is done
	// with what it received and did not acknowledge. kept: what the reader
	// received, had not acknowledged when the subscription ended by ctx
	// or Close, and may still be handling; the cancel function hands it
	// back. unpin: an Exclusive member left its unpin to the cancel
	// function, after that hand-back.
	released bool
	kept     []*Message
	unpin    bool
}

// Subscribe joins consumer group groupID on topic: it creates the topic's
// stream and the group's durable pull consumer when they do not exist yet (a
// new group starts at the first message the stream retains) and returns the
// channel of delivered messages (*Message values) and a cancel function.
// Subscriptions of one group compete for its messages; every group gets
// every message.
//
// A subscription holds at most Config.MaxInFlight messages and
// Config.MaxInFlightBytes bytes (it asks the server for no more than the
// room it has left; a message larger than MaxInFlightBytes is pulled on its
// own once the subscription holds nothing else; the byte bound needs
// nats-server 2.11 or later), and every
// Config.InProgressInterval it tells the server that the messages it holds
// are still being worked on, so none is redelivered to the group while the
// subscription lives, however slow its handler. Messages wait in the
// channel's buffer (they are held like the others) until the reader takes
// them.
//
// The subscription ends when cancel is called, ctx is done or the adapter is
// closed: it stops pulling, ends its inbox subscription and waits (one round
// trip to the server) until every message the server sent to it has
// arrived, hands back to the group with a negative acknowledgement (the
// group gets them again at once) every message it holds that the reader
// never received from the channel, and closes the channel once its
// goroutine returned. cancel waits for that and is idempotent.
//
// A message the reader received belongs to the reader until it is
// acknowledged: the subscription ending does not hand it to another member
// while a handler may still work on it. cancel hands back every received
// message that is not acknowledged yet (calling cancel says the reader is
// done with them; the bus calls it once its handlers have returned). When
// the subscription ended by ctx or Close, an Ack of such a message before
// cancel still acknowledges it (after Close it fails with
// eventstream.ErrAdapterClosed), and one neither acknowledged nor handed
// back by cancel is redelivered by the server after AckWait. An Ack of a
// message that was handed back is ignored and returns nil. A consumer
// deleted behind the adapter's back is created again; connection losses
// and server restarts are ridden out by reconnecting.
//
// Subscribe fails with an error wrapping eventstream.ErrEmptyTopic,
// eventstream.ErrNoConsumerGroup, ErrInvalidTopic, eventstream.ErrAdapterClosed
// or ctx's error, or with the server's error when the stream or consumer
// cannot be created.
func (a *Adapter) Subscribe(ctx context.Context, topic, groupID string) (<-chan eventstream.Message, func(), error) {
	if err := a.checkTopic(topic); err != nil {
		return nil, nil, fmt.Errorf("nats: subscribe: %w", err)
	}
	if groupID == "" {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: %w", topic, eventstream.ErrNoConsumerGroup)
	}
	if n := len(a.ConsumerName(groupID)); n > maxNameLen {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: %w: consumer name for group %q would be %d bytes, at most %d allowed",
			topic, ErrInvalidTopic, groupID, n, maxNameLen)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: %w", topic, err)
	}
	if a.isClosing() {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	s := &subscription{
		a:        a,
		topic:    topic,
		group:    groupID,
		stream:   a.StreamName(topic),
		consumer: a.ConsumerName(groupID),
		log:      a.log.With("topic", topic, "group", groupID),
		out:      make(chan eventstream.Message, outBuffer(a.cfg.MaxInFlight)),
		done:     make(chan struct{}),
		held:     make(map[*Message]struct{}),
		freed:    make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
	}
	if a.cfg.Exclusive && !a.serverAtLeast(2, 11) {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: Exclusive needs pinned consumers of nats-server 2.11+, the server is %s: %w",
			topic, a.nc.ConnectedServerVersion(), ErrNotSupported)
	}
	if err := s.ensure(ctx, false); err != nil {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: %w", topic, err)
	}
	if info := s.cons.CachedInfo(); info != nil && (info.Config.PriorityPolicy == jetstream.PriorityPolicyPinned) != a.cfg.Exclusive {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: consumer %s exists with priority policy %v, but Config.Exclusive is %v: %w",
			topic, s.consumer, info.Config.PriorityPolicy, a.cfg.Exclusive, eventstream.ErrInvalidConfig)
	}
	if a.serverAtLeast(2, 11) {
		s.capBytes = a.cfg.MaxInFlightBytes
	}
	if info := s.cons.CachedInfo(); info != nil && info.Config.MaxRequestMaxBytes > 0 && s.capBytes > info.Config.MaxRequestMaxBytes {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: consumer %s exists with MaxRequestMaxBytes %d, below Config.MaxInFlightBytes %d (the bytes one pull may ask for): %w",
			topic, s.consumer, info.Config.MaxRequestMaxBytes, a.cfg.MaxInFlightBytes, eventstream.ErrInvalidConfig)
	}

	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	s.inbox = a.nc.NewInbox()
	s.nextSubject = "$JS.API.CONSUMER.MSG.NEXT." + s.stream + "." + s.consumer
	sub, err := a.nc.Subscribe(s.inbox+".*", s.onMsg)
	if err == nil {
		// Pull requests bound what arrives: never drop a message.
		err = sub.SetPendingLimits(-1, -1)
		if err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("nats: subscribe to %q: inbox: %w", topic, err)
	}
	s.sub = sub
	s.ctx, s.cancel = context.WithCancel(ctx)
	a.smu.Lock()
	a.subs[s] = struct{}{}
	a.smu.Unlock()
	go s.run()
	return s.out, s.release, nil
}

func (a *Adapter) isClosing() bool {
	select {
	case <-a.closing:
		return true
	default:
		return false
	}
}

// stop ends the subscription and waits until its channel is closed. What
// the reader received and did not acknowledge stays with it (see kept).
func (s *subscription) stop() {
	s.cancel()
	<-s.done
}

// release is the cancel function of the subscription: it ends the
// subscription, waits until its channel is closed, and hands back what the
// reader received and did not acknowledge.
func (s *subscription) release() {
	s.mu.Lock()
	s.released = true
	s.mu.Unlock()
	s.stop()
	s.mu.Lock()
	kept, unpin := s.kept, s.unpin
	s.kept, s.unpin = nil, false
	s.mu.Unlock()
	if s.a.isClosing() {
		return // the connection is gone: the server redelivers after AckWait
	}
	s.handBack(kept)
	if unpin {
		s.unpinSelf()
	}
}

func (s *subscription) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Name:          s.consumer,
		Durable:       s.consumer,
		Description:   fmt.Sprintf("eventstream group %q", s.group),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.a.cfg.AckWait,
		MaxDeliver:    maxDeliver(s.a.cfg.MaxDeliver),
		MaxAckPending: s.a.cfg.MaxAckPending,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		// Durable consumers are never reaped for inactivity: a group that
		// comes back later resumes where it stopped.
		InactiveThreshold: 0,
		PriorityPolicy:    s.priorityPolicy(),
		PriorityGroups:    s.priorityGroups(),
		PinnedTTL:         s.pinnedTTL(),
	}
}

// priorityGroup is the priority group of Exclusive consumers.
const priorityGroup = "eventstream"

func (s *subscription) priorityPolicy() jetstream.PriorityPolicy {
	if s.a.cfg.Exclusive {
		return jetstream.PriorityPolicyPinned
	}
	return jetstream.PriorityPolicyNone
}

func (s *subscription) priorityGroups() []string {
	if s.a.cfg.Exclusive {
		return []string{priorityGroup}
	}
	return nil
}

func (s *subscription) pinnedTTL() time.Duration {
	if s.a.cfg.Exclusive {
		return s.a.cfg.PinnedTTL
	}
	return 0
}

// serverAtLeast reports whether the connected server's version is at least
// major.minor.
func (a *Adapter) serverAtLeast(major, minor int) bool {
	v := strings.TrimPrefix(a.nc.ConnectedServerVersion(), "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// maxDeliver maps Config.MaxDeliver to the server's value: 0 (unlimited)
// is -1 there.
func maxDeliver(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// ensure makes sure the stream and the group's consumer exist and sets
// s.cons. With recheck it asks the server even for a stream it knew.
func (s *subscription) ensure(ctx context.Context, recheck bool) error {
	if err := s.a.ensureStream(ctx, s.topic, recheck); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.a.cfg.RequestTimeout)
	defer cancel()
	c, err := s.a.js.Consumer(rctx, s.stream, s.consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = s.a.js.CreateConsumer(rctx, s.stream, s.consumerConfig())
		if errors.Is(err, jetstream.ErrConsumerExists) {
			c, err = s.a.js.Consumer(rctx, s.stream, s.consumer)
		} else if err == nil {
			s.log.Info("nats: created consumer", "stream", s.stream, "consumer", s.consumer)
		}
	}
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", s.consumer, s.stream, err)
	}
	s.cons = c
	return nil
}

// room is what a subscription may still pull: messages and bytes, and
// whether it holds nothing.
type room struct {
	msgs, bytes int
	empty       bool
}

// roomLeft returns the room left under MaxInFlight and MaxInFlightBytes,
// and records need (see subscription.need) for forget.
func (s *subscription) roomLeft(need int) room {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.need = need
	return s.roomLocked()
}

// roomLocked is roomLeft with s.mu held. Without a byte bound (capBytes 0)
// the room in bytes is unlimited.
func (s *subscription) roomLocked() room {
	bytes := math.MaxInt
	if s.capBytes > 0 {
		bytes = s.capBytes - s.heldBytes
	}
	return room{s.a.cfg.MaxInFlight - len(s.held), bytes, len(s.held) == 0}
}

// minBytes is the room in bytes a pull needs, given need (see
// subscription.need): at least 1 and what the message that did not fit
// needs, and the whole of the bound (no message held) for a message larger
// than that, which is pulled alone.
func (s *subscription) minBytes(need int) int {
	if s.capBytes == 0 {
		return 1
	}
	return min(max(1, need), s.capBytes)
}

// forget forgets m (acknowledged) and, when run waits for room and the room
// is what it waits for, wakes it: run pulls once the room reaches
// pullThreshold in messages and in bytes (and what the next message
// needs), and lingers for a little room (from 1 message and minBytes up);
// so an acknowledgement in between, the common case, wakes nobody.
func (s *subscription) forget(m *Message) {
	s.mu.Lock()
	if _, ok := s.held[m]; ok {
		delete(s.held, m)
		s.heldBytes -= m.size
	}
	r := s.roomLocked()
	lo := s.minBytes(s.need)
	s.mu.Unlock()
	if !s.wantRoom.Load() {
		return
	}
	if r.msgs == 1 || // room for a message again
		r.bytes >= lo && r.bytes-m.size < lo || // room in bytes again
		// room for a full pull; holding nothing is such room
		r.msgs >= pullThreshold(s.a.cfg.MaxInFlight) && r.bytes >= max(lo, pullThreshold(s.capBytes)) {
		select {
		case s.freed <- struct{}{}:
		default:
		}
	}
}

// inProgress resets the server's AckWait timer of every held message.
func (s *subscription) inProgress() {
	s.mu.Lock()
	ms := make([]*Message, 0, len(s.held))
	for m := range s.held {
		ms = append(ms, m)
	}
	s.mu.Unlock()
	for _, m := range ms {
		if m.state.Load() == msgPending {
			_ = m.reply(ackProgress) // fails only with a closed connection
		}
	}
}

// outBuffer is the capacity of a subscription's channel: room for every
// message it may hold (up to a limit), so that onMsg hands them to the
// reader directly, without run in between. Messages in the channel are held
// like all others (they count against MaxInFlight and MaxInFlightBytes and get in-progress
// acknowledgements); what does not fit waits in ready and run's queue.
func outBuffer(maxInFlight int) int { return min(4096, max(1, maxInFlight)) }

// pullThreshold is the room under a limit (MaxInFlight or
// MaxInFlightBytes) for which a subscription pulls at once; with less room
// in either it lingers first.
func pullThreshold(limit int) int { return max(1, limit/2) }

// linger is how long a subscription with a little room left waits for more
// room before it pulls for what it has.
const linger = 20 * time.Millisecond

// pullRequest is the body of a JetStream pull request
// ($JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>).
type pullRequest struct {
	Batch     int    `json:"batch"`
	MaxBytes  int    `json:"max_bytes,omitempty"`
	Expires   int64  `json:"expires"`        // nanoseconds
	Heartbeat int64  `json:"idle_heartbeat"` // nanoseconds
	Group     string `json:"group,omitempty"`
	PinID     string `json:"id,omitempty"`
}

// pull is the state of the subscription's outstanding pull request.
type pull struct {
	subject  string // its reply subject; "" when none is outstanding
	left     int    // messages the server may still deliver for it
	maxBytes int    // the bytes it asked for; 0: no bound
	bytes    int    // the bytes delivered for it
	need     int    // it ended on a message that needs more bytes than it had left: at least this many
	beat     bool   // a message or heartbeat arrived since the last check
	over     bool   // it ended: batch filled, expired, or an error status
	err      error  // why it ended, when that is an error
}

// Headers of the server's status replies.
const (
	statusHdr       = "Status"
	descrHdr        = "Description"
	pendingBytesHdr = "Nats-Pending-Bytes" // the bytes a request had left
)

// Errors of pull requests, from the status replies of the server.
var (
	errPinMismatch     = errors.New("pinned to another member")
	errConsumerDeleted = errors.New("consumer deleted")
)

// onMsg receives every message on the subscription's inbox: the messages
// its pull requests asked for and the server's status replies to them. It
// runs on the client's delivery goroutine for the subscription, one call at
// a time, and never blocks.
//
// Every message that arrives is held until it is acknowledged or handed
// back. Nothing is dropped: a message that arrives after finish took the
// held messages (the last ones of the draining subscription) is handed back
// here.
func (s *subscription) onMsg(msg *natsgo.Msg) {
	if !strings.HasPrefix(msg.Reply, "$JS.ACK.") {
		// Not a stream message: a status reply (they have no reply
		// subject), or nothing the subscription knows.
		if code := msg.Header.Get(statusHdr); code != "" {
			s.onStatus(msg, code)
		}
		return
	}
	m := newMessage(s, msg)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		if m.state.CompareAndSwap(msgPending, msgReleased) {
			if err := m.reply(ackNak); err != nil {
				s.log.Warn("nats: handing a message back failed; it is redelivered after AckWait", "seq", m.Sequence(), "err", err)
			}
		}
		return
	}
	s.held[m] = struct{}{}
	s.heldBytes += m.size
	// Straight to the reader unless earlier messages wait for room in the
	// channel (order).
	wake := true
	if !s.behind && len(s.ready) == 0 {
		select {
		case s.out <- m:
			wake = false
		default:
		}
	}
	if wake {
		s.ready = append(s.ready, m)
	}
	s.gotAny = true
	// Messages carry their stream subject, not the request's: count them
	// against the outstanding request (only one is).
	if !s.req.over {
		s.req.beat = true
		s.req.left--
		s.req.bytes += m.size
		// The server ends a request silently once its batch is filled,
		// or its bytes exactly.
		if s.req.left <= 0 || s.req.maxBytes > 0 && s.req.bytes >= s.req.maxBytes {
			s.req.over, wake = true, true
		}
	}
	if s.a.cfg.Exclusive {
		if ids := msg.Header[pinIDHdr]; len(ids) > 0 {
			s.pinID = ids[len(ids)-1] // the server's comes last
		}
	}
	s.mu.Unlock()
	if wake {
		s.signal()
	}
}

// onStatus handles a status reply of the server to a pull request.
func (s *subscription) onStatus(msg *natsgo.Msg, code string) {
	desc := strings.ToLower(msg.Header.Get(descrHdr))
	s.mu.Lock()
	if code == "423" {
		s.pinID = "" // another member is pinned now
	}
	if msg.Subject != s.req.subject || s.req.over {
		s.mu.Unlock()
		return // a request that ended before
	}
	s.req.beat = true
	var err error
	switch code {
	case "100": // idle heartbeat
		s.mu.Unlock()
		return
	case "404", "408": // no messages, request expired
	case "409":
		switch {
		case strings.Contains(desc, "consumer deleted"):
			err = errConsumerDeleted
		case strings.Contains(desc, "message size exceeds maxbytes"):
			// The next message does not fit in the bytes left.
			// It needs more than the bytes the server had left, and
			// (should the counts differ) than those counted here.
			left := s.req.maxBytes - s.req.bytes
			if n, perr := strconv.Atoi(msg.Header.Get(pendingBytesHdr)); perr == nil {
				left = max(left, n)
			}
			s.req.need = left + 1
		case strings.Contains(desc, "leadership change"), strings.Contains(desc, "batch completed"),
			strings.Contains(desc, "server shutdown"):
		default:
			err = fmt.Errorf("pull request refused: %s %s", code, msg.Header.Get(descrHdr))
		}
	case "423":
		err = errPinMismatch
	case "503":
		err = natsgo.ErrNoResponders
	default:
		err = fmt.Errorf("pull request failed: %s %s", code, msg.Header.Get(descrHdr))
	}
	s.req.over, s.req.err = true, err
	s.mu.Unlock()
	s.signal()
}

// signal wakes run.
func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sendPull sends a pull request for n messages of at most maxBytes bytes
// in all (0: no bound).
func (s *subscription) sendPull(n, maxBytes int) error {
	s.reqSeq++
	subject := s.inbox + "." + strconv.FormatUint(s.reqSeq, 10)
	req := pullRequest{
		Batch:     n,
		MaxBytes:  maxBytes,
		Expires:   int64(s.a.cfg.PullExpiry),
		Heartbeat: int64(s.a.cfg.PullHeartbeat),
	}
	s.mu.Lock()
	if s.a.cfg.Exclusive {
		req.Group, req.PinID = priorityGroup, s.pinID
	}
	s.req = pull{subject: subject, left: n, maxBytes: maxBytes, beat: true}
	s.mu.Unlock()
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return s.a.nc.PublishRequest(s.nextSubject, subject, body)
}

// run pulls from the consumer, one pull request at a time, and hands the
// messages to the channel. It never asks for more than the room left under
// MaxInFlight and MaxInFlightBytes (but for a message larger than
// MaxInFlightBytes, pulled alone when nothing else is held).
func (s *subscription) run() {
	var queue []*Message // held, not yet handed to the channel
	defer func() { s.finish(queue) }()
	threshold := pullThreshold(s.a.cfg.MaxInFlight)
	byteThreshold := pullThreshold(s.capBytes)

	var (
		pulling  bool // a pull request is outstanding
		missed   int  // heartbeat periods without news from it
		failures int
		retry    *time.Timer // pause after a failed pull
		retryC   <-chan time.Time
		lingerT  *time.Timer // a little room left: pull for it after linger
		lingerC  <-chan time.Time
		lingered bool
		need     int // bytes the next message needs at least (see subscription.need)
	)
	defer func() {
		for _, t := range []*time.Timer{retry, lingerT} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	tick := time.NewTicker(s.a.cfg.InProgressInterval)
	defer tick.Stop()
	beat := time.NewTicker(s.a.cfg.PullHeartbeat)
	defer beat.Stop()
	setRetry := func(d time.Duration) {
		if retry == nil {
			retry = time.NewTimer(d)
		} else {
			retry.Reset(d)
		}
		retryC = retry.C
	}
	failed := func(err error) {
		failures++
		s.pullFailed(err, failures)
		setRetry(backoff(failures))
	}

	for {
		if !pulling && retryC == nil {
			// Announce the wait for room before counting, so that no
			// release between the count and the select goes unnoticed.
			s.wantRoom.Store(true)
			r := s.roomLeft(need)
			lo := s.minBytes(need)
			n, maxBytes := 0, 0
			switch {
			case s.capBytes > 0 && need > s.capBytes:
				// The next message is larger than the whole bound:
				// pull it alone once nothing else is held.
				if r.empty {
					n = 1
				}
			case r.msgs >= threshold && r.bytes >= max(lo, byteThreshold) || r.msgs > 0 && r.bytes >= lo && lingered:
				n = r.msgs
				if s.capBytes > 0 {
					maxBytes = r.bytes
				}
			case r.msgs > 0 && r.bytes >= lo && lingerC == nil:
				if lingerT == nil {
					lingerT = time.NewTimer(linger)
				} else {
					lingerT.Reset(linger)
				}
				lingerC = lingerT.C
			}
			if n > 0 {
				need, lingered = 0, false
				if lingerC != nil {
					lingerT.Stop()
					lingerC = nil
				}
				s.wantRoom.Store(false)
				if err := s.sendPull(n, maxBytes); err != nil {
					if s.ctx.Err() != nil {
						return
					}
					failed(err)
				} else {
					pulling, missed = true, 0
				}
			}
		} else {
			s.wantRoom.Store(false)
		}

		var sendCh chan<- eventstream.Message
		var head eventstream.Message
		if len(queue) > 0 {
			sendCh, head = s.out, queue[0]
		}
		select {
		case <-s.wake:
			s.mu.Lock()
			if len(queue) == 0 {
				queue, s.ready = s.ready, queue[:0]
			} else {
				queue = append(queue, s.ready...)
				clear(s.ready)
				s.ready = s.ready[:0]
			}
			s.behind = len(queue) > 0
			over, err, reqNeed := s.req.over, s.req.err, s.req.need
			s.mu.Unlock()
			if pulling && over {
				pulling, need = false, reqNeed
				if err != nil {
					failed(err)
				} else {
					failures = 0
				}
			}
		case sendCh <- head:
			queue[0] = nil
			queue = queue[1:]
			// Fill the channel's buffer without another trip through
			// the select.
			for len(queue) > 0 {
				select {
				case s.out <- queue[0]:
					queue[0] = nil
					queue = queue[1:]
					continue
				default:
				}
				break
			}
			if len(queue) == 0 {
				// Caught up: onMsg sends to the channel itself again,
				// unless more came meanwhile.
				s.mu.Lock()
				queue, s.ready = s.ready, queue[:0]
				s.behind = len(queue) > 0
				s.mu.Unlock()
			}
		case <-s.freed:
		case <-retryC:
			retryC = nil
		case <-lingerC:
			lingerC = nil
			lingered = true
		case <-beat.C:
			if !pulling {
				break
			}
			s.mu.Lock()
			if s.req.beat {
				missed = 0
			} else {
				missed++
			}
			s.req.beat = false
			lost := missed >= 2
			if lost {
				s.req.over = true // what still comes for it is held all the same
			}
			s.mu.Unlock()
			if lost {
				pulling = false
				failed(errNoHeartbeat)
			}
		case <-tick.C:
			s.inProgress()
		case <-s.ctx.Done():
			return
		}
	}
}

// errNoHeartbeat: a pull request got neither messages nor heartbeats for
// two heartbeat periods (a lost connection or a restarted server).
var errNoHeartbeat = errors.New("no heartbeat from the pull request")

// errReconnected: the connection was lost and is back; the server forgot
// the pull request with the old connection.
var errReconnected = errors.New("reconnected")

// reconnected ends the outstanding pull request: the server dropped it
// with the old connection (what still arrives for it is held all the
// same), so run pulls again now rather than after two missed heartbeats.
func (s *subscription) reconnected() {
	s.mu.Lock()
	if !s.req.over {
		s.req.over, s.req.err = true, errReconnected
	}
	s.mu.Unlock()
	s.signal()
}

// pullFailed logs a failed pull and, when the consumer or its stream may be
// gone, creates them again.
func (s *subscription) pullFailed(err error, failures int) {
	switch {
	case errors.Is(err, errPinMismatch):
		s.log.Debug("nats: another member is pinned (Exclusive), standing by")
		return
	case errors.Is(err, errNoHeartbeat), errors.Is(err, errReconnected):
		s.log.Debug("nats: pull request lost, pulling again", "err", err)
		return
	case errors.Is(err, errConsumerDeleted), errors.Is(err, natsgo.ErrNoResponders):
		if e := s.ensure(s.ctx, true); e != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("nats: consumer gone and cannot be created again yet", "err", e, "failures", failures)
			}
			return
		}
		s.log.Info("nats: consumer checked after pull error", "err", err)
	default:
		if s.ctx.Err() == nil {
			s.log.Warn("nats: pull failed", "err", err, "failures", failures)
		}
	}
}

// drain ends the inbox subscription without losing a message: it tells the
// server to stop sending and waits until everything the server sent before
// has been received (nats.go's Drain: unsubscribe, then a round trip).
// Messages the server assigns to a pull request after it saw the
// unsubscription are not delivered, and the server gives them to another
// pull request at once.
func (s *subscription) drain() {
	closed := s.sub.StatusChanged(natsgo.SubscriptionClosed)
	if err := s.sub.Drain(); err != nil {
		return // the connection is closed: nothing arrives any more
	}
	if !s.a.nc.IsConnected() {
		// Nothing arrives before a reconnect; the drain completes then,
		// and onMsg hands back what arrives.
		return
	}
	t := time.NewTimer(s.a.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		// Disconnected, probably. What arrives later is handed back by
		// onMsg.
		s.log.Debug("nats: subscription still draining at its end", "timeout", s.a.cfg.RequestTimeout)
	}
}

// finish hands back every held message the reader never received (queue:
// run's, not yet sent on the channel) and closes the channel. What the
// reader received and did not acknowledge is handed back too when the
// cancel function ended the subscription, and kept for it otherwise.
func (s *subscription) finish(queue []*Message) {
	s.drain()
	s.mu.Lock()
	s.ended = true
	held := s.held
	s.held, s.heldBytes = make(map[*Message]struct{}), 0
	unread := make([]*Message, 0, len(queue)+len(s.ready)+len(s.out))
	unread = append(append(unread, queue...), s.ready...)
	s.ready = nil
	gotAny := s.gotAny
	s.mu.Unlock()
	// Messages still in the channel's buffer are not handed to the reader
	// any more: they are handed back below with the rest.
	for drained := false; !drained; {
		select {
		case m := <-s.out:
			unread = append(unread, m.(*Message))
		default:
			drained = true
		}
	}
	for _, m := range unread {
		delete(held, m)
	}
	var received []*Message
	for m := range held {
		if m.state.Load() == msgPending {
			received = append(received, m)
		}
	}
	s.mu.Lock()
	released := s.released
	if released {
		unread = append(unread, received...)
	} else {
		s.kept = received
	}
	unpin := s.a.cfg.Exclusive && gotAny
	if unpin && !released && len(received) > 0 {
		// Another member takes over once the received messages are
		// back, so that it gets every key in order.
		s.unpin, unpin = true, false
	}
	s.mu.Unlock()
	s.handBack(unread)
	if unpin && s.a.nc.IsConnected() {
		s.unpinSelf()
	}
	close(s.out)
	s.a.smu.Lock()
	delete(s.a.subs, s)
	s.a.smu.Unlock()
	close(s.done)
}

// handBack gives the messages of ms that are neither acknowledged nor handed
// back yet to the group again, in stream order, with negative
// acknowledgements, and waits (a bounded time) until the server processed
// them.
func (s *subscription) handBack(ms []*Message) {
	// The server redelivers in the order of the Naks: keep stream order,
	// so that a member taking over (Exclusive) gets every key in order.
	slices.SortFunc(ms, func(x, y *Message) int { return cmp.Compare(x.Sequence(), y.Sequence()) })
	back := ms[:0]
	for _, m := range ms {
		if m.state.CompareAndSwap(msgPending, msgReleased) {
			back = append(back, m)
		}
	}
	for i, m := range back {
		var err error
		if i < len(back)-1 || !s.a.nc.IsConnected() {
			err = m.reply(ackNak) // disconnected: buffered for the reconnect
		} else {
			// The server processes a consumer's acknowledgements in
			// order and answers one sent as a request once it is
			// processed: when the last Nak is answered, every message
			// is back in the group (before an Exclusive member unpins,
			// so that the next one gets them first, in order).
			_, err = s.a.nc.Request(m.ackTo, ackNak, min(s.a.cfg.RequestTimeout, 2*time.Second))
			if errors.Is(err, natsgo.ErrTimeout) {
				s.log.Debug("nats: the last Nak was not confirmed in time", "seq", m.Sequence())
				err = nil
			}
		}
		if err != nil {
			s.log.Warn("nats: handing a message back failed; it is redelivered after AckWait", "seq", m.Sequence(), "err", err)
		}
	}
	if len(back) > 0 {
		s.log.Debug("nats: subscription ended, handed messages back", "count", len(back))
	}
}

// unpinSelf lets another member of an Exclusive group take over now rather
// than after PinnedTTL. (Unpinning another member only makes the server pin
// again.)
func (s *subscription) unpinSelf() {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.a.cfg.RequestTimeout, 2*time.Second))
	defer cancel()
	st, err := s.a.js.Stream(ctx, s.stream)
	if err == nil {
		err = st.UnpinConsumer(ctx, s.consumer, priorityGroup)
	}
	if err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
		s.log.Debug("nats: unpin at the end of the subscription", "err", err)
	}
}

// Ack acknowledges msg, a *Message this adapter delivered to groupID. The
// acknowledgement is sent without waiting for the server's answer: a lost
// one (connection loss) means the message is delivered again. Acknowledging
// a message twice, or after it was handed back to the group (see
// Subscribe), does nothing and returns nil. Ack fails for a message of
// another adapter or group, and with an error wrapping
// eventstream.ErrAdapterClosed after Close.
func (a *Adapter) Ack(ctx context.Context, groupID string, msg eventstream.Message) error {
	m, ok := msg.(*Message)
	if !ok || m == nil || m.sub == nil || m.sub.a != a {
		return fmt.Errorf("nats: ack: %T is not a message delivered by this adapter", msg)
	}
	if m.group != groupID {
		return fmt.Errorf("nats: ack: message was delivered to group %q, not %q", m.group, groupID)
	}
	if a.isClosing() {
		return fmt.Errorf("nats: ack: %w", eventstream.ErrAdapterClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: ack: %w", err)
	}
	if !m.state.CompareAndSwap(msgPending, msgAcked) {
		return nil
	}
	err := m.reply(ackAck)
	m.sub.forget(m)
	if err != nil {
		return fmt.Errorf("nats: ack of message %d on %q: %w", m.Sequence(), m.topic, err)
	}
	return nil
}
