package bench

import (
	"context"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// --- segmentio/kafka-go ---

func kafkaGoProducer(env *KafkaEnv, topic string) (kProducer, error) {
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(env.Brokers...),
		Topic:        topic,
		Balancer:     &kafkago.RoundRobin{},
		RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond,
		// A transport of its own: the shared DefaultTransport caches
		// metadata from before the topic was created.
		Transport: &kafkago.Transport{},
	}
	return kProducer{
		send: func(ctx context.Context, v []byte) error {
			return w.WriteMessages(ctx, kafkago.Message{Value: v})
		},
		close: w.Close,
	}, nil
}

func kafkaGoConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, errNoHandlerPool("kafka-go's Reader")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	readers := make([]*kafkago.Reader, len(groups))
	for i, g := range groups {
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:        env.Brokers,
			GroupID:        g,
			Topic:          topic,
			StartOffset:    kafkago.FirstOffset,
			CommitInterval: time.Second,
			MaxWait:        500 * time.Millisecond,
		})
		readers[i] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					return
				}
				_ = m.Value
				on()
				if err := r.CommitMessages(ctx, m); err != nil {
					return
				}
			}
		}()
	}
	return kConsumer{close: func() error {
		cancel()
		wg.Wait()
		var errs []error
		for _, r := range readers {
			errs = append(errs, r.Close())
		}
		return joinNonNil(errs...)
	}}, nil
}

// --- twmb/franz-go ---

func franzProducer(env *KafkaEnv, topic string) (kProducer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(env.Brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return kProducer{}, err
	}
	return kProducer{
		send: func(ctx context.Context, v []byte) error {
			return cl.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr()
		},
		close: func() error { cl.Close(); return nil },
	}, nil
}

func franzConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, errNoHandlerPool("franz-go's group consumer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	clients := make([]*kgo.Client, 0, len(groups))
	for _, g := range groups {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(env.Brokers...),
			kgo.ConsumerGroup(g),
			kgo.ConsumeTopics(topic),
			kgo.AutoCommitMarks(),
			kgo.AutoCommitInterval(time.Second),
		)
		if err != nil {
			cancel()
			wg.Wait()
			for _, c := range clients {
				c.Close()
			}
			return kConsumer{}, err
		}
		clients = append(clients, cl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil || fs.IsClientClosed() {
					return
				}
				fs.EachPartition(func(p kgo.FetchTopicPartition) {
					for _, r := range p.Records {
						_ = r.Value
						on()
					}
					if n := len(p.Records); n > 0 {
						cl.MarkCommitRecords(p.Records[n-1])
					}
				})
			}
		}()
	}
	return kConsumer{close: func() error {
		cancel()
		wg.Wait()
		for _, c := range clients {
			c.Close()
		}
		return nil
	}}, nil
}

// --- ThreeDotsLabs/watermill-kafka (Sarama) ---

func watermillPublisherConfig() *sarama.Config {
	c := wkafka.DefaultSaramaSyncPublisherConfig()
	c.Producer.RequiredAcks = sarama.WaitForAll
	return c
}

func watermillSubscriberConfig() *sarama.Config {
	c := wkafka.DefaultSaramaSubscriberConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

func watermillProducer(env *KafkaEnv, topic string) (kProducer, error) {
	pub, err := wkafka.NewPublisher(wkafka.PublisherConfig{
		Brokers:               env.Brokers,
		Marshaler:             wkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: watermillPublisherConfig(),
	}, watermill.NopLogger{})
	if err != nil {
		return kProducer{}, err
	}
	return kProducer{
		send: func(_ context.Context, v []byte) error {
			return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), v))
		},
		close: pub.Close,
	}, nil
}

func watermillConsumer(env *KafkaEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, errNoHandlerPool("Watermill-kafka's subscriber")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var subs []*wkafka.Subscriber
	closeAll := func() error {
		cancel()
		var errs []error
		for _, s := range subs {
			errs = append(errs, s.Close())
		}
		wg.Wait()
		return joinNonNil(errs...)
	}
	for _, g := range groups {
		sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
			Brokers:               env.Brokers,
			Unmarshaler:           wkafka.DefaultMarshaler{},
			ConsumerGroup:         g,
			OverwriteSaramaConfig: watermillSubscriberConfig(),
		}, watermill.NopLogger{})
		if err != nil {
			_ = closeAll()
			return kConsumer{}, err
		}
		subs = append(subs, sub)
		msgs, err := sub.Subscribe(ctx, topic)
		if err != nil {
			_ = closeAll()
			return kConsumer{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range msgs {
				_ = m.Payload
				on()
				m.Ack()
			}
		}()
	}
	return kConsumer{close: closeAll}, nil
}

// watermillPreload writes records the way the Watermill publisher does: the
// payload as the value and the message UUID in a header.
func watermillPreload(env *KafkaEnv, topic string, n, size int) error {
	return franzPreload(env, topic, n, size, func(int) []kgo.RecordHeader {
		return []kgo.RecordHeader{{Key: wkafka.UUIDHeaderKey, Value: []byte(watermill.NewUUID())}}
	})
}
