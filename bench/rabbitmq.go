package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	value := newData(sc.Payload)
	send := func(int, int) error { return prod.send(ctx, value) }
	if err := runProducers(sc.Producers, 4*sc.Producers, send); err != nil {
		return Sample{}, fmt.Errorf("%s: warm-up: %w", p.Name, err)
	}
	runtime.GC()
	m0, cpu0, bcpu0 := mallocs(), selfCPU(), procCPU(env.BrokerPid)
	start := time.Now()
	err = runProducers(sc.Producers, sc.Events, send)
	elapsed := time.Since(start)
	m1, cpu1, bcpu1 := mallocs(), selfCPU(), procCPU(env.BrokerPid)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return Sample{Events: sc.Events, Elapsed: elapsed, Mallocs: m1 - m0, CPU: cpu1 - cpu0, BrokerCPU: bcpu1 - bcpu0}, nil
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
	c := newCounter(int64(sc.Events * sc.Groups))
	runtime.GC()
	m0, cpu0, bcpu0 := mallocs(), selfCPU(), procCPU(env.BrokerPid)
	start := time.Now()
	cons, err := p.newConsumer(env, topic, groups, sc.Concurrency, c.add)
	if err != nil {
		return Sample{}, err
	}
	err = c.wait(3 * time.Minute)
	m1, cpu1, bcpu1 := mallocs(), selfCPU(), procCPU(env.BrokerPid)
	if cerr := cons.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	end := time.Unix(0, c.last.Load())
	return Sample{Events: sc.Events, Handled: c.n.Load(), Elapsed: end.Sub(start), Mallocs: m1 - m0,
		CPU: cpu1 - cpu0, BrokerCPU: bcpu1 - bcpu0}, nil
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

func rabbitBusProducer(env *RabbitEnv, topic string) (kProducer, error) {
	ad, err := newRabbitAdapter(env)
	if err != nil {
		return kProducer{}, err
	}
	bus, err := newDistributedBusOver(ad)
	if err != nil {
		_ = ad.Close()
		return kProducer{}, err
	}
	return kProducer{
		send:  func(ctx context.Context, v []byte) error { return bus.Emit(ctx, topic, v) },
		close: func() error { return errors.Join(bus.Close(), ad.Close()) },
	}, nil
}

func newDistributedBusOver(ad eventstream.MQAdapter) (eventstream.Bus, error) {
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Logger = quiet
	cfg.Distributed.MQAdapter = ad
	cfg.Distributed.Serializer = eventstream.RawSerializer{}
	return eventstream.New(cfg)
}

func rabbitBusConsumer(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	ad, err := newRabbitAdapter(env)
	if err != nil {
		return kConsumer{}, err
	}
	bus, err := newDistributedBusOver(ad)
	if err != nil {
		_ = ad.Close()
		return kConsumer{}, err
	}
	h := func(_ context.Context, e *eventstream.Event) error {
		_ = e.Data.([]byte)
		on()
		return nil
	}
	closeAll := func() error { return errors.Join(bus.Close(), ad.Close()) }
	for _, g := range groups {
		if _, err := bus.On(topic, h, eventstream.WithConsumerGroup(g), eventstream.WithConcurrency(concurrency)); err != nil {
			_ = closeAll()
			return kConsumer{}, err
		}
	}
	return kConsumer{close: closeAll}, nil
}

func rabbitBusPreload(env *RabbitEnv, topic string, n, size int) error {
	prod, err := rabbitBusProducer(env, topic)
	if err != nil {
		return err
	}
	defer prod.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v := newData(size)
	return runProducers(64, n, func(int, int) error { return prod.send(ctx, v) })
}

func rabbitAdapterProducer(env *RabbitEnv, topic string) (kProducer, error) {
	ad, err := newRabbitAdapter(env)
	if err != nil {
		return kProducer{}, err
	}
	return kProducer{
		send:  func(ctx context.Context, v []byte) error { return ad.Publish(ctx, topic, v) },
		close: ad.Close,
	}, nil
}

func rabbitAdapterConsumer(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("the adapter has no handler pool (that is the bus's job)")
	}
	ad, err := newRabbitAdapter(env)
	if err != nil {
		return kConsumer{}, err
	}
	var wg sync.WaitGroup
	ctx := context.Background()
	for _, g := range groups {
		msgs, _, err := ad.Subscribe(ctx, topic, g)
		if err != nil {
			_ = ad.Close()
			wg.Wait()
			return kConsumer{}, err
		}
		wg.Go(func() {
			for m := range msgs {
				_ = m.Value()
				on()
				_ = ad.Ack(ctx, g, m)
			}
		})
	}
	return kConsumer{close: func() error {
		err := ad.Close()
		wg.Wait()
		return err
	}}, nil
}
