package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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
			newProducer: func(env *KafkaEnv, topic string) (kProducer, error) { return busProducerMode(env, topic, true) },
			newConsumer: func(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
				return busConsumerMode(env, topic, groups, concurrency, on, true)
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
		},
		{
			Name:        PeerKafkaGoBinaryRecords,
			Config:      "the same on the binary-mode bus's records; consumption only",
			newConsumer: kafkaGoConsumer,
			preload:     func(env *KafkaEnv, topic string, n, size int) error { return busPreloadMode(env, topic, n, size, true) },
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	value := newData(sc.Payload)
	send := func(int, int) error { return prod.send(ctx, value) }
	// Warm up: metadata, connections, producer state.
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
	join, err := consumeOnce(env, p, joinTopic, sc.Groups, sc.Concurrency, 1)
	if err != nil {
		return Sample{}, fmt.Errorf("join baseline: %w", err)
	}
	full, err := consumeOnce(env, p, topic, sc.Groups, sc.Concurrency, sc.Events)
	if err != nil {
		return Sample{}, err
	}
	elapsed := full.Elapsed - join.Elapsed
	if elapsed < full.Elapsed/20 {
		// Join time varies; never let it eat the whole measurement.
		elapsed = full.Elapsed / 20
	}
	var m uint64
	if full.Mallocs > join.Mallocs {
		m = full.Mallocs - join.Mallocs
	}
	return Sample{
		Events:    sc.Events,
		Handled:   full.Handled,
		Elapsed:   elapsed,
		Mallocs:   m,
		CPU:       max(0, full.CPU-join.CPU),
		BrokerCPU: max(0, full.BrokerCPU-join.BrokerCPU),
		Startup:   join.Elapsed,
	}, nil
}

// consumeOnce subscribes groups new groups to topic and times until each
// handled n messages (n×groups handler calls), measuring from subscribing.
func consumeOnce(env *KafkaEnv, p KafkaPeer, topic string, groups, concurrency, n int) (Sample, error) {
	names := make([]string, groups)
	for i := range names {
		names[i] = env.Name("g")
	}
	c := newCounter(int64(n * groups))
	runtime.GC()
	m0, cpu0, bcpu0 := mallocs(), selfCPU(), procCPU(env.BrokerPid)
	start := time.Now()
	cons, err := p.newConsumer(env, topic, names, concurrency, c.add)
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
	return Sample{Events: n, Handled: c.n.Load(), Elapsed: end.Sub(start), Mallocs: m1 - m0, CPU: cpu1 - cpu0, BrokerCPU: bcpu1 - bcpu0}, nil
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

func newDistributedBus(ad *kafka.Adapter, binary bool) (eventstream.Bus, error) {
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Logger = quiet
	cfg.Distributed.MQAdapter = ad
	cfg.Distributed.Serializer = eventstream.RawSerializer{}
	cfg.Distributed.BinaryMode = binary
	return eventstream.New(cfg)
}

func busProducer(env *KafkaEnv, topic string) (kProducer, error) {
	return busProducerMode(env, topic, false)
}

func busProducerMode(env *KafkaEnv, topic string, binary bool) (kProducer, error) {
	ad, err := newAdapter(env)
	if err != nil {
		return kProducer{}, err
	}
	bus, err := newDistributedBus(ad, binary)
	if err != nil {
		_ = ad.Close()
		return kProducer{}, err
	}
	return kProducer{
		send: func(ctx context.Context, v []byte) error { return bus.Emit(ctx, topic, v) },
		close: func() error {
			return errors.Join(bus.Close(), ad.Close())
		},
	}, nil
}

func busConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return busConsumerMode(env, topic, groups, concurrency, on, false)
}

func busConsumerMode(env *KafkaEnv, topic string, groups []string, concurrency int, on func(), binary bool) (kConsumer, error) {
	ad, err := newAdapter(env)
	if err != nil {
		return kConsumer{}, err
	}
	bus, err := newDistributedBus(ad, binary)
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

func busPreload(env *KafkaEnv, topic string, n, size int) error {
	return busPreloadMode(env, topic, n, size, false)
}

func busPreloadMode(env *KafkaEnv, topic string, n, size int, binary bool) error {
	prod, err := busProducerMode(env, topic, binary)
	if err != nil {
		return err
	}
	defer prod.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v := newData(size)
	return runProducers(64, n, func(int, int) error { return prod.send(ctx, v) })
}

// --- the adapter without the bus ---

func adapterProducer(env *KafkaEnv, topic string) (kProducer, error) {
	ad, err := newAdapter(env)
	if err != nil {
		return kProducer{}, err
	}
	return kProducer{
		send:  func(ctx context.Context, v []byte) error { return ad.Publish(ctx, topic, v) },
		close: ad.Close,
	}, nil
}

func adapterConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("the adapter has no handler pool (that is the bus's job)")
	}
	ad, err := newAdapter(env)
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				_ = m.Value()
				on()
				_ = ad.Ack(ctx, g, m)
			}
		}()
	}
	return kConsumer{close: func() error {
		err := ad.Close()
		wg.Wait()
		return err
	}}, nil
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
