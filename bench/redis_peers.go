package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	goredis "github.com/redis/go-redis/v9"
)

// --- redis/go-redis ---

// goRedisXAdd is one XADD waiting for its pipeline.
type goRedisXAdd struct {
	value []byte
	done  chan error
}

// goRedisProducer pipelines the XADDs of concurrent callers the plain way:
// one goroutine takes everything queued meanwhile (up to 512) and sends it
// as one pipeline; each caller waits for its own reply.
func goRedisProducer(env *RedisEnv, topic string) (kProducer, error) {
	c := goredis.NewClient(&goredis.Options{Addr: env.Addr, MaxRetries: -1})
	key := esStream(topic)
	queue := make(chan *goRedisXAdd, 4096)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		batch := make([]*goRedisXAdd, 0, 512)
		cmds := make([]*goredis.StringCmd, 0, 512)
		ctx := context.Background()
		for {
			select {
			case r := <-queue:
				batch = append(batch[:0], r)
			case <-stop:
				return
			}
		fill:
			for len(batch) < cap(batch) {
				select {
				case r := <-queue:
					batch = append(batch, r)
				default:
					break fill
				}
			}
			cmds = cmds[:0]
			_, _ = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, r := range batch {
					cmds = append(cmds, p.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: []any{"v", r.value}}))
				}
				return nil
			})
			for i, r := range batch {
				r.done <- cmds[i].Err()
			}
		}
	})
	return kProducer{
		send: func(ctx context.Context, v []byte) error {
			r := &goRedisXAdd{value: v, done: make(chan error, 1)}
			select {
			case queue <- r:
			case <-ctx.Done():
				return ctx.Err()
			}
			return <-r.done
		},
		close: func() error {
			close(stop)
			wg.Wait()
			return c.Close()
		},
	}, nil
}

// goRedisConsumer reads each group with XREADGROUP COUNT 256 and sends one
// XACK for every batch it handled.
func goRedisConsumer(env *RedisEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("go-redis has no handler pool")
	}
	c := goredis.NewClient(&goredis.Options{Addr: env.Addr, MaxRetries: -1})
	key := esStream(topic)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, g := range groups {
		wg.Go(func() {
			ids := make([]string, 0, RedisReadCount)
			for ctx.Err() == nil {
				res, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{
					Group: g, Consumer: "bench", Streams: []string{key, ">"},
					Count: RedisReadCount, Block: 100 * time.Millisecond,
				}).Result()
				if errors.Is(err, goredis.Nil) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					return
				}
				ids = ids[:0]
				for _, st := range res {
					for _, m := range st.Messages {
						_ = m.Values["v"]
						on()
						ids = append(ids, m.ID)
					}
				}
				if len(ids) > 0 {
					if err := c.XAck(ctx, key, g, ids...).Err(); err != nil && ctx.Err() == nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
				}
			}
		})
	}
	return kConsumer{close: func() error {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(append(errs, c.Close())...)
	}}, nil
}

// Entry formats of the preloads.
const (
	entryAdapter   = iota // the adapter's "v" field
	entryWatermill        // Watermill's default marshaller
)

// rawPreloadRedis adds n entries to the stream of topic with pipelines of
// 1024 XADDs.
func rawPreloadRedis(stream func(string) string, format int) func(env *RedisEnv, topic string, n, size int) error {
	return func(env *RedisEnv, topic string, n, size int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		key := stream(topic)
		v := newData(size)
		for done := 0; done < n; {
			m := min(1024, n-done)
			cmds, err := env.admin.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for range m {
					var values []any
					if format == entryWatermill {
						values = []any{redisstream.UUIDHeaderKey, watermill.NewUUID(), "metadata", "", "payload", v}
					} else {
						values = []any{"v", v}
					}
					p.XAdd(ctx, &goredis.XAddArgs{Stream: key, Values: values})
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, c := range cmds {
				if err := c.Err(); err != nil {
					return fmt.Errorf("preload XADD: %w", err)
				}
			}
			done += m
		}
		return nil
	}
}

// --- ThreeDotsLabs/watermill-redisstream ---

func watermillRedisProducer(env *RedisEnv, topic string) (kProducer, error) {
	c := goredis.NewClient(&goredis.Options{Addr: env.Addr})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: c}, watermill.NopLogger{})
	if err != nil {
		_ = c.Close()
		return kProducer{}, err
	}
	return kProducer{
		send: func(_ context.Context, v []byte) error {
			return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), v))
		},
		close: func() error { return errors.Join(pub.Close(), c.Close()) },
	}, nil
}

func watermillRedisConsumer(env *RedisEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	if concurrency != 1 {
		return kConsumer{}, na("Watermill's subscriber handles one message at a time per subscription")
	}
	c := goredis.NewClient(&goredis.Options{Addr: env.Addr})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var subs []*redisstream.Subscriber
	closeAll := func() error {
		cancel()
		var errs []error
		for _, s := range subs {
			errs = append(errs, s.Close())
		}
		wg.Wait()
		if err := c.Close(); !errors.Is(err, goredis.ErrClosed) { // Subscriber.Close closes the client
			errs = append(errs, err)
		}
		return joinNonNil(errs...)
	}
	for _, g := range groups {
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: c, ConsumerGroup: g, DisableIndefiniteInitialBlock: true,
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
