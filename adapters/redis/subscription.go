package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	goredis "github.com/redis/go-redis/v9"
)

// handBackIdle is the idle time given to entries a subscription hands back
// when it ends: far beyond any ClaimIdle, so the next XAUTOCLAIM of any
// member takes them. (Redis treats an IDLE beyond the current unix time as
// 0, so it must stay well below that.)
const handBackIdle = 365 * 24 * time.Hour

// subscription is one consumer of a group. Its run goroutine reads (new
// entries with XREADGROUP, taken-over ones with XAUTOCLAIM) and delivers;
// its acker goroutine sends the acks in batches.
type subscription struct {
	a                         *Adapter
	topic, key, group, member string

	ch       chan eventstream.Message
	ctx      context.Context // ends the subscription
	stop     context.CancelFunc
	stopAdpt func() bool // detaches ctx from the adapter's context
	done     chan struct{}
	ackDone  chan struct{}

	capWake chan struct{} // signalled when in-flight entries were acked
	ackWake chan struct{} // signalled when acks were queued

	mu       sync.Mutex
	inflight map[string]struct{} // delivered, not acknowledged
	acks     []*string           // IDs acknowledged, XACK not yet sent
	ended    bool                // acker stopped: Ack sends XACK itself

	scratch   batch // the reader's parse buffers
	entrySize int   // the reader's estimate of the size of an entry in a reply
	lastCount int   // entries in the reader's last reply
	ackArgs   []any // the acker's XACK arguments
}

func newSubscription(a *Adapter, parent context.Context, topic, key, group, member string) *subscription {
	ctx, stop := context.WithCancel(parent)
	s := &subscription{
		a: a, topic: topic, key: key, group: group, member: member,
		ch:        make(chan eventstream.Message, a.cfg.ReadCount),
		ctx:       ctx,
		stop:      stop,
		done:      make(chan struct{}),
		ackDone:   make(chan struct{}),
		capWake:   make(chan struct{}, 1),
		ackWake:   make(chan struct{}, 1),
		inflight:  make(map[string]struct{}),
		entrySize: 128,
	}
	s.stopAdpt = context.AfterFunc(a.ctx, stop)
	return s
}

func (s *subscription) start() {
	go s.ackLoop()
	go s.run()
}

// cancel ends the subscription and waits until its goroutines returned. It
// is idempotent and safe for concurrent use.
func (s *subscription) cancel() {
	s.stop()
	<-s.done
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ack queues m's ID for the next XACK, or sends it at once when the acker
// has stopped.
func (s *subscription) ack(ctx context.Context, m *Message) error {
	s.mu.Lock()
	if _, ok := s.inflight[m.id]; ok {
		delete(s.inflight, m.id)
		if !s.ended {
			s.acks = append(s.acks, &m.id)
			s.mu.Unlock()
			signal(s.ackWake)
			signal(s.capWake)
			return nil
		}
	} else if !s.ended {
		// Acknowledged before, or abandoned: nothing to do.
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	if err := s.a.rdb.XAck(ctx, s.key, s.group, m.id).Err(); err != nil {
		return fmt.Errorf("redis: XACK %s on %q for group %q: %w", m.id, s.topic, s.group, err)
	}
	return nil
}

// ackLoop sends queued acks, as many as AckBatch per XACK, until the
// subscription ends; then it sends what is left, within ShutdownTimeout.
func (s *subscription) ackLoop() {
	defer close(s.ackDone)
	var spare []*string // the slice of the previous XACK, for the next batch of acks
	for {
		select {
		case <-s.ackWake:
		case <-s.ctx.Done():
			s.flushAcks()
			return
		}
		for attempt := 0; ; {
			ids := s.takeAcks(spare)
			if len(ids) == 0 {
				spare = ids
				break
			}
			err := s.sendAcks(s.ctx, ids)
			if err == nil {
				clear(ids)
				spare = ids
				attempt = 0
				continue
			}
			s.requeueAcks(ids)
			spare = nil
			if s.ctx.Err() != nil {
				break
			}
			if attempt%20 == 0 {
				s.a.log.Warn("redis: XACK failed; retrying", "topic", s.topic, "group", s.group, "error", err)
			}
			if sleepCtx(s.ctx, backoff(attempt)) != nil {
				break
			}
			attempt++
		}
	}
}

// takeAcks removes up to AckBatch queued acks and returns them; spare
// (empty, not used elsewhere) takes their place.
func (s *subscription) takeAcks(spare []*string) []*string {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := s.a.cfg.AckBatch
	if len(s.acks) <= limit {
		ids := s.acks
		s.acks = spare[:0]
		return ids
	}
	ids := append(spare[:0], s.acks[:limit]...)
	n := copy(s.acks, s.acks[limit:])
	clear(s.acks[n:])
	s.acks = s.acks[:n]
	return ids
}

func (s *subscription) requeueAcks(ids []*string) {
	s.mu.Lock()
	s.acks = append(ids, s.acks...)
	s.mu.Unlock()
}

// sendAcks sends one XACK. A group that vanished has nothing to acknowledge.
func (s *subscription) sendAcks(ctx context.Context, ids []*string) error {
	args := append(s.ackArgs[:0], "xack", s.key, s.group)
	for _, id := range ids {
		args = append(args, id)
	}
	err := s.a.rdb.Process(ctx, goredis.NewIntCmd(ctx, args...))
	clear(args)
	s.ackArgs = args[:0]
	if isNoGroup(err) {
		return nil
	}
	return err
}

// flushAcks marks the subscription ended (later acks send XACK themselves)
// and sends the queued acks within ShutdownTimeout.
func (s *subscription) flushAcks() {
	s.mu.Lock()
	s.ended = true
	ids := s.acks
	s.acks = nil
	s.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.a.cfg.ShutdownTimeout)
	defer cancel()
	for len(ids) > 0 {
		n := min(len(ids), s.a.cfg.AckBatch)
		if err := s.sendAcks(ctx, ids[:n]); err != nil {
			s.a.log.Warn("redis: final XACK failed; the entries will be delivered again",
				"topic", s.topic, "group", s.group, "entries", len(ids), "error", err)
			return
		}
		ids = ids[n:]
	}
}

// run delivers entries until the subscription ends, then hands the pending
// entries back and closes the channel.
func (s *subscription) run() {
	defer close(s.done)
	defer s.a.removeSub(s)
	defer close(s.ch)
	defer s.stopAdpt()
	defer s.shutdown()

	cfg := &s.a.cfg
	heartbeat := time.NewTicker(cfg.ClaimIdle / 3)
	defer heartbeat.Stop()
	nextClaim := time.Now()
	nextSweep := time.Now().Add(cfg.ClaimInterval)
	for failures := 0; s.ctx.Err() == nil; {
		select {
		case <-heartbeat.C:
			s.refresh()
		default:
		}
		now := time.Now()
		var err error
		if !now.Before(nextClaim) {
			err = s.claim(heartbeat.C)
			if err == nil {
				nextClaim = time.Now().Add(cfg.ClaimInterval)
			}
		}
		if err == nil && !now.Before(nextSweep) {
			s.sweepConsumers()
			nextSweep = now.Add(max(cfg.ClaimIdle, cfg.ClaimInterval))
		}
		if err == nil {
			err = s.readNew(heartbeat.C)
		}
		if err == nil {
			failures = 0
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		if isNoGroup(err) {
			s.recreateGroup()
			continue
		}
		if failures%20 == 0 {
			s.a.log.Warn("redis: reading the stream failed; retrying", "topic", s.topic, "group", s.group, "error", err)
		}
		if sleepCtx(s.ctx, backoff(failures)) != nil {
			return
		}
		failures++
	}
}

// recreateGroup creates the group again after Redis answered NOGROUP: the
// stream or the group vanished (a restart without persistence, a FLUSHALL,
// XGROUP DESTROY), and with it every entry that was not consumed yet.
func (s *subscription) recreateGroup() {
	s.a.log.Error("redis: consumer group vanished (Redis restarted without persistence, or the stream or group was deleted); recreating it: entries published before may be lost",
		"topic", s.topic, "group", s.group, "stream", s.key)
	ctx, cancel := context.WithTimeout(s.ctx, s.a.cfg.ShutdownTimeout)
	defer cancel()
	if err := s.a.createGroup(ctx, s.key, s.group); err != nil && s.ctx.Err() == nil {
		s.a.log.Warn("redis: recreating the consumer group failed; retrying", "topic", s.topic, "group", s.group, "error", err)
		_ = sleepCtx(s.ctx, time.Second)
	}
}

// capacity waits until fewer than MaxInFlight entries are in flight and
// returns how many more may be delivered; 0 when the subscription ended.
func (s *subscription) capacity(heartbeat <-chan time.Time) int {
	for {
		s.mu.Lock()
		n := s.a.cfg.MaxInFlight - len(s.inflight)
		s.mu.Unlock()
		if n > 0 {
			return n
		}
		select {
		case <-s.capWake:
		case <-heartbeat:
			s.refresh()
		case <-s.ctx.Done():
			return 0
		}
	}
}

// readNew reads new entries (ID ">") and delivers them.
func (s *subscription) readNew(heartbeat <-chan time.Time) error {
	n := min(s.capacity(heartbeat), s.a.cfg.ReadCount)
	if n == 0 {
		return nil
	}
	var msgs []Message
	if s.a.cluster {
		// A cluster client follows MOVED and ASK only for the commands it
		// parses itself.
		res, err := s.a.rdb.XReadGroup(s.ctx, &goredis.XReadGroupArgs{
			Group: s.group, Consumer: s.member, Streams: []string{s.key, ">"}, Count: int64(n), Block: s.a.cfg.Block,
		}).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		for _, st := range res {
			msgs = append(msgs, s.scratch.addXMessages(s.topic, st.Messages)...)
		}
	} else {
		raw, err := s.raw(n, "xreadgroup", "group", s.group, s.member, "count", n,
			"block", s.a.block.Milliseconds(), "streams", s.key, ">")
		if err != nil {
			return err
		}
		if msgs, err = s.scratch.parseReadGroup(raw, s.topic); err != nil {
			return err
		}
		s.sized(len(raw), len(msgs))
	}
	for i := range msgs {
		if !s.deliver(&msgs[i], false, heartbeat) {
			return nil
		}
	}
	return nil
}

// raw sends a command that replies with up to n stream entries and returns
// its reply unparsed, in a buffer of its own (the messages parsed from it
// keep it).
func (s *subscription) raw(n int, args ...any) ([]byte, error) {
	w := &replyBuffer{}
	w.reserve(min(s.entrySize*min(n, 2*s.lastCount+16)+64, 8<<20))
	if err := s.a.rdb.Process(s.ctx, goredis.NewRawWriteToCmd(s.ctx, w, args...)); err != nil {
		return nil, err
	}
	b := w.b
	if cap(b) > 2*len(b)+4096 {
		b = append([]byte(nil), b...) // do not keep the unused part alive
	}
	return b, nil
}

// sized records that a reply of size bytes held n entries.
func (s *subscription) sized(size, n int) {
	s.lastCount = n
	if n > 0 {
		s.entrySize = size/n + 1
	}
}

// claim takes over the group's entries that were idle for ClaimIdle (their
// consumer died, or handed them back) and delivers them.
func (s *subscription) claim(heartbeat <-chan time.Time) error {
	start := "0-0"
	for s.ctx.Err() == nil {
		n := min(s.capacity(heartbeat), s.a.cfg.ReadCount)
		if n == 0 {
			return nil
		}
		var msgs []Message
		var next string
		var deleted []string
		if s.a.cluster {
			xs, nx, del, err := s.a.rdb.XAutoClaimWithDeleted(s.ctx, &goredis.XAutoClaimArgs{
				Stream: s.key, Group: s.group, Consumer: s.member, MinIdle: s.a.cfg.ClaimIdle, Start: start, Count: int64(n),
			}).Result()
			if err != nil {
				return err
			}
			msgs, next, deleted = s.scratch.addXMessages(s.topic, xs), nx, del
		} else {
			raw, err := s.raw(n, "xautoclaim", s.key, s.group, s.member,
				s.a.cfg.ClaimIdle.Milliseconds(), start, "count", n)
			if err != nil {
				return err
			}
			if msgs, next, deleted, err = s.scratch.parseAutoClaim(raw, s.topic); err != nil {
				return err
			}
		}
		if len(deleted) > 0 {
			s.a.log.Warn("redis: pending entries were deleted from the stream before the group acknowledged them (trimmed or XDEL); they are lost to the group",
				"topic", s.topic, "group", s.group, "entries", len(deleted), "first", deleted[0])
		}
		if len(msgs) > 0 {
			s.a.log.Info("redis: took over pending entries", "topic", s.topic, "group", s.group, "entries", len(msgs))
		}
		for i := range msgs {
			if !s.deliver(&msgs[i], true, heartbeat) {
				return nil
			}
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
	return nil
}

// deliver hands one entry to the channel; false when the subscription ended
// first (the entry stays pending with this consumer and is handed back).
func (s *subscription) deliver(m *Message, claimed bool, heartbeat <-chan time.Time) bool {
	s.mu.Lock()
	if _, dup := s.inflight[m.id]; dup {
		// Taken over from ourselves: it is still in flight here.
		s.mu.Unlock()
		return true
	}
	s.inflight[m.id] = struct{}{}
	s.mu.Unlock()
	m.redelivered = claimed
	m.sub = s
	select {
	case s.ch <- m:
		return true
	default:
	}
	for {
		select {
		case s.ch <- m:
			return true
		case <-heartbeat:
			s.refresh()
		case <-s.ctx.Done():
			s.mu.Lock()
			delete(s.inflight, m.id)
			s.mu.Unlock()
			return false
		}
	}
}

// refresh resets the idle time of the entries in flight (XCLAIM to this
// consumer, JUSTID, which does not count as a delivery), so that no sibling
// takes them over while they are being handled.
func (s *subscription) refresh() {
	s.mu.Lock()
	ids := make([]string, 0, len(s.inflight))
	for id := range s.inflight {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		args := make([]any, 0, 6+n)
		args = append(args, "xclaim", s.key, s.group, s.member, 0)
		for _, id := range ids[:n] {
			args = append(args, id)
		}
		args = append(args, "justid")
		if err := s.a.rdb.Do(s.ctx, args...).Err(); err != nil {
			if s.ctx.Err() == nil {
				s.a.log.Warn("redis: refreshing in-flight entries failed", "topic", s.topic, "group", s.group, "error", err)
			}
			return
		}
		ids = ids[n:]
	}
}

// shutdown runs when the reader stopped: it waits for the acker's last
// XACK, hands the entries still pending with this consumer back to the group
// and deletes the consumer once it has none.
func (s *subscription) shutdown() {
	s.stop()
	// Entries still in the channel's buffer are not delivered: they stay
	// pending here and are handed back below.
	for drained := false; !drained; {
		select {
		case m := <-s.ch:
			s.mu.Lock()
			delete(s.inflight, m.(*Message).id)
			s.mu.Unlock()
		default:
			drained = true
		}
	}
	<-s.ackDone
	ctx, cancel := context.WithTimeout(context.Background(), s.a.cfg.ShutdownTimeout)
	defer cancel()
	handed := 0
	for start := "-"; ; {
		pend, err := s.a.rdb.XPendingExt(ctx, &goredis.XPendingExtArgs{
			Stream: s.key, Group: s.group, Start: start, End: "+", Count: 1000, Consumer: s.member,
		}).Result()
		if err != nil {
			if !isNoGroup(err) {
				s.a.log.Warn("redis: handing pending entries back failed; other members take them over after ClaimIdle",
					"topic", s.topic, "group", s.group, "error", err)
			}
			return
		}
		if len(pend) == 0 {
			break
		}
		args := make([]any, 0, 8+len(pend))
		args = append(args, "xclaim", s.key, s.group, s.member, 0)
		for _, p := range pend {
			args = append(args, p.ID)
		}
		args = append(args, "idle", handBackIdle.Milliseconds(), "justid")
		if err := s.a.rdb.Do(ctx, args...).Err(); err != nil {
			s.a.log.Warn("redis: handing pending entries back failed; other members take them over after ClaimIdle",
				"topic", s.topic, "group", s.group, "error", err)
			return
		}
		handed += len(pend)
		if len(pend) < 1000 {
			break
		}
		start = "(" + pend[len(pend)-1].ID
	}
	if handed > 0 {
		s.a.log.Debug("redis: handed pending entries back to the group", "topic", s.topic, "group", s.group, "entries", handed)
		return // the consumer keeps them until a sibling claims them
	}
	if _, err := delConsumers.Run(ctx, s.a.rdb, []string{s.key}, s.group, 0, s.member, "").Result(); err != nil && !isNoGroup(err) {
		s.a.log.Debug("redis: deleting the consumer failed", "topic", s.topic, "group", s.group, "error", err)
	}
}

// sweepConsumers deletes the group's consumers that have no pending entries
// and were idle for ConsumerExpiry (left behind by processes that died).
func (s *subscription) sweepConsumers() {
	res, err := delConsumers.Run(s.ctx, s.a.rdb, []string{s.key}, s.group, s.a.cfg.ConsumerExpiry.Milliseconds(), "", s.member).Result()
	if err != nil {
		if s.ctx.Err() == nil && !isNoGroup(err) {
			s.a.log.Debug("redis: deleting idle consumers failed", "topic", s.topic, "group", s.group, "error", err)
		}
		return
	}
	if names, ok := res.([]any); ok && len(names) > 0 {
		s.a.log.Info("redis: deleted idle consumers without pending entries", "topic", s.topic, "group", s.group, "consumers", len(names))
	}
}

// delConsumers deletes, atomically with the check, the consumers of group
// ARGV[1] that have no pending entries and were idle for at least ARGV[2]
// ms; only ARGV[3] when it is not empty, never ARGV[4]. It returns the names
// deleted. Deleting a consumer with pending entries would discard them.
var delConsumers = goredis.NewScript(`
local deleted = {}
local cs = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
local minIdle = tonumber(ARGV[2])
for _, c in ipairs(cs) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local name = f['name']
  if (ARGV[3] == '' or name == ARGV[3]) and name ~= ARGV[4]
      and tonumber(f['pending']) == 0 and tonumber(f['idle']) >= minIdle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    deleted[#deleted + 1] = name
  end
end
return deleted
`)

func isNoGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGROUP")
}
