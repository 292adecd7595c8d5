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
	"github.com/eventstream-go/eventstream/adapters/redis"
	goredis "github.com/redis/go-redis/v9"
)

// Names of the Redis peers, as they appear in the report.
const (
	PeerBusRedis       = "eventstream (bus over adapters/redis)"
	PeerBusRedisBinary = "eventstream over adapters/redis, CloudEvents binary mode"
	PeerAdapterRedis   = "adapters/redis alone (no bus)"
	PeerGoRedis        = "go-redis (pipelined XADD; XREADGROUP + batched XACK)"
	// PeerGoRedisBusRecords is the go-redis consumer draining the bus's own
	// entries: consumption only.
	PeerGoRedisBusRecords = "go-redis on the bus's records"
	PeerWatermillRedis    = "Watermill-redisstream"
)

// RedisReadCount is the COUNT of one XREADGROUP of every Redis consumer in
// the benchmarks that has the setting (the adapter's default).
const RedisReadCount = 256

// RedisServer is a redis-server process on a free loopback port, without
// persistence (the configuration of the research measurements).
type RedisServer struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
	// Version is the server's version line.
	Version string
}

// StartRedisServer starts the redis-server binary found in PATH (the Debian
// package redis-server) with `--save "" --appendonly no` in a temporary
// directory.
func StartRedisServer() (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed (scripts/install-brokers installs it): %w", err)
	}
	ver, _ := exec.Command(bin, "--version").Output()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "bench-redis-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", dir,
		"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &RedisServer{Addr: addr, cmd: cmd, dir: dir, done: make(chan struct{}), Version: strings.TrimSpace(string(ver))}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		_ = c.Close()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			_ = os.RemoveAll(dir)
			return nil, errors.New("redis-server exited during startup")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Close()
			return nil, fmt.Errorf("redis-server not ready within 20s: %v", err)
		}
	}
}

// Pid is the server's process id.
func (s *RedisServer) Pid() int { return s.cmd.Process.Pid }

// Close stops the server and removes its directory.
func (s *RedisServer) Close() error {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	return os.RemoveAll(s.dir)
}

// RedisEnv is the Redis server of the benchmarks.
type RedisEnv struct {
	// Addr is the server's host:port.
	Addr string
	// ServerPid is the server's process id for CPU accounting; 0 when
	// unknown.
	ServerPid int
	seq       atomic.Int64
	admin     *goredis.Client
}

// NewRedisEnv connects to the server at addr.
func NewRedisEnv(addr string) (*RedisEnv, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	return &RedisEnv{Addr: addr, admin: c}, nil
}

// Close releases the admin client.
func (e *RedisEnv) Close() error { return e.admin.Close() }

// Name returns a name unique in this process.
func (e *RedisEnv) Name(prefix string) string {
	return prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(e.seq.Add(1), 10)
}

// drop deletes a benchmark stream so the server does not keep it.
func (e *RedisEnv) drop(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = e.admin.Del(ctx, key).Err()
}

// createGroup creates group on the stream key from its first entry.
func (e *RedisEnv) createGroup(key, group string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := e.admin.XGroupCreateMkStream(ctx, key, group, "0").Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		err = nil
	}
	return err
}

// RedisPeer is a Redis Streams client under test.
type RedisPeer struct {
	Name   string
	Config string
	// stream returns the Redis key the peer uses for topic.
	stream func(topic string) string
	// newProducer returns a producer for topic.
	newProducer func(env *RedisEnv, topic string) (kProducer, error)
	// newConsumer consumes every group of groups on topic (the groups
	// exist, at the start of the stream); on is called once per handled
	// entry, which is then acknowledged.
	newConsumer func(env *RedisEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error)
	// preload adds n entries of size bytes to topic in the format the
	// peer's consumer expects.
	preload func(env *RedisEnv, topic string, n, size int) error
}

func esStream(topic string) string { return "es:" + topic }

// RedisPeers returns the Redis peers, eventstream first.
func RedisPeers() []RedisPeer {
	return []RedisPeer{
		{
			Name: PeerBusRedis,
			Config: "DefaultDistributedConfig, RawSerializer; adapter defaults (XADDs of concurrent Emits pipelined, " +
				"XREADGROUP COUNT 256, acks batched into one XACK per round trip)",
			stream:      esStream,
			newProducer: func(env *RedisEnv, topic string) (kProducer, error) { return redisBusProducerMode(env, topic, false) },
			newConsumer: func(env *RedisEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
				return redisBusConsumerMode(env, topic, groups, concurrency, on, false)
			},
			preload: func(env *RedisEnv, topic string, n, size int) error {
				return redisBusPreloadMode(env, topic, n, size, false)
			},
		},
		{
			Name:        PeerBusRedisBinary,
			Config:      "as above with Distributed.BinaryMode: attributes as h:ce_ fields, the payload alone as the v field",
			stream:      esStream,
			newProducer: func(env *RedisEnv, topic string) (kProducer, error) { return redisBusProducerMode(env, topic, true) },
			newConsumer: func(env *RedisEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
				return redisBusConsumerMode(env, topic, groups, concurrency, on, true)
			},
			preload: func(env *RedisEnv, topic string, n, size int) error {
				return redisBusPreloadMode(env, topic, n, size, true)
			},
		},
		{
			Name:        PeerAdapterRedis,
			Config:      "redis.Adapter defaults; Publish, Subscribe + Ack (shows what the bus adds)",
			stream:      esStream,
			newProducer: redisAdapterProducer,
			newConsumer: redisAdapterConsumer,
			preload:     rawPreloadRedis(esStream, entryAdapter),
		},
		{
			Name: PeerGoRedis,
			Config: "one goroutine sends every XADD queued meanwhile in one pipeline, each caller waiting for its own reply; " +
				"consume: XREADGROUP COUNT 256 BLOCK 100ms, then one XACK for the batch",
			stream:      esStream,
			newProducer: goRedisProducer,
			newConsumer: goRedisConsumer,
			preload:     rawPreloadRedis(esStream, entryAdapter),
		},
		{
			Name: PeerGoRedisBusRecords,
			Config: "the go-redis consumer above draining the bus's own entries (structured CloudEvents with the fields " +
				"the bus writes, preloaded by the bus peer); consumption only",
			stream:      esStream,
			newConsumer: goRedisConsumer,
			preload: func(env *RedisEnv, topic string, n, size int) error {
				return redisBusPreloadMode(env, topic, n, size, false)
			},
		},
		{
			Name: PeerWatermillRedis,
			Config: "redisstream Publisher (one XADD per Publish) and Subscriber with a consumer group " +
				"(defaults: BlockTime 100ms, one XACK per message), default marshaller",
			stream:      func(topic string) string { return topic },
			newProducer: watermillRedisProducer,
			newConsumer: watermillRedisConsumer,
			preload:     rawPreloadRedis(func(topic string) string { return topic }, entryWatermill),
		},
	}
}

// RedisPeerByName returns the named peer.
func RedisPeerByName(name string) (RedisPeer, bool) {
	for _, p := range RedisPeers() {
		if p.Name == name {
			return p, true
		}
	}
	return RedisPeer{}, false
}

// RedisProduce adds sc.Events entries of sc.Payload bytes to a new stream
// from sc.Producers goroutines, each waiting for the reply to one XADD
// before sending the next.
func RedisProduce(env *RedisEnv, p RedisPeer, sc Scenario) (Sample, error) {
	if p.newProducer == nil {
		return Sample{}, na("consumption only")
	}
	topic := env.Name("produce")
	defer env.drop(p.stream(topic))
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

// RedisConsume creates sc.Groups groups on a new stream, preloads
// sc.Events entries, and times from subscribing until every group handled
// them all.
func RedisConsume(env *RedisEnv, p RedisPeer, sc Scenario) (Sample, error) {
	topic := env.Name("consume")
	key := p.stream(topic)
	defer env.drop(key)
	groups := make([]string, sc.Groups)
	for i := range groups {
		groups[i] = "g" + strconv.Itoa(i)
		if err := env.createGroup(key, groups[i]); err != nil {
			return Sample{}, fmt.Errorf("%s: create group: %w", p.Name, err)
		}
	}
	if err := p.preload(env, topic, sc.Events, sc.Payload); err != nil {
		return Sample{}, fmt.Errorf("%s: preload: %w", p.Name, err)
	}
	s, err := timedConsume(func(on func()) (kConsumer, error) {
		return p.newConsumer(env, topic, groups, sc.Concurrency, on)
	}, sc.Events, sc.Groups, env.ServerPid, sc.window)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w", p.Name, err)
	}
	return s, nil
}

// --- eventstream ---

func newRedisAdapter(env *RedisEnv) (*redis.Adapter, error) {
	return redis.NewAdapter(redis.Config{Addr: env.Addr, Logger: quiet, ReadCount: RedisReadCount})
}

// adapter opens a new adapters/redis adapter on env's server.
func (env *RedisEnv) adapter() (eventstream.MQAdapter, error) { return newRedisAdapter(env) }

func redisBusProducerMode(env *RedisEnv, topic string, binary bool) (kProducer, error) {
	return busProducerOver(env.adapter, binary, topic)
}

func redisBusConsumerMode(env *RedisEnv, topic string, groups []string, concurrency int, on func(), binary bool) (kConsumer, error) {
	return busConsumerOver(env.adapter, binary, topic, groups, concurrency, on)
}

func redisBusPreloadMode(env *RedisEnv, topic string, n, size int, binary bool) error {
	return preloadWith(func() (kProducer, error) { return redisBusProducerMode(env, topic, binary) }, n, size)
}

func redisAdapterProducer(env *RedisEnv, topic string) (kProducer, error) {
	return adapterProducerOver(env.adapter, topic)
}

func redisAdapterConsumer(env *RedisEnv, topic string, groups []string, concurrency int, on func()) (kConsumer, error) {
	return adapterConsumerOver(env.adapter, topic, groups, concurrency, on)
}
