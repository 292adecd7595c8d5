package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eventstream-go/eventstream"
	esnats "github.com/eventstream-go/eventstream/adapters/nats"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the NATS peers, as they appear in the report.
const (
	PeerBusNATS     = "eventstream (bus over adapters/nats)"
	PeerAdapterNATS = "adapters/nats alone (no bus)"
	PeerNATSGo      = "nats.go jetstream (raw)"
	// PeerNATSGoBusRecords is the raw nats.go consumer draining the bus's
	// own records (their two native headers included): consumption only.
	PeerNATSGoBusRecords = "nats.go jetstream on the bus's records"
	PeerWatermillNATS    = "Watermill-nats JetStream"
)

// NATSPeer is a NATS JetStream client under test.
type NATSPeer struct {
	Name string
	// Config says how the peer is configured, for the report.
	Config      string
	newProducer func(env *NATSEnv, topic string) (kProducer, error)
	// newConsumer joins every group of groups on topic, each with one
	// member; see KafkaPeer.
	newConsumer func(env *NATSEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error)
	// preload writes n messages of size bytes to topic in the format this
	// peer's consumer expects.
	preload func(env *NATSEnv, topic string, n, size int) error
	// Drains: see KafkaPeer.
	Drains string
}

// NATSPeers returns the NATS peers, eventstream first.
func NATSPeers() []NATSPeer {
	return []NATSPeer{
		{
			Name: PeerBusNATS,
			Config: "DefaultDistributedConfig, RawSerializer ([]byte payload in a CloudEvents envelope), adapter defaults " +
				"(file storage, async publish waiting for each JetStream ack, MaxInFlight 512 per subscription, and MaxInFlightBytes 64 MiB on servers 2.11+ (so not on this one), pulling once 256 are free, fire-and-forget acks)",
			newProducer: natsBusProducer,
			newConsumer: natsBusConsumer,
			preload:     natsBusPreload,
		},
		{
			Name:        PeerAdapterNATS,
			Config:      "nats.Adapter defaults; Publish, Subscribe + Ack (shows what the bus adds)",
			newProducer: natsAdapterProducer,
			newConsumer: natsAdapterConsumer,
			preload:     natsAdapterPreload,
		},
		{
			Name: PeerNATSGo,
			Config: "jetstream.New defaults: PublishMsgAsync, then wait for that message's PubAckFuture (4000 in flight at most); " +
				"durable pull consumer (AckExplicit, DeliverAll) read with Consume (PullMaxMessages 500) and m.Ack() after the handler",
			newProducer: natsRawProducer,
			newConsumer: natsRawConsumer,
			preload:     natsRawPreload,
		},
		{
			Name: PeerNATSGoBusRecords,
			Config: "the raw nats.go consumer above draining the bus's own records (structured CloudEvents as the bus " +
				"writes them to NATS: the envelope as the payload, no headers; preloaded by the bus peer); consumption only",
			newConsumer: natsRawConsumerOfBus,
			preload:     natsBusPreload,
			Drains:      PeerBusNATS,
		},
		{
			Name: PeerWatermillNATS,
			Config: "watermill-nats/v2 pkg/jetstream: Publisher (synchronous PublishMsg per message); Subscriber with a named " +
				"consumer per group (AckExplicit), message Ack after handling (one message in flight per subscription)",
			newProducer: natsWatermillProducer,
			newConsumer: natsWatermillConsumer,
			preload:     natsWatermillPreload,
		},
	}
}

// NATSServer is a nats-server process with JetStream (file storage) on a
// free loopback port.
type NATSServer struct {
	URL  string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
	// Version is the server's version line.
	Version string
}

// StartNATSServer starts the nats-server binary found in PATH (the Debian
// package nats-server) with JetStream and a temporary store directory.
func StartNATSServer() (*NATSServer, error) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		return nil, fmt.Errorf("nats-server not installed (scripts/install-brokers installs it): %w", err)
	}
	ver, _ := exec.Command(bin, "--version").Output()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "bench-nats-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", dir)
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &NATSServer{URL: "nats://" + addr, cmd: cmd, dir: dir, done: make(chan struct{}), Version: strings.TrimSpace(string(ver))}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := natsgo.Connect(s.URL, natsgo.Timeout(time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				return s, nil
			}
		}
		select {
		case <-s.done:
			_ = os.RemoveAll(dir)
			return nil, errors.New("nats-server exited during startup")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Close()
			return nil, fmt.Errorf("nats-server not ready within 20s: %v", err)
		}
	}
}

// Pid is the server's process id.
func (s *NATSServer) Pid() int { return s.cmd.Process.Pid }

// Close stops the server and removes its store.
func (s *NATSServer) Close() error {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return os.RemoveAll(s.dir)
}

// NATSEnv is the server every NATS peer of a run talks to.
type NATSEnv struct {
	URL string
	// ServerPid is the server's process id when it runs on this machine,
	// so that its CPU time can be measured; 0 otherwise.
	ServerPid int
	nc        *natsgo.Conn
	js        jetstream.JetStream
	seq       atomic.Int64
	run       string
}

// NewNATSEnv connects the run's admin connection to url.
func NewNATSEnv(url string) (*NATSEnv, error) {
	nc, err := natsgo.Connect(url)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &NATSEnv{URL: url, nc: nc, js: js, run: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}, nil
}

// Close closes the admin connection.
func (e *NATSEnv) Close() { e.nc.Close() }

// Name returns a name unique to this run, usable as a stream, consumer and
// subject name.
func (e *NATSEnv) Name(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", natsName(prefix), e.run, e.seq.Add(1))
}

// NewTopic returns a new topic name and creates the stream the raw and
// Watermill peers use for it (named as the topic, with the topic as its
// subject; file storage, limits retention). The eventstream peers create
// their own stream (ES_<topic>) on first use.
func (e *NATSEnv) NewTopic(prefix string) (string, error) {
	name := e.Name(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name}, Storage: jetstream.FileStorage})
	return name, err
}

func natsName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > 40 {
		out = out[:40]
	}
	return out
}

// NATSProduce publishes sc.Events messages of sc.Payload bytes to a new
// topic from sc.Producers goroutines, each waiting for the JetStream
// acknowledgement of one message before sending the next.
func NATSProduce(env *NATSEnv, p NATSPeer, sc Scenario) (Sample, error) {
	if p.newProducer == nil {
		return Sample{}, na("consumption only")
	}
	topic, err := env.NewTopic(p.Name + "-produce")
	if err != nil {
		return Sample{}, err
	}
	prod, err := p.newProducer(env, topic)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	defer prod.close()
	s, err := timedProduce(prod, sc, env.ServerPid)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// NATSPreload creates a topic holding n messages of size bytes written in
// the format p consumes, and returns its name.
func NATSPreload(env *NATSEnv, p NATSPeer, n, size int) (string, error) {
	topic, err := env.NewTopic(p.Name + "-consume")
	if err != nil {
		return "", err
	}
	if err := p.preload(env, topic, n, size); err != nil {
		return "", fmt.Errorf("%s: preloading %s: %w", p.Name, topic, err)
	}
	return topic, nil
}

// NATSConsume measures how fast sc.Groups new groups drain topic, made by
// NATSPreload with sc.Events messages, less the time to join and receive
// one message (measured on joinTopic, reported as Startup); see
// KafkaConsume.
func NATSConsume(env *NATSEnv, p NATSPeer, topic, joinTopic string, sc Scenario) (Sample, error) {
	join, err := natsConsumeOnce(env, p, joinTopic, sc, 1)
	if err != nil {
		return Sample{}, fmt.Errorf("join baseline: %w", err)
	}
	full, err := natsConsumeOnce(env, p, topic, sc, sc.Events)
	if err != nil {
		return Sample{}, err
	}
	return lessJoin(full, join), nil
}

func natsConsumeOnce(env *NATSEnv, p NATSPeer, topic string, sc Scenario, n int) (Sample, error) {
	names := make([]string, sc.Groups)
	for i := range names {
		names[i] = env.Name("g")
	}
	s, err := timedConsume(func(on func()) (kConsumer, error) {
		return p.newConsumer(env, topic, names, sc.Concurrency, on)
	}, n, sc.Groups, env.ServerPid, sc.window)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// --- eventstream ---

func newNATSAdapter(env *NATSEnv) (*esnats.Adapter, error) {
	return esnats.NewAdapter(esnats.Config{URL: env.URL, Logger: quiet})
}

// adapter opens a new adapters/nats adapter on env's server.
func (env *NATSEnv) adapter() (eventstream.MQAdapter, error) { return newNATSAdapter(env) }

func natsBusProducer(env *NATSEnv, topic string) (kProducer, error) {
	return busProducerOver(env.adapter, false, topic)
}

func natsBusConsumer(env *NATSEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return busConsumerOver(env.adapter, false, topic, groups, concurrency, on)
}

// natsRawConsumerOfBus is natsRawConsumer on the stream adapters/nats
// keeps topic's messages in.
func natsRawConsumerOfBus(env *NATSEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	ad, err := newNATSAdapter(env)
	if err != nil {
		return kConsumer{}, err
	}
	stream := ad.StreamName(topic)
	if err := ad.Close(); err != nil {
		return kConsumer{}, err
	}
	return natsRawConsumer(env, stream, groups, concurrency, on)
}

func natsBusPreload(env *NATSEnv, topic string, n, size int) error {
	return natsPreloadWith(env, topic, n, size, natsBusProducer)
}

func natsPreloadWith(env *NATSEnv, topic string, n, size int, newProducer func(*NATSEnv, string) (kProducer, error)) error {
	return preloadWith(func() (kProducer, error) { return newProducer(env, topic) }, n, size)
}

func natsAdapterProducer(env *NATSEnv, topic string) (kProducer, error) {
	return adapterProducerOver(env.adapter, topic)
}

func natsAdapterConsumer(env *NATSEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return adapterConsumerOver(env.adapter, topic, groups, concurrency, on)
}

func natsAdapterPreload(env *NATSEnv, topic string, n, size int) error {
	return natsPreloadWith(env, topic, n, size, natsAdapterProducer)
}
