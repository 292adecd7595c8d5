package bench

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// --- rabbitmq/amqp091-go ---

func amqp091Producer(env *RabbitEnv, topic string) (kProducer, error) {
	conn, err := amqp.Dial(env.URL)
	if err != nil {
		return kProducer{}, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return kProducer{}, err
	}
	exchange := "es." + topic
	return kProducer{
		send: func(ctx context.Context, v []byte) error {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, "", true, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: v})
			if err != nil {
				return err
			}
			ok, err := dc.WaitContext(ctx)
			if err == nil && !ok {
				err = errors.New("nacked")
			}
			return err
		},
		close: conn.Close,
	}, nil
}

func amqp091Consumer(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("amqp091-go has no handler pool")
	}
	conn, err := amqp.Dial(env.URL)
	if err != nil {
		return kConsumer{}, err
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Qos(RabbitPrefetch, 0, false)
		}
		var ds <-chan amqp.Delivery
		if err == nil {
			ds, err = ch.Consume("es."+topic+"/"+g, "", false, false, false, false, nil)
		}
		if err != nil {
			_ = conn.Close()
			wg.Wait()
			return kConsumer{}, err
		}
		wg.Go(func() {
			for d := range ds {
				_ = d.Body
				on()
				_ = d.Ack(false)
			}
		})
	}
	return kConsumer{close: func() error {
		err := conn.Close()
		wg.Wait()
		return err
	}}, nil
}

// rawPreload091 publishes n persistent messages to the exchange prefix+topic
// with pipelined confirms (1024 outstanding).
func rawPreload091(prefix string) func(env *RabbitEnv, topic string, n, size int) error {
	return func(env *RabbitEnv, topic string, n, size int) error {
		conn, err := amqp.Dial(env.URL)
		if err != nil {
			return err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		v := newData(size)
		var pending []*amqp.DeferredConfirmation
		flush := func() error {
			for _, dc := range pending {
				if ok, err := dc.WaitContext(ctx); err != nil || !ok {
					return errors.Join(err, errors.New("preload publish not confirmed"))
				}
			}
			pending = pending[:0]
			return nil
		}
		for i := range n {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, prefix+topic, "", true, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent,
				Body:         v,
				Headers:      amqp.Table{wamqp.DefaultMessageUUIDHeaderKey: watermill.NewUUID()},
			})
			if err != nil {
				return err
			}
			pending = append(pending, dc)
			if len(pending) == 1024 || i == n-1 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// --- ThreeDotsLabs/watermill-amqp ---

func watermillRabbitConfig(url, group string) wamqp.Config {
	cfg := wamqp.NewDurablePubSubConfig(url, wamqp.GenerateQueueNameTopicNameWithSuffix(group))
	cfg.Publish.ConfirmDelivery = true
	return cfg
}

// watermillRabbitDeclare declares the exchange and queue the way
// Watermill's subscriber does.
func watermillRabbitDeclare(env *RabbitEnv, topic, group string) (string, error) {
	q := topic + "_" + group
	return q, env.withChannel(func(ch *amqp.Channel) error {
		if err := ch.ExchangeDeclare(topic, "fanout", true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(q, "", topic, false, nil)
	})
}

func watermillRabbitProducer(env *RabbitEnv, topic string) (kProducer, error) {
	pub, err := wamqp.NewPublisher(watermillRabbitConfig(env.URL, "sink"), watermill.NopLogger{})
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

func watermillRabbitConsumer(env *RabbitEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("Watermill's subscriber handles one message at a time per subscription")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var subs []*wamqp.Subscriber
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
		sub, err := wamqp.NewSubscriber(watermillRabbitConfig(env.URL, g), watermill.NopLogger{})
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
		wg.Go(func() {
			for m := range msgs {
				_ = m.Payload
				on()
				m.Ack()
			}
		})
	}
	return kConsumer{close: closeAll}, nil
}
