package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// --- raw nats.go jetstream ---

func natsRawProducer(env *NATSEnv, topic string) (kProducer, error) {
	nc, err := natsgo.Connect(env.URL)
	if err != nil {
		return kProducer{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return kProducer{}, err
	}
	return kProducer{
		send: func(ctx context.Context, v []byte) error {
			f, err := js.PublishMsgAsync(&natsgo.Msg{Subject: topic, Data: v})
			if err != nil {
				return err
			}
			select {
			case <-f.Ok():
				return nil
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		close: func() error { nc.Close(); return nil },
	}, nil
}

func natsRawConsumer(env *NATSEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("nats.go's Consume calls its handler sequentially per subscription")
	}
	nc, err := natsgo.Connect(env.URL)
	if err != nil {
		return kConsumer{}, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return kConsumer{}, err
	}
	var ccs []jetstream.ConsumeContext
	closeAll := func() error {
		for _, cc := range ccs {
			cc.Stop()
		}
		nc.Close()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, g := range groups {
		c, err := js.CreateConsumer(ctx, topic, jetstream.ConsumerConfig{
			Durable: g, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err != nil {
			_ = closeAll()
			return kConsumer{}, err
		}
		cc, err := c.Consume(func(m jetstream.Msg) {
			_ = m.Data()
			on()
			_ = m.Ack()
		})
		if err != nil {
			_ = closeAll()
			return kConsumer{}, err
		}
		ccs = append(ccs, cc)
	}
	return kConsumer{close: closeAll}, nil
}

// natsRawPreload publishes n plain messages asynchronously and waits for
// every acknowledgement.
func natsRawPreload(env *NATSEnv, topic string, n, size int) error {
	return natsAsyncPreload(env, topic, n, func() (*natsgo.Msg, error) {
		return &natsgo.Msg{Subject: topic, Data: newData(size)}, nil
	})
}

func natsAsyncPreload(env *NATSEnv, topic string, n int, msg func() (*natsgo.Msg, error)) error {
	var failed error
	var mu sync.Mutex
	js, err := jetstream.New(env.nc, jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *natsgo.Msg, err error) {
		mu.Lock()
		failed = errors.Join(failed, err)
		mu.Unlock()
	}))
	if err != nil {
		return err
	}
	for range n {
		m, err := msg()
		if err != nil {
			return err
		}
		// A loaded machine answers slowly: wait for room rather than
		// failing after the default 200ms stall.
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("preload of %s: acknowledgements missing after 5 minutes", topic)
	}
	mu.Lock()
	defer mu.Unlock()
	return failed
}

// --- Watermill ---

func natsWatermillProducer(env *NATSEnv, topic string) (kProducer, error) {
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{URL: env.URL, Logger: watermill.NopLogger{}})
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

func natsWatermillConsumer(env *NATSEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, errNoHandlerPool("Watermill-nats's subscriber")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var subs []*wmjs.Subscriber
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
		sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
			URL:    env.URL,
			Logger: watermill.NopLogger{},
			// A named consumer per group on the existing limits stream
			// (GroupedConsumer only names the stream; the topic's stream
			// was created by NewTopic).
			ResourceInitializer: wmjs.GroupedConsumer(g),
		})
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

// natsWatermillPreload writes messages the way the Watermill publisher
// does (its marshaler: payload plus the UUID header), asynchronously.
func natsWatermillPreload(env *NATSEnv, topic string, n, size int) error {
	var m wmnats.NATSMarshaler
	v := newData(size)
	return natsAsyncPreload(env, topic, n, func() (*natsgo.Msg, error) {
		return m.Marshal(topic, message.NewMessage(watermill.NewUUID(), v))
	})
}
