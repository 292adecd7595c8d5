package kafka

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file runs the classic consumer group protocol (eager rebalancing)
// for a subscription: FindCoordinator, JoinGroup, SyncGroup,
// Heartbeat, OffsetFetch, OffsetCommit and LeaveGroup, encoded with kmsg over
// connections of its own to the group coordinator.
//
// The rules it follows, all of them there to let a group recover from a dead
// member within about one session timeout:
//
//   - JoinGroup may be held by the coordinator until every member rejoined or
//     the rebalance timeout passed, and SyncGroup until the leader sent its
//     plan; the client waits longer than that (2×RebalanceTimeout +
//     SessionTimeout) instead of timing out and starting over.
//   - The member id is kept across failed joins; only UNKNOWN_MEMBER_ID
//     makes the member join as a new one.
//   - One heartbeat loop runs for the whole life of the subscription, on a
//     connection of its own: through a generation, while the partitions are
//     being given up and while the member is rejoining, so the coordinator
//     never expires a member that is merely busy rebalancing. A member that
//     was assigned nothing keeps heartbeating and so learns of the next
//     rebalance as fast as the others.

// errCutOff fails the requests of a connection after cutOff.
var errCutOff = errors.New("connection cut off")

// maxVersion is the highest version of request key this file encodes;
// lower ones are used when the broker supports no more.
func maxVersion(key int16) int16 {
	switch kmsg.Key(key) {
	case kmsg.OffsetCommit:
		return 10
	case kmsg.OffsetFetch, kmsg.JoinGroup:
		return 7
	case kmsg.SyncGroup:
		return 5
	case kmsg.Heartbeat, kmsg.LeaveGroup:
		return 4
	case kmsg.Fetch:
		return 11
	case kmsg.Produce:
		return 8 // topics by name (by id from 13); record errors from 8
	case kmsg.Metadata:
		return 12
	case kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return 1
	default: // ApiVersions
		return 0
	}
}

// brokerConn is a connection to one broker that carries one request at a
// time.
type brokerConn struct {
	addr string
	nc   net.Conn
	fmt  *kmsg.RequestFormatter

	mu       sync.Mutex
	versions map[int16][2]int16 // api key -> broker's min and max version
	corr     int32
	err      error // set once the connection failed; it is closed then

	broken atomic.Bool // err is set or close was called: read without waiting for mu
	cut    atomic.Bool // cutOff was called

	// expires is when the broker ends the connection's SASL session
	// (SessionLifetimeMillis, less a tenth), zero when it does not; set by
	// authenticate before the connection is used.
	expires time.Time

	// rbuf, when set, is where the next response is read if it fits (and
	// the buffer it was read into otherwise): set by a caller that is done
	// with the response before it gives the buffer to anyone else.
	rbuf *[]byte

	wbuf []byte // the last request, reused (under mu)
}

// dialBroker connects to addr with the adapter's TLS and SASL settings and
// learns which request versions the broker supports.
func (a *Adapter) dialBroker(ctx context.Context, addr string) (*brokerConn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	d := net.Dialer{}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: dial %s: %w", addr, err)
	}
	if a.cfg.TLS != nil {
		cfg := a.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("kafka: TLS handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	c := &brokerConn{addr: addr, nc: nc, fmt: kmsg.NewRequestFormatter(kmsg.FormatterClientID(a.cfg.ClientID))}
	if err := c.negotiate(ctx); err != nil {
		c.close()
		return nil, err
	}
	if a.sasl != nil {
		if err := c.authenticate(ctx, a.sasl); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *brokerConn) negotiate(ctx context.Context) error {
	resp, err := c.request(ctx, kmsg.NewPtrApiVersionsRequest())
	if err != nil {
		return err
	}
	av := resp.(*kmsg.ApiVersionsResponse)
	if av.ErrorCode != 0 {
		return fmt.Errorf("kafka: api versions of %s: %w", c.addr, kafkago.Error(av.ErrorCode))
	}
	versions := make(map[int16][2]int16, len(av.ApiKeys))
	for _, k := range av.ApiKeys {
		versions[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	c.mu.Lock()
	c.versions = versions
	c.mu.Unlock()
	return nil
}

func (c *brokerConn) authenticate(ctx context.Context, mech sasl.Mechanism) error {
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = mech.Name()
	resp, err := c.request(ctx, hs)
	if err != nil {
		return fmt.Errorf("kafka: SASL handshake with %s: %w", c.addr, err)
	}
	if code := resp.(*kmsg.SASLHandshakeResponse).ErrorCode; code != 0 {
		return fmt.Errorf("kafka: SASL handshake with %s: %w", c.addr, kafkago.Error(code))
	}
	host, port, _ := net.SplitHostPort(c.addr)
	p, _ := strconv.Atoi(port)
	ctx = sasl.WithMetadata(ctx, &sasl.Metadata{Host: host, Port: p})
	sess, state, err := mech.Start(ctx)
	if err != nil {
		return fmt.Errorf("kafka: SASL with %s: %w", c.addr, err)
	}
	for done := false; !done; {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.SASLAuthBytes = state
		resp, err := c.request(ctx, req)
		if err != nil {
			return fmt.Errorf("kafka: SASL authenticate with %s: %w", c.addr, err)
		}
		r := resp.(*kmsg.SASLAuthenticateResponse)
		if r.ErrorCode != 0 {
			return fmt.Errorf("kafka: SASL authenticate with %s: %w", c.addr, kafkago.Error(r.ErrorCode))
		}
		if r.SessionLifetimeMillis > 0 {
			c.expires = time.Now().Add(time.Duration(r.SessionLifetimeMillis) * time.Millisecond * 9 / 10)
		}
		if done, state, err = sess.Next(ctx, r.SASLAuthBytes); err != nil {
			return fmt.Errorf("kafka: SASL with %s: %w", c.addr, err)
		}
	}
	return nil
}

// request sends req at the highest version both sides support and reads the
// response. When ctx ends first, the connection is closed and ctx's error
// returned. Any I/O error closes the connection for good.
func (c *brokerConn) request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	return c.requestUpTo(ctx, req, maxVersion(req.Key()))
}

// version returns the version request would send a request of key at;
// -1 when the broker supports none.
func (c *brokerConn) version(key int16) int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := maxVersion(key)
	if c.versions != nil {
		r, ok := c.versions[key]
		if !ok || r[0] > v {
			return -1
		}
		v = min(v, r[1])
	}
	return v
}

// requestUpTo is request with version v at most.
func (c *brokerConn) requestUpTo(ctx context.Context, req kmsg.Request, v int16) (kmsg.Response, error) {
	return c.exchange(ctx, time.Time{}, req, v, true)
}

// requestBy is request with a deadline instead of a context, which saves a
// context's allocations per request: for a caller that calls cutOff when it
// must stop waiting. With answered false it only writes req: for a
// produce request with acks 0, which the broker does not answer.
func (c *brokerConn) requestBy(deadline time.Time, req kmsg.Request, answered bool) (kmsg.Response, error) {
	return c.exchange(context.Background(), deadline, req, maxVersion(req.Key()), answered)
}

// cutOff makes the request requestBy waits for, and every later one, fail
// at once.
func (c *brokerConn) cutOff() {
	c.cut.Store(true)
	_ = c.nc.SetDeadline(time.Unix(1, 0))
}

// exchange writes req at version v at most and, if answered, reads its
// response, until ctx ends or, with a ctx that never ends, until
// deadline.
func (c *brokerConn) exchange(ctx context.Context, deadline time.Time, req kmsg.Request, v int16, answered bool) (kmsg.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	key := req.Key()
	if c.versions != nil {
		r, ok := c.versions[key]
		if !ok || r[0] > v {
			return nil, fmt.Errorf("kafka: broker %s does not support request %s at version %d or below: %w",
				c.addr, kmsg.NameForKey(key), v, kafkago.UnsupportedVersion)
		}
		v = min(v, r[1])
	}
	req.SetVersion(v)
	c.corr++
	corr := c.corr
	c.wbuf = c.fmt.AppendRequest(c.wbuf[:0], req, corr)
	buf := c.wbuf
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil // not kept after a large request
	}

	stop := func() bool { return true }
	if ctx.Done() != nil {
		deadline, _ = ctx.Deadline() // zero: none
		_ = c.nc.SetDeadline(deadline)
		stop = context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	} else {
		_ = c.nc.SetDeadline(deadline)
	}
	var body []byte
	var err error
	switch {
	case c.cut.Load(): // after SetDeadline: a cutOff since then fails the I/O
		err = errCutOff
	case answered:
		body, err = c.roundTrip(buf)
	default:
		_, err = c.nc.Write(buf)
	}
	if !stop() && err == nil {
		// ctx ended just as the response came: the connection's deadline
		// is in the past now, so it cannot be used again.
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.err = fmt.Errorf("kafka: connection to %s: %w", c.addr, err)
		c.broken.Store(true)
		_ = c.nc.Close()
		return nil, fmt.Errorf("kafka: %s to %s: %w", kmsg.NameForKey(key), c.addr, err)
	}
	if !answered {
		return nil, nil
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		c.err = fmt.Errorf("kafka: connection to %s: response %d to request %d", c.addr, got, corr)
		c.broken.Store(true)
		_ = c.nc.Close()
		return nil, c.err
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(v)
	if resp.IsFlexible() && key != int16(kmsg.ApiVersions) {
		if body, err = skipTags(body); err != nil {
			return nil, fmt.Errorf("kafka: %s response from %s: %w", kmsg.NameForKey(key), c.addr, err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("kafka: %s response from %s: %w", kmsg.NameForKey(key), c.addr, err)
	}
	return resp, nil
}

// roundTrip writes one framed request and returns the response frame
// without its length.
func (c *brokerConn) roundTrip(req []byte) ([]byte, error) {
	if _, err := c.nc.Write(req); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	// Group responses are small; a fetch response (read into rbuf) is as
	// large as the broker makes it: FetchMaxBytes, or one whole record batch
	// above that, which the topic's max.message.bytes bounds.
	limit := uint32(64 << 20)
	if c.rbuf != nil {
		limit = math.MaxInt32
	}
	if n < 4 || n > limit {
		return nil, fmt.Errorf("response size %d out of range", n)
	}
	var body []byte
	switch {
	case c.rbuf != nil && cap(*c.rbuf) >= int(n):
		body = (*c.rbuf)[:n]
	case c.rbuf != nil:
		body = make([]byte, n)
		*c.rbuf = body
	default:
		body = make([]byte, n)
	}
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return nil, err
	}
	return body, nil
}

// skipTags skips the tagged fields of a flexible response header.
func skipTags(b []byte) ([]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, errors.New("bad tagged fields")
	}
	b = b[w:]
	for range n {
		if _, w = binary.Uvarint(b); w <= 0 {
			return nil, errors.New("bad tagged fields")
		}
		b = b[w:]
		size, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < size {
			return nil, errors.New("bad tagged fields")
		}
		b = b[w+int(size):]
	}
	return b, nil
}

// close closes the connection at once, without waiting for a request in
// flight (which then fails): a held JoinGroup must not keep the member from
// following a moving coordinator.
func (c *brokerConn) close() {
	c.broken.Store(true)
	_ = c.nc.Close()
	c.mu.Lock()
	if c.err == nil {
		c.err = fmt.Errorf("kafka: connection to %s closed", c.addr)
	}
	c.mu.Unlock()
}

// failed reports whether the connection can no longer be used.
func (c *brokerConn) failed() bool { return c.broken.Load() }

// groupMember is one subscription's membership of its consumer group.
type groupMember struct {
	a     *Adapter
	group string
	topic string
	log   *slog.Logger

	mu       sync.Mutex
	coord    string      // coordinator address; "" when unknown
	ctrl     *brokerConn // join, sync, offsets, leave
	hb       *brokerConn // heartbeats only, so a held join does not block them
	meta     *brokerConn // the topic watcher's metadata requests
	memberID string
	genID    int32              // last generation joined; -1 before
	lost     context.CancelFunc // ends the current generation; nil between generations
}

func newGroupMember(a *Adapter, group, topic string, log *slog.Logger) *groupMember {
	return &groupMember{a: a, group: group, topic: topic, log: log, genID: -1}
}

// memberGen is what a successful join returns.
type memberGen struct {
	id         int32
	memberID   string
	partitions []int
}

// conn returns the connection in *slot to the coordinator, connecting (and
// looking the coordinator up) when there is none or it failed.
func (m *groupMember) conn(ctx context.Context, slot **brokerConn) (*brokerConn, error) {
	m.mu.Lock()
	c, addr := *slot, m.coord
	m.mu.Unlock()
	if c != nil && !c.failed() {
		return c, nil
	}
	if addr == "" {
		fctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
		resp, err := m.a.client.FindCoordinator(fctx, &kafkago.FindCoordinatorRequest{Key: m.group})
		cancel()
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if err != nil {
			return nil, fmt.Errorf("kafka: find coordinator of group %q: %w", m.group, err)
		}
		addr = net.JoinHostPort(resp.Coordinator.Host, strconv.Itoa(resp.Coordinator.Port))
	}
	c, err := m.a.dialBroker(ctx, addr)
	if err != nil {
		m.resetCoordinator()
		return nil, fmt.Errorf("kafka: connect to the coordinator of group %q: %w", m.group, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := *slot; old != nil && !old.failed() {
		// Another goroutine connected meanwhile.
		c.close()
		return old, nil
	}
	m.coord = addr
	*slot = c
	return c, nil
}

// resetCoordinator drops both connections; the next request looks the
// coordinator up again.
func (m *groupMember) resetCoordinator() {
	m.mu.Lock()
	ctrl, hb, meta := m.ctrl, m.hb, m.meta
	m.coord, m.ctrl, m.hb, m.meta = "", nil, nil, nil
	m.mu.Unlock()
	for _, c := range []*brokerConn{ctrl, hb, meta} {
		if c != nil {
			c.close()
		}
	}
}

// coordinatorError reports whether code means the coordinator moved or is
// not ready, and forgets the coordinator if so.
func (m *groupMember) coordinatorError(code kafkago.Error) bool {
	switch code {
	case kafkago.NotCoordinatorForGroup, kafkago.GroupCoordinatorNotAvailable:
		m.resetCoordinator()
		return true
	}
	return false
}

func (m *groupMember) setMemberID(id string) {
	m.mu.Lock()
	m.memberID = id
	m.mu.Unlock()
}

// join runs JoinGroup and SyncGroup until the member is in a generation. It
// returns an error (after which the caller backs off) for failures that an
// immediate retry would repeat.
func (m *groupMember) join(ctx context.Context) (memberGen, error) {
	cfg := &m.a.cfg
	meta := (&kmsg.ConsumerMemberMetadata{Version: 0, Topics: []string{m.topic}}).AppendTo(nil)
	for {
		if err := ctx.Err(); err != nil {
			return memberGen{}, err
		}
		c, err := m.conn(ctx, &m.ctrl)
		if err != nil {
			return memberGen{}, err
		}
		m.mu.Lock()
		memberID := m.memberID
		m.mu.Unlock()

		jreq := kmsg.NewPtrJoinGroupRequest()
		jreq.Group = m.group
		jreq.SessionTimeoutMillis = millis(cfg.SessionTimeout)
		jreq.RebalanceTimeoutMillis = millis(cfg.RebalanceTimeout)
		jreq.MemberID = memberID
		jreq.ProtocolType = "consumer"
		for _, name := range []string{"range", "roundrobin"} {
			p := kmsg.NewJoinGroupRequestProtocol()
			p.Name, p.Metadata = name, meta
			jreq.Protocols = append(jreq.Protocols, p)
		}
		// The coordinator may hold the join for up to a rebalance timeout
		// (twice when a rebalance starts over while this one waits), and
		// expire members for a session timeout on top.
		jctx, cancel := context.WithTimeout(ctx, 2*cfg.RebalanceTimeout+cfg.SessionTimeout)
		resp, err := c.request(jctx, jreq)
		cancel()
		if err != nil {
			return memberGen{}, err
		}
		jresp := resp.(*kmsg.JoinGroupResponse)
		switch code := kafkago.Error(jresp.ErrorCode); {
		case code == 0:
		case code == kafkago.MemberIDRequired:
			m.setMemberID(jresp.MemberID)
			continue
		case code == kafkago.UnknownMemberId:
			m.log.Info("kafka: consumer group forgot this member; joining as a new one", "member", memberID)
			m.setMemberID("")
			continue
		case m.coordinatorError(code):
			return memberGen{}, fmt.Errorf("kafka: join group %q: %w", m.group, code)
		default:
			return memberGen{}, fmt.Errorf("kafka: join group %q: %w", m.group, code)
		}
		m.setMemberID(jresp.MemberID)

		sreq := kmsg.NewPtrSyncGroupRequest()
		sreq.Group = m.group
		sreq.Generation = jresp.Generation
		sreq.MemberID = jresp.MemberID
		sreq.ProtocolType = kmsg.StringPtr("consumer")
		sreq.Protocol = jresp.Protocol
		if jresp.LeaderID == jresp.MemberID {
			plan, err := m.assign(ctx, jresp)
			if err != nil {
				return memberGen{}, err
			}
			sreq.GroupAssignment = plan
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.RebalanceTimeout+cfg.SessionTimeout)
		resp, err = c.request(sctx, sreq)
		cancel()
		if err != nil {
			return memberGen{}, err
		}
		sresp := resp.(*kmsg.SyncGroupResponse)
		switch code := kafkago.Error(sresp.ErrorCode); {
		case code == 0:
		case code == kafkago.RebalanceInProgress || code == kafkago.IllegalGeneration:
			continue // another rebalance started: rejoin with the same id
		case code == kafkago.UnknownMemberId:
			m.setMemberID("")
			continue
		case m.coordinatorError(code):
			return memberGen{}, fmt.Errorf("kafka: sync group %q: %w", m.group, code)
		default:
			return memberGen{}, fmt.Errorf("kafka: sync group %q: %w", m.group, code)
		}
		var asg kmsg.ConsumerMemberAssignment
		if len(sresp.MemberAssignment) > 0 {
			if err := asg.ReadFrom(sresp.MemberAssignment); err != nil {
				return memberGen{}, fmt.Errorf("kafka: sync group %q: decoding the assignment: %w", m.group, err)
			}
		}
		g := memberGen{id: jresp.Generation, memberID: jresp.MemberID}
		for _, t := range asg.Topics {
			if t.Topic != m.topic {
				continue
			}
			for _, p := range t.Partitions {
				g.partitions = append(g.partitions, int(p))
			}
		}
		slices.Sort(g.partitions)
		return g, nil
	}
}

// assign computes the leader's plan with the protocol the coordinator
// chose. A member that cannot be given anything gets an empty assignment.
func (m *groupMember) assign(ctx context.Context, jresp *kmsg.JoinGroupResponse) ([]kmsg.SyncGroupRequestGroupAssignment, error) {
	var balancer kafkago.GroupBalancer
	switch name := derefString(jresp.Protocol); name {
	case "range":
		balancer = kafkago.RangeGroupBalancer{}
	case "roundrobin":
		balancer = kafkago.RoundRobinGroupBalancer{}
	default:
		return nil, fmt.Errorf("kafka: group %q chose assignment protocol %q, which this adapter does not implement", m.group, name)
	}
	members := make([]kafkago.GroupMember, 0, len(jresp.Members))
	topics := make(map[string]bool)
	for _, jm := range jresp.Members {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(jm.ProtocolMetadata); err != nil {
			return nil, fmt.Errorf("kafka: group %q: metadata of member %s: %w", m.group, jm.MemberID, err)
		}
		members = append(members, kafkago.GroupMember{ID: jm.MemberID, Topics: md.Topics, UserData: md.UserData})
		for _, t := range md.Topics {
			topics[t] = true
		}
	}
	var partitions []kafkago.Partition
	for t := range topics {
		m.a.forgetTopic(t)                       // assign what the topic has now
		n, err := m.a.existingPartitions(ctx, t) // never re-create a deleted topic
		if err != nil {
			if t == m.topic {
				return nil, fmt.Errorf("kafka: group %q: assigning partitions: %w", m.group, err)
			}
			m.log.Warn("kafka: a member of the group subscribes to a topic that cannot be assigned", "other_topic", t, "error", err)
			continue
		}
		for p := range n {
			partitions = append(partitions, kafkago.Partition{Topic: t, ID: p})
		}
	}
	plan := balancer.AssignGroups(members, partitions)
	out := make([]kmsg.SyncGroupRequestGroupAssignment, 0, len(members))
	for _, gm := range members {
		asg := kmsg.ConsumerMemberAssignment{Version: 0}
		for t, ps := range plan[gm.ID] {
			at := kmsg.ConsumerMemberAssignmentTopic{Topic: t}
			for _, p := range ps {
				at.Partitions = append(at.Partitions, int32(p))
			}
			slices.Sort(at.Partitions)
			asg.Topics = append(asg.Topics, at)
		}
		slices.SortFunc(asg.Topics, func(a, b kmsg.ConsumerMemberAssignmentTopic) int {
			return cmp.Compare(a.Topic, b.Topic)
		})
		sa := kmsg.NewSyncGroupRequestGroupAssignment()
		sa.MemberID = gm.ID
		sa.MemberAssignment = asg.AppendTo(nil)
		out = append(out, sa)
	}
	return out, nil
}

// enter makes gen the current generation; lost ends it.
func (m *groupMember) enter(gen memberGen, lost context.CancelFunc) {
	m.mu.Lock()
	m.genID, m.memberID, m.lost = gen.id, gen.memberID, lost
	m.mu.Unlock()
}

// exit marks the end of the current generation.
func (m *groupMember) exit() {
	m.mu.Lock()
	m.lost = nil
	m.mu.Unlock()
}

// heartbeatLoop heartbeats every HeartbeatInterval until ctx is done,
// whether the member is in a generation, revoking or rejoining, and ends
// the current generation when the coordinator says a rebalance started or
// the member is no longer part of it.
func (m *groupMember) heartbeatLoop(ctx context.Context) {
	cfg := &m.a.cfg
	t := time.NewTicker(cfg.HeartbeatInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		memberID, gen := m.memberID, m.genID
		m.mu.Unlock()
		if memberID == "" {
			continue // not known to the coordinator yet
		}
		err := m.heartbeat(ctx, memberID, gen)
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		var code kafkago.Error
		switch {
		case errors.As(err, &code) && (code == kafkago.RebalanceInProgress || code == kafkago.IllegalGeneration ||
			code == kafkago.UnknownMemberId || code == kafkago.FencedInstanceID):
			m.mu.Lock()
			lost := m.lost
			if m.genID != gen {
				lost = nil // a newer generation started meanwhile
			}
			m.mu.Unlock()
			if lost != nil {
				m.log.Info("kafka: consumer group is rebalancing; giving up the partitions", "generation", gen, "reason", code.Error())
				lost()
			}
		default:
			failures++
			if failures == 1 || failures%20 == 0 {
				m.log.Warn("kafka: heartbeat failed, retrying", "error", err, "attempt", failures)
			}
		}
	}
}

func (m *groupMember) heartbeat(ctx context.Context, memberID string, gen int32) error {
	ctx, cancel := context.WithTimeout(ctx, m.a.cfg.SessionTimeout)
	defer cancel()
	c, err := m.conn(ctx, &m.hb)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.Generation, req.MemberID = m.group, gen, memberID
	resp, err := c.request(ctx, req)
	if err != nil {
		return err
	}
	code := kafkago.Error(resp.(*kmsg.HeartbeatResponse).ErrorCode)
	if code == 0 {
		return nil
	}
	m.coordinatorError(code)
	return fmt.Errorf("kafka: heartbeat of group %q: %w", m.group, code)
}

// requestTimeout bounds offset requests and LeaveGroup (the coordinator
// answers them at once).
func (m *groupMember) requestTimeout() time.Duration {
	return m.a.cfg.DialTimeout + m.a.cfg.SessionTimeout
}

// fetchOffsets returns the committed offset of each partition, or the
// configured start offset (kafka-go's FirstOffset or LastOffset) where there
// is none. It retries until ctx is done.
func (m *groupMember) fetchOffsets(ctx context.Context, partitions []int) (map[int]int64, error) {
	out := make(map[int]int64, len(partitions))
	if len(partitions) == 0 {
		return out, nil
	}
	for attempt := 1; ; attempt++ {
		err := m.tryFetchOffsets(ctx, partitions, out)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt == 1 || attempt%20 == 0 {
			m.log.Warn("kafka: fetching committed offsets failed, retrying", "error", err, "attempt", attempt)
		}
		if err := sleepCtx(ctx, backoff(attempt)); err != nil {
			return nil, err
		}
	}
}

func (m *groupMember) tryFetchOffsets(ctx context.Context, partitions []int, out map[int]int64) error {
	c, err := m.conn(ctx, &m.ctrl)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = m.group
	req.RequireStable = true
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = m.topic
	for _, p := range partitions {
		rt.Partitions = append(rt.Partitions, int32(p))
	}
	req.Topics = append(req.Topics, rt)
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	resp, err := c.request(rctx, req)
	if err != nil {
		return err
	}
	r := resp.(*kmsg.OffsetFetchResponse)
	if code := kafkago.Error(r.ErrorCode); code != 0 {
		m.coordinatorError(code)
		return fmt.Errorf("kafka: offset fetch of group %q: %w", m.group, code)
	}
	for _, t := range r.Topics {
		if t.Topic != m.topic {
			continue
		}
		for _, p := range t.Partitions {
			if code := kafkago.Error(p.ErrorCode); code != 0 {
				m.coordinatorError(code)
				return fmt.Errorf("kafka: offset fetch of group %q, partition %d: %w", m.group, p.Partition, code)
			}
			out[int(p.Partition)] = p.Offset
		}
	}
	for _, p := range partitions {
		if off, ok := out[p]; !ok || off < 0 {
			out[p] = m.a.cfg.kafkaStartOffset()
		}
	}
	return nil
}

// commit commits offsets of the member's topic under generation gen. The
// first failing partition's error is returned, as a kafkago.Error when the
// broker sent a code.
// When the coordinator takes commits naming the topic by its id
// (OffsetCommit v10, Kafka 4.1 and later) and topicID is known, the commit
// names it so: the broker then refuses it (UNKNOWN_TOPIC_ID) if the topic
// was deleted, even if it was created again under the same name. Otherwise
// the commit names the topic, and byName is asked first: when it returns
// false the commit is not sent and errCommitSkipped returned.
func (m *groupMember) commit(gen int32, memberID string, offsets map[int]int64, topicID [16]byte, byName func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), m.requestTimeout())
	defer cancel()
	c, err := m.conn(ctx, &m.ctrl)
	if err != nil {
		return err
	}
	v := c.version(int16(kmsg.OffsetCommit))
	if topicID == ([16]byte{}) || v < 10 {
		v = 9
		if !byName() {
			return errCommitSkipped
		}
	}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = m.group
	req.Generation = gen
	req.MemberID = memberID
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = m.topic
	rt.TopicID = topicID // sent at v10 only
	for p, off := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = int32(p), off
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := c.requestUpTo(ctx, req, v)
	if err != nil {
		return err
	}
	for _, t := range resp.(*kmsg.OffsetCommitResponse).Topics {
		for _, p := range t.Partitions {
			if code := kafkago.Error(p.ErrorCode); code != 0 {
				m.coordinatorError(code)
				return fmt.Errorf("kafka: commit of group %q, partition %d: %w", m.group, p.Partition, code)
			}
		}
	}
	return nil
}

// errCommitSkipped is returned by groupMember.commit when its byName check
// said not to commit.
var errCommitSkipped = errors.New("kafka: commit skipped")

// leave leaves the group, so its partitions move at once instead of after
// the session timeout, and closes the connections.
func (m *groupMember) leave() {
	defer m.resetCoordinator()
	m.mu.Lock()
	memberID := m.memberID
	m.mu.Unlock()
	if memberID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.a.cfg.DialTimeout)
	defer cancel()
	c, err := m.conn(ctx, &m.ctrl)
	if err == nil {
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group, req.MemberID = m.group, memberID
		lm := kmsg.NewLeaveGroupRequestMember()
		lm.MemberID = memberID
		req.Members = append(req.Members, lm)
		var resp kmsg.Response
		if resp, err = c.request(ctx, req); err == nil {
			// UNKNOWN_MEMBER_ID: the coordinator no longer knows the
			// member (expired, or it never completed a join); nothing to
			// leave.
			if code := kafkago.Error(resp.(*kmsg.LeaveGroupResponse).ErrorCode); code != 0 && code != kafkago.UnknownMemberId {
				err = code
			}
		}
	}
	if err != nil {
		m.log.Warn("kafka: leaving the consumer group failed; its partitions move after the session timeout", "error", err)
	}
}

// topicState asks a broker (the coordinator, on a connection of its own)
// for the metadata of the member's topic, never creating it. exists is
// false when the broker answered UNKNOWN_TOPIC_OR_PARTITION; id is the
// topic's id (zero when the broker does not tell, before Kafka 2.8).
func (m *groupMember) topicState(ctx context.Context) (id [16]byte, exists bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, m.requestTimeout())
	defer cancel()
	c, err := m.conn(rctx, &m.meta)
	if err != nil {
		return id, false, err
	}
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(m.topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := c.request(rctx, req)
	if err != nil {
		return id, false, err
	}
	for _, t := range resp.(*kmsg.MetadataResponse).Topics {
		if derefString(t.Topic) != m.topic {
			continue
		}
		switch code := kafkago.Error(t.ErrorCode); code {
		case 0:
			return t.TopicID, true, nil
		case kafkago.UnknownTopicOrPartition:
			return id, false, nil
		default:
			return id, false, fmt.Errorf("kafka: metadata for topic %q: %w", m.topic, code)
		}
	}
	return id, false, fmt.Errorf("kafka: metadata for topic %q: not in the response", m.topic)
}

func millis(d time.Duration) int32 { return int32(d / time.Millisecond) }

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
