package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/rabbitmq"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Names of the RabbitMQ peers, as they appear in the report.
const (
	PeerBusRabbit       = "eventstream (bus over adapters/rabbitmq)"
	PeerAdapterRabbit   = "adapters/rabbitmq alone (no bus)"
	PeerAmqp091         = "amqp091-go (pipelined confirms)"
	PeerWatermillRabbit = "Watermill-amqp"
)

// RabbitPrefetch is the prefetch of every RabbitMQ consumer in the
// benchmarks (the adapter's default).
const RabbitPrefetch = 256

// RabbitEnv is the RabbitMQ broker of the benchmarks.
type RabbitEnv struct {
	// URL is the AMQP URI of the broker.
	URL string
	// BrokerPid is the broker's process id for CPU accounting; 0 when
	// unknown.
	BrokerPid int
	seq       atomic.Int64
	admin     *amqp.Connection
	mu        sync.Mutex
}

// NewRabbitEnv connects to the broker at url.
func NewRabbitEnv(url string) (*RabbitEnv, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq %s: %w", url, err)
	}
	return &RabbitEnv{URL: url, admin: conn}, nil
}

// Close releases the admin connection.
func (e *RabbitEnv) Close() error { return e.admin.Close() }

// Name returns a name unique in this process.
func (e *RabbitEnv) Name(prefix string) string {
	return prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(e.seq.Add(1), 10)
}

func (e *RabbitEnv) withChannel(fn func(ch *amqp.Channel) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch, err := e.admin.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return fn(ch)
}

// deleteQueue removes a benchmark queue so the broker does not keep the
// messages.
func (e *RabbitEnv) deleteQueue(q string) {
	_ = e.withChannel(func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete(q, false, false, false)
		return err
	})
}

// RabbitServer is the RabbitMQ broker of a report run: a private node
// (brokertest.RabbitMQ, the one the adapter tests use) or the broker named
// by $RABBITMQ_URL.
type RabbitServer struct {
	// URL is the AMQP URI of the broker.
	URL string
	// Pid is the process id of the node's Erlang VM (beam.smp) for CPU
	// accounting; 0 for $RABBITMQ_URL or when it cannot be found.
	Pid int
	// External reports that the broker is $RABBITMQ_URL's.
	External bool
	stop     func()
}

// StartRabbitMQ starts a private RabbitMQ node (the Debian package
// rabbitmq-server, on free loopback ports, in a temporary directory) and
// returns once it accepts connections; with $RABBITMQ_URL set it returns
// that broker instead. Without rabbitmq-server it fails with an error that
// names the install command.
func StartRabbitMQ() (*RabbitServer, error) {
	b, stop, err := brokertest.Outside(nil, brokertest.RabbitMQ)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %s", strings.TrimPrefix(err.Error(), "brokertest: "))
	}
	s := &RabbitServer{URL: b.URL(), External: b.External(), stop: stop}
	if !s.External {
		s.Pid = groupProcess(b.Pid(), "beam.smp")
	}
	return s, nil
}

// Close stops a private node and removes its directory.
func (s *RabbitServer) Close() { s.stop() }

// groupProcess returns the pid of the process named comm in process group
// pgid, or 0 (also where /proc does not exist).
func groupProcess(pgid int, comm string) int {
	if pgid <= 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		st := string(b)
		i, j := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(st[j+1:])
		if len(f) > 2 && st[i+1:j] == comm && f[2] == strconv.Itoa(pgid) {
			return pid
		}
	}
	return 0
}

// RabbitPeer is a RabbitMQ client under test.
type RabbitPeer struct {
	Name   string
	Config string
	// declare creates the queue of group on topic the way this peer names
	// and declares it, and returns the queue's name.
	declare func(env *RabbitEnv, topic, group string) (string, error)
	// newProducer returns a producer for topic.
	newProducer func(env *RabbitEnv, topic string) (kProducer, error)
	// newConsumer consumes every group of groups (declared before) on
	// topic; on is called once per handled message, which is then
	// acknowledged.
	newConsumer func(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error)
	// preload publishes n messages of size bytes to topic in the format the
	// peer's consumer expects.
	preload func(env *RabbitEnv, topic string, n, size int) error
}

// RabbitPeers returns the RabbitMQ peers, eventstream first.
func RabbitPeers() []RabbitPeer {
	return []RabbitPeer{
		{
			Name: PeerBusRabbit,
			Config: "DefaultDistributedConfig, RawSerializer; adapter defaults (quorum queue, persistent, mandatory, " +
				"publisher confirms pipelined on one channel, prefetch 256)",
			declare:     adapterDeclare,
			newProducer: rabbitBusProducer,
			newConsumer: rabbitBusConsumer,
			preload:     rabbitBusPreload,
		},
		{
			Name:        PeerAdapterRabbit,
			Config:      "rabbitmq.Adapter defaults; Publish, Subscribe + Ack (shows what the bus adds)",
			declare:     adapterDeclare,
			newProducer: rabbitAdapterProducer,
			newConsumer: rabbitAdapterConsumer,
			preload:     rawPreload091("es."),
		},
		{
			Name: PeerAmqp091,
			Config: "one confirm-mode channel shared by all producers, PublishWithDeferredConfirm + WaitContext per message " +
				"(persistent); consume with Qos(256) and Ack per message; same quorum queue and exchange as the adapter",
			declare:     adapterDeclare,
			newProducer: amqp091Producer,
			newConsumer: amqp091Consumer,
			preload:     rawPreload091("es."),
		},
		{
			Name: PeerWatermillRabbit,
			Config: "NewDurablePubSubConfig (fanout exchange = topic, durable classic queue topic_group, PrefetchCount 1) " +
				"with Publish.ConfirmDelivery = true; message Ack after handling",
			declare:     watermillRabbitDeclare,
			newProducer: watermillRabbitProducer,
			newConsumer: watermillRabbitConsumer,
			preload:     rawPreload091(""),
		},
	}
}

// RabbitPeerByName returns the named peer.
func RabbitPeerByName(name string) (RabbitPeer, bool) {
	for _, p := range RabbitPeers() {
		if p.Name == name {
			return p, true
		}
	}
	return RabbitPeer{}, false
}

// RabbitProduce publishes sc.Events messages of sc.Payload bytes to a new
// topic with one bound queue from sc.Producers goroutines, each waiting for
// the broker's confirm of one message before sending the next.
func RabbitProduce(env *RabbitEnv, p RabbitPeer, sc Scenario) (Sample, error) {
	topic := env.Name("produce")
	q, err := p.declare(env, topic, "sink")
	if err != nil {
		return Sample{}, fmt.Errorf("%s: declare: %w", p.Name, err)
	}
	defer env.deleteQueue(q)
	prod, err := p.newProducer(env, topic)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	defer prod.close()
	s, err := timedProduce(prod, sc, env.BrokerPid)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// RabbitConsume declares sc.Groups groups on a new topic, preloads
// sc.Events messages, and times from subscribing until every group handled
// them all (and acknowledged all but the last ones in flight).
func RabbitConsume(env *RabbitEnv, p RabbitPeer, sc Scenario) (Sample, error) {
	topic := env.Name("consume")
	groups := make([]string, sc.Groups)
	for i := range groups {
		groups[i] = "g" + strconv.Itoa(i)
		q, err := p.declare(env, topic, groups[i])
		if err != nil {
			return Sample{}, fmt.Errorf("%s: declare: %w", p.Name, err)
		}
		defer env.deleteQueue(q)
	}
	if err := p.preload(env, topic, sc.Events, sc.Payload); err != nil {
		return Sample{}, fmt.Errorf("%s: preload: %w", p.Name, err)
	}
	s, err := timedConsume(func(on func()) (kConsumer, error) {
		return p.newConsumer(env, topic, groups, sc.Concurrency, on)
	}, sc.Events, sc.Groups, env.BrokerPid, sc.window)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// --- eventstream ---

func newRabbitAdapter(env *RabbitEnv) (*rabbitmq.Adapter, error) {
	return rabbitmq.NewAdapter(rabbitmq.Config{URL: env.URL, Logger: quiet, Prefetch: RabbitPrefetch})
}

func adapterDeclare(env *RabbitEnv, topic, group string) (string, error) {
	ad, err := newRabbitAdapter(env)
	if err != nil {
		return "", err
	}
	defer ad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return "es." + topic + "/" + group, ad.DeclareGroup(ctx, topic, group)
}

// adapter opens a new adapters/rabbitmq adapter on env's broker.
func (env *RabbitEnv) adapter() (eventstream.MQAdapter, error) { return newRabbitAdapter(env) }

func rabbitBusProducer(env *RabbitEnv, topic string) (kProducer, error) {
	return busProducerOver(env.adapter, false, topic)
}

func rabbitBusConsumer(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return busConsumerOver(env.adapter, false, topic, groups, concurrency, on)
}

func rabbitBusPreload(env *RabbitEnv, topic string, n, size int) error {
	return preloadWith(func() (kProducer, error) { return rabbitBusProducer(env, topic) }, n, size)
}

func rabbitAdapterProducer(env *RabbitEnv, topic string) (kProducer, error) {
	return adapterProducerOver(env.adapter, topic)
}

func rabbitAdapterConsumer(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return adapterConsumerOver(env.adapter, topic, groups, concurrency, on)
}
