package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Names of the Kafka peers, as they appear in the report.
const (
	PeerBusKafka       = "eventstream (bus over adapters/kafka)"
	PeerBusKafkaBinary = "eventstream, CloudEvents binary mode"
	PeerAdapterKafka   = "adapters/kafka alone (no bus)"
	PeerKafkaGo        = "kafka-go"
	PeerFranzGo        = "franz-go"
	PeerWatermillKafka = "Watermill-kafka (Sarama)"
	// PeerKafkaGoBusRecords and PeerKafkaGoBinaryRecords are kafka-go's
	// Reader draining the records the bus writes (structured and binary
	// CloudEvents): the reference for consumption through the bus, since
	// every other peer drains records in its own, smaller format.
	PeerKafkaGoBusRecords    = "kafka-go on the bus's records"
	PeerKafkaGoBinaryRecords = "kafka-go on the bus's binary-mode records"
)

// kProducer publishes one message and returns once the broker acknowledged
// it; send is called concurrently.
type kProducer struct {
	send  func(ctx context.Context, value []byte) error
	close func() error
}

// kConsumer is a running set of consumer-group members.
type kConsumer struct {
	close func() error
}

// KafkaPeer is a Kafka client under test.
type KafkaPeer struct {
	Name string
	// Config says how the peer is configured, for the report.
	Config string
	// newProducer returns a producer for topic.
	newProducer func(env *KafkaEnv, topic string) (kProducer, error)
	// newConsumer joins every group of groups on topic, each with one
	// member. Each message calls on once in a handler, which is then
	// acknowledged/committed the way the library does it. concurrency is the
	// number of handler goroutines per group; peers without a handler pool
	// return a NotApplicable error for concurrency > 1.
	newConsumer func(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error)
	// preload writes n messages of size payload bytes to topic in the format
	// this peer's consumer expects.
	preload func(env *KafkaEnv, topic string, n, size int) error
	// Drains, when set, names the peer whose backlog this consume-only
	// peer reads (new groups on the very topic that peer drains), so that
	// both read the same record batches.
	Drains string
}

// Produces reports whether p publishes; consume-only peers have no producer.
func (p KafkaPeer) Produces() bool { return p.newProducer != nil }

// KafkaPeers returns the Kafka peers, eventstream first.
func KafkaPeers() []KafkaPeer {
	return []KafkaPeer{
		{
			Name: PeerBusKafka,
			Config: "DefaultDistributedConfig, RawSerializer ([]byte payload in a CloudEvents envelope), " +
				"adapter defaults (acks=all, no compression, no batch timer, commit every 1s or 1000 acks)",
			newProducer: busProducer,
			newConsumer: busConsumer,
			preload:     busPreload,
		},
		{
			Name:        PeerBusKafkaBinary,
			Config:      "as above with Distributed.BinaryMode: attributes as ce_ headers, the payload alone as the value",
			newProducer: func(env *KafkaEnv, topic string) (kProducer, error) { return busProducerOver(env.adapter, true, topic) },
			newConsumer: func(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
				return busConsumerOver(env.adapter, true, topic, groups, concurrency, on)
			},
			preload: func(env *KafkaEnv, topic string, n, size int) error { return busPreloadMode(env, topic, n, size, true) },
		},
		{
			Name:        PeerAdapterKafka,
			Config:      "kafka.Adapter defaults; Publish, Subscribe + Ack (shows what the bus adds)",
			newProducer: adapterProducer,
			newConsumer: adapterConsumer,
			preload:     rawPreload,
		},
		{
			Name: PeerKafkaGo,
			Config: "Writer{RequiredAcks: RequireAll, BatchTimeout: 1ms, RoundRobin}, one WriteMessages per message; " +
				"Reader{GroupID, CommitInterval: 1s, MaxWait: 500ms} with FetchMessage + CommitMessages",
			newProducer: kafkaGoProducer,
			newConsumer: kafkaGoConsumer,
			preload:     rawPreload,
		},
		{
			Name: PeerFranzGo,
			Config: "kgo defaults (acks=all, idempotent, 10ms linger that ProduceSync skips) but no compression; ProduceSync per record; " +
				"group consumer with AutoCommitMarks, AutoCommitInterval 1s, MarkCommitRecords after handling",
			newProducer: franzProducer,
			newConsumer: franzConsumer,
			preload:     rawPreload,
		},
		{
			Name: PeerKafkaGoBusRecords,
			Config: "the kafka-go Reader above draining the bus's own records (structured CloudEvents preloaded by the bus peer); " +
				"consumption only",
			newConsumer: kafkaGoConsumer,
			preload:     busPreload,
			Drains:      PeerBusKafka,
		},
		{
			Name:        PeerKafkaGoBinaryRecords,
			Config:      "the same on the binary-mode bus's records; consumption only",
			newConsumer: kafkaGoConsumer,
			preload:     func(env *KafkaEnv, topic string, n, size int) error { return busPreloadMode(env, topic, n, size, true) },
			Drains:      PeerBusKafkaBinary,
		},
		{
			Name: PeerWatermillKafka,
			Config: "DefaultSaramaSyncPublisherConfig + RequiredAcks=WaitForAll; DefaultSaramaSubscriberConfig + " +
				"Offsets.Initial=OffsetOldest (auto-commit of marked offsets every 1s), message Ack after handling",
			newProducer: watermillProducer,
			newConsumer: watermillConsumer,
			preload:     watermillPreload,
		},
	}
}

// KafkaPeerByName returns the named peer.
func KafkaPeerByName(name string) (KafkaPeer, bool) {
	for _, p := range KafkaPeers() {
		if p.Name == name {
			return p, true
		}
	}
	return KafkaPeer{}, false
}

// KafkaProduce publishes sc.Events messages of sc.Payload bytes to a new
// topic from sc.Producers goroutines, each waiting for the broker's
// acknowledgement of one message before sending the next.
func KafkaProduce(env *KafkaEnv, p KafkaPeer, sc Scenario) (Sample, error) {
	topic, err := env.NewTopic(p.Name + "-produce")
	if err != nil {
		return Sample{}, err
	}
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

// KafkaPreload creates a topic holding n messages of size bytes written in
// the format p consumes, and returns its name.
func KafkaPreload(env *KafkaEnv, p KafkaPeer, n, size int) (string, error) {
	topic, err := env.NewTopic(p.Name + "-consume")
	if err != nil {
		return "", err
	}
	if err := p.preload(env, topic, n, size); err != nil {
		return "", fmt.Errorf("%s: preloading %s: %w", p.Name, topic, err)
	}
	return topic, nil
}

// KafkaConsume measures how fast sc.Groups new consumer groups (one member
// each, starting from the earliest offset) drain topic, made by KafkaPreload
// with sc.Events messages.
//
// Every library fetches ahead, some of them the whole backlog before the
// first handler call, so timing from the first handled message would hide
// the fetching. Instead the drain is timed from subscribing to the last
// handled message, less the time the same peer needs to join and hand over
// one message: that join time is measured first on joinTopic, made by
// KafkaPreload with one message, and reported as Startup.
func KafkaConsume(env *KafkaEnv, p KafkaPeer, topic, joinTopic string, sc Scenario) (Sample, error) {
	join, err := consumeOnce(env, p, joinTopic, sc, 1)
	if err != nil {
		return Sample{}, fmt.Errorf("join baseline: %w", err)
	}
	full, err := consumeOnce(env, p, topic, sc, sc.Events)
	if err != nil {
		return Sample{}, err
	}
	return lessJoin(full, join), nil
}

// consumeOnce subscribes sc.Groups new groups to topic and times until each
// handled n messages (n×groups handler calls), measuring from subscribing.
func consumeOnce(env *KafkaEnv, p KafkaPeer, topic string, sc Scenario, n int) (Sample, error) {
	names := make([]string, sc.Groups)
	for i := range names {
		names[i] = env.Name("g")
	}
	s, err := timedConsume(func(on func()) (kConsumer, error) {
		return p.newConsumer(env, topic, names, sc.Concurrency, on)
	}, n, sc.Groups, env.BrokerPid, sc.window)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// KafkaLatency measures n unloaded publish→handler latencies with one
// consumer group: each message is published only after the previous one
// reached the handler; the latency runs from just before the publish call
// to the handler call.
func KafkaLatency(env *KafkaEnv, p KafkaPeer, n, size int) ([]time.Duration, error) {
	topic, err := env.NewTopic(p.Name + "-latency")
	if err != nil {
		return nil, err
	}
	prod, err := p.newProducer(env, topic)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	defer prod.close()
	got := make(chan time.Time, 4096)
	on := func() {
		select {
		case got <- time.Now():
		default:
		}
	}
	cons, err := p.newConsumer(env, topic, []string{env.Name("lat")}, 1, on)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	defer cons.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	value := newData(size)
	// Publish until the consumer has joined and received something.
	joined := time.NewTimer(90 * time.Second)
	defer joined.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		if err := prod.send(ctx, value); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		select {
		case <-got:
			break wait
		case <-tick.C:
		case <-joined.C:
			return nil, fmt.Errorf("%s: consumer received nothing within 90s", p.Name)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for len(got) > 0 {
		<-got
	}
	const warmup = 20
	out := make([]time.Duration, 0, n)
	for i := range warmup + n {
		t0 := time.Now()
		if err := prod.send(ctx, value); err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		select {
		case t1 := <-got:
			if i >= warmup {
				out = append(out, t1.Sub(t0))
			}
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("%s: message %d not received within 30s", p.Name, i)
		}
	}
	return out, nil
}

// --- eventstream ---

func newAdapter(env *KafkaEnv) (*kafka.Adapter, error) {
	return kafka.NewAdapter(kafka.Config{Brokers: env.Brokers, Logger: quiet})
}

// adapter opens a new adapters/kafka adapter on env's brokers.
func (env *KafkaEnv) adapter() (eventstream.MQAdapter, error) { return newAdapter(env) }

func busProducer(env *KafkaEnv, topic string) (kProducer, error) {
	return busProducerOver(env.adapter, false, topic)
}

func busConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return busConsumerOver(env.adapter, false, topic, groups, concurrency, on)
}

func busPreload(env *KafkaEnv, topic string, n, size int) error {
	return busPreloadMode(env, topic, n, size, false)
}

func busPreloadMode(env *KafkaEnv, topic string, n, size int, binary bool) error {
	return preloadWith(func() (kProducer, error) { return busProducerOver(env.adapter, binary, topic) }, n, size)
}

// --- the adapter without the bus ---

func adapterProducer(env *KafkaEnv, topic string) (kProducer, error) {
	return adapterProducerOver(env.adapter, topic)
}

func adapterConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return adapterConsumerOver(env.adapter, topic, groups, concurrency, on)
}

// rawPreload writes plain records with franz-go, fast (asynchronous
// produce, then flush).
func rawPreload(env *KafkaEnv, topic string, n, size int) error {
	return franzPreload(env, topic, n, size, nil)
}

func franzPreload(env *KafkaEnv, topic string, n, size int, headers func(i int) []kgo.RecordHeader) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v := newData(size)
	var mu sync.Mutex
	var first error
	for i := range n {
		r := &kgo.Record{Value: v}
		if headers != nil {
			r.Headers = headers(i)
		}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

// errNoHandlerPool is the reason the peers other than eventstream skip the
// handler-concurrency scenario.
func errNoHandlerPool(lib string) error {
	return na("%s has no per-subscription handler pool; one member handles its partitions' messages in order", lib)
}

func joinNonNil(errs ...error) error {
	var out []string
	for _, e := range errs {
		if e != nil && !errors.Is(e, context.Canceled) {
			out = append(out, e.Error())
		}
	}
	if len(out) == 0 {
		return nil
	}
	return errors.New(strings.Join(out, "; "))
}

// KafkaRecordSize publishes one message of size payload bytes with p and
// reads it back: it returns the size of the record's value and of its
// headers (keys plus values) as stored by the broker.
func KafkaRecordSize(env *KafkaEnv, p KafkaPeer, size int) (value, headers int, err error) {
	topic, err := env.NewTopic(p.Name + "-size")
	if err != nil {
		return 0, 0, err
	}
	prod, err := p.newProducer(env, topic)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = prod.send(ctx, newData(size))
	_ = prod.close()
	if err != nil {
		return 0, 0, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		var r *kgo.Record
		fs.EachRecord(func(x *kgo.Record) {
			if r == nil {
				r = x
			}
		})
		if r != nil {
			for _, h := range r.Headers {
				headers += len(h.Key) + len(h.Value)
			}
			return len(r.Value), headers, nil
		}
	}
}
