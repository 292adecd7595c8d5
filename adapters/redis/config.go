package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	goredis "github.com/redis/go-redis/v9"
)

// Config configures an Adapter. Exactly one way to reach Redis must be
// given: Addr, URL, SentinelAddrs (with MasterName), ClusterAddrs or Client.
// Every zero value selects the documented default. NewAdapter rejects
// negative durations and counts and other nonsensical values with an error
// wrapping eventstream.ErrInvalidConfig.
type Config struct {
	// Addr is the "host:port" of a single Redis server.
	Addr string
	// URL is a redis:// or rediss:// (TLS) URL as understood by go-redis
	// ParseURL, e.g. "redis://user:secret@127.0.0.1:6379/2". Username,
	// Password, DB and TLS must not be set as well; the URL carries them.
	URL string
	// MasterName and SentinelAddrs select a Redis Sentinel deployment: the
	// adapter asks the sentinels for the current master of MasterName and
	// follows failovers. Both or neither must be set.
	MasterName    string
	SentinelAddrs []string
	// SentinelUsername and SentinelPassword authenticate with the
	// sentinels (not with the master, see Username and Password).
	SentinelUsername string
	SentinelPassword string
	// ClusterAddrs are seed nodes of a Redis Cluster. A stream is one key,
	// so a topic lives on one shard.
	ClusterAddrs []string
	// Client is a caller-supplied go-redis client: a *redis.Client (also
	// from redis.NewFailoverClient) or a *redis.ClusterClient; a
	// *redis.Ring is refused. The adapter does not close it. Connection options (Username, Password,
	// DB, TLS, DialTimeout, PoolSize) must not be set with Client. Its
	// MaxRetries should be -1: go-redis re-sends a whole pipeline after a
	// network error, which can add a published entry twice (still at least
	// once, but avoidable); the adapter retries only the commands that
	// failed.
	Client goredis.UniversalClient

	// Username and Password authenticate with Redis (ACL user, or only
	// Password for requirepass).
	Username string
	Password string
	// DB selects the database; not allowed with ClusterAddrs (a cluster has
	// only database 0). Default 0.
	DB int
	// TLS enables TLS with this configuration when non-nil.
	TLS *tls.Config
	// DialTimeout bounds establishing one connection. Default 5s.
	DialTimeout time.Duration
	// PoolSize is the connection pool size per server. Every subscription
	// holds one connection while it waits in a blocking read, so raise it
	// when one process runs many subscriptions. Default: go-redis' default
	// (10 per GOMAXPROCS).
	PoolSize int

	// KeyPrefix is prepended to a topic to name its stream: topic "orders"
	// is the stream "es:orders" by default. Other producers and consumers
	// (plain Redis clients) use the same key.
	KeyPrefix string

	// Block is how long one XREADGROUP waits for new entries. A blocked
	// read cannot be interrupted, so it also bounds how long cancel and
	// Close wait for a subscription's reader. Default 500ms; at most 10s.
	// The adapter parses the reply itself, so go-redis gives the read only
	// the client's ReadTimeout (default 5s): a longer Block is shortened to
	// two thirds of it.
	Block time.Duration
	// ReadCount is the COUNT of one XREADGROUP or XAUTOCLAIM: how many
	// entries one round trip fetches at most. It is also the buffer of a
	// subscription's channel, so the next read overlaps the handling of
	// the previous batch. Default 256.
	ReadCount int
	// MaxInFlight caps how many entries one subscription has delivered
	// and not yet acknowledged; reading pauses while the cap is reached.
	// Default 1024.
	MaxInFlight int
	// ClaimIdle is how long an entry must have been pending with another
	// consumer of the group before a subscription takes it over
	// (XAUTOCLAIM). It bounds how long the entries of a consumer that died
	// without handing them back wait. Live subscriptions refresh the idle
	// time of the entries they hold every ClaimIdle/3, so a slow handler
	// does not lose its entry to a sibling. Default 30s; at least 3 times
	// Block.
	ClaimIdle time.Duration
	// ClaimInterval is how often a subscription looks for entries to take
	// over. Default ClaimIdle/4, at most 5s.
	ClaimInterval time.Duration
	// ConsumerExpiry is how long a consumer name must have been idle, with
	// no pending entries, before a live subscription of its group deletes
	// it (consumers of processes that died stay in the group otherwise).
	// A consumer with pending entries is never deleted: that would discard
	// its entries. Default 1h; at least ClaimIdle.
	ConsumerExpiry time.Duration
	// AckBatch caps how many IDs one XACK carries. Acks are sent as soon
	// as the previous XACK of the subscription returned, so under load
	// they batch by themselves. Default 1024.
	AckBatch int
	// ShutdownTimeout bounds what a subscription does when it ends:
	// sending the last acks and handing its pending entries back to the
	// group. Default 5s.
	ShutdownTimeout time.Duration

	// MaxPublishBatch caps how many XADDs one pipeline carries. Publishes
	// are sent as soon as the previous pipeline returned, so concurrent
	// publishes share round trips without a batch timer. Default 512.
	MaxPublishBatch int
	// MaxQueuedPublishes caps how many publishes may wait for a pipeline;
	// Publish blocks, honouring its context, while the queue is full.
	// Default 10000.
	MaxQueuedPublishes int

	// MaxLen bounds the length of every stream this adapter publishes to.
	// 0 (the default) disables trimming. Trimming never removes an entry
	// that a consumer group has not acknowledged yet (unless
	// TrimUnacknowledged is set): a stream grows beyond MaxLen while a
	// group lags, and shrinks again once it caught up. Trimming is
	// approximate (XTRIM ~): a stream may exceed MaxLen by up to one radix
	// tree node (stream-node-max-entries, default 100). With no consumer
	// group at all, entries beyond MaxLen are trimmed.
	MaxLen int64
	// TrimInterval is how often streams are trimmed. Default 1s.
	TrimInterval time.Duration
	// TrimUnacknowledged trims every stream to exactly MaxLen entries even
	// when consumer groups have not read or acknowledged them: those
	// entries are lost to the group. Every trim that drops such entries is
	// logged at level Warn with the count and the groups concerned, and
	// subscriptions log pending entries that vanished. Use it only when
	// memory matters more than delivery.
	TrimUnacknowledged bool

	// Logger receives diagnostics (retries, recreated groups, takeovers,
	// trimming). Default: discard.
	Logger *slog.Logger
}

// ErrUnknownMessage is returned by Ack for a message that this adapter did
// not deliver, or that was delivered to another consumer group.
var ErrUnknownMessage = errors.New("redis: message not delivered by this adapter to this group")

// ErrEmptyGroup is wrapped by Subscribe when the group name is empty.
var ErrEmptyGroup = errors.New("redis: empty consumer group name")

func invalid(format string, args ...any) error {
	return fmt.Errorf("redis: %w: %s", eventstream.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

func checkAddr(what, a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return invalid("%s %q is not host:port", what, a)
	}
	return nil
}

// withDefaults validates c and returns a copy with every default filled in.
func (c Config) withDefaults() (Config, error) {
	n := 0
	for _, set := range []bool{c.Addr != "", c.URL != "", len(c.SentinelAddrs) > 0 || c.MasterName != "", len(c.ClusterAddrs) > 0, c.Client != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return c, invalid("no server: set Addr, URL, SentinelAddrs with MasterName, ClusterAddrs or Client")
	case n > 1:
		return c, invalid("set only one of Addr, URL, SentinelAddrs/MasterName, ClusterAddrs and Client")
	}
	if c.Addr != "" {
		if err := checkAddr("Addr", c.Addr); err != nil {
			return c, err
		}
	}
	if c.URL != "" {
		if c.Username != "" || c.Password != "" || c.DB != 0 || c.TLS != nil {
			return c, invalid("URL carries the credentials, database and TLS; do not set Username, Password, DB or TLS with it")
		}
		if _, err := goredis.ParseURL(c.URL); err != nil {
			return c, invalid("URL: %v", err)
		}
	}
	if len(c.SentinelAddrs) > 0 || c.MasterName != "" {
		if len(c.SentinelAddrs) == 0 || c.MasterName == "" {
			return c, invalid("Sentinel needs both MasterName and SentinelAddrs")
		}
		c.SentinelAddrs = append([]string(nil), c.SentinelAddrs...)
		for _, a := range c.SentinelAddrs {
			if err := checkAddr("sentinel address", a); err != nil {
				return c, err
			}
		}
	} else if c.SentinelUsername != "" || c.SentinelPassword != "" {
		return c, invalid("SentinelUsername/SentinelPassword need SentinelAddrs")
	}
	if len(c.ClusterAddrs) > 0 {
		c.ClusterAddrs = append([]string(nil), c.ClusterAddrs...)
		for _, a := range c.ClusterAddrs {
			if err := checkAddr("cluster address", a); err != nil {
				return c, err
			}
		}
		if c.DB != 0 {
			return c, invalid("DB %d with ClusterAddrs: a Redis Cluster has only database 0", c.DB)
		}
	}
	if c.Client != nil {
		if _, ok := c.Client.(*goredis.Ring); ok {
			return c, invalid("Client is a *redis.Ring; use a *redis.Client or *redis.ClusterClient")
		}
		if c.Username != "" || c.Password != "" || c.DB != 0 || c.TLS != nil || c.DialTimeout != 0 || c.PoolSize != 0 {
			return c, invalid("Username, Password, DB, TLS, DialTimeout and PoolSize configure a client the adapter creates; set them on Client instead")
		}
	}
	if c.DB < 0 {
		return c, invalid("DB is negative (%d)", c.DB)
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "es:"
	}

	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, d := range []dur{
		{"DialTimeout", &c.DialTimeout, 5 * time.Second},
		{"Block", &c.Block, 500 * time.Millisecond},
		{"ClaimIdle", &c.ClaimIdle, 30 * time.Second},
		{"ClaimInterval", &c.ClaimInterval, 0},
		{"ConsumerExpiry", &c.ConsumerExpiry, time.Hour},
		{"ShutdownTimeout", &c.ShutdownTimeout, 5 * time.Second},
		{"TrimInterval", &c.TrimInterval, time.Second},
	} {
		if *d.v < 0 {
			return c, invalid("%s is negative (%v)", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Block < time.Millisecond || c.Block > 10*time.Second {
		return c, invalid("Block (%v) must be between 1ms and 10s (a blocked read cannot be interrupted)", c.Block)
	}
	if c.ClaimIdle < 3*c.Block {
		return c, invalid("ClaimIdle (%v) must be at least 3 times Block (%v)", c.ClaimIdle, c.Block)
	}
	if c.ClaimInterval == 0 {
		c.ClaimInterval = min(c.ClaimIdle/4, 5*time.Second)
	}
	if c.ClaimInterval > c.ClaimIdle {
		return c, invalid("ClaimInterval (%v) must not exceed ClaimIdle (%v)", c.ClaimInterval, c.ClaimIdle)
	}
	if c.ConsumerExpiry < c.ClaimIdle {
		return c, invalid("ConsumerExpiry (%v) must be at least ClaimIdle (%v)", c.ConsumerExpiry, c.ClaimIdle)
	}

	type num struct {
		name string
		v    *int
		def  int
	}
	for _, n := range []num{
		{"PoolSize", &c.PoolSize, 0},
		{"ReadCount", &c.ReadCount, 256},
		{"MaxInFlight", &c.MaxInFlight, 1024},
		{"AckBatch", &c.AckBatch, 1024},
		{"MaxPublishBatch", &c.MaxPublishBatch, 512},
		{"MaxQueuedPublishes", &c.MaxQueuedPublishes, 10000},
	} {
		if *n.v < 0 {
			return c, invalid("%s is negative (%d)", n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.MaxLen < 0 {
		return c, invalid("MaxLen is negative (%d)", c.MaxLen)
	}
	if c.TrimUnacknowledged && c.MaxLen == 0 {
		return c, invalid("TrimUnacknowledged needs MaxLen")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// newClient creates the go-redis client described by c (which has defaults
// filled in and no Client).
func (c *Config) newClient() (goredis.UniversalClient, error) {
	switch {
	case c.URL != "":
		o, err := goredis.ParseURL(c.URL)
		if err != nil {
			return nil, invalid("URL: %v", err)
		}
		o.DialTimeout = c.DialTimeout
		o.MaxRetries = -1
		o.ContextTimeoutEnabled = true
		if c.PoolSize > 0 {
			o.PoolSize = c.PoolSize
		}
		return goredis.NewClient(o), nil
	case len(c.SentinelAddrs) > 0:
		return goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:            c.MasterName,
			SentinelAddrs:         c.SentinelAddrs,
			SentinelUsername:      c.SentinelUsername,
			SentinelPassword:      c.SentinelPassword,
			Username:              c.Username,
			Password:              c.Password,
			DB:                    c.DB,
			TLSConfig:             c.TLS,
			DialTimeout:           c.DialTimeout,
			PoolSize:              c.PoolSize,
			MaxRetries:            -1,
			ContextTimeoutEnabled: true,
		}), nil
	case len(c.ClusterAddrs) > 0:
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:                 c.ClusterAddrs,
			Username:              c.Username,
			Password:              c.Password,
			TLSConfig:             c.TLS,
			DialTimeout:           c.DialTimeout,
			PoolSize:              c.PoolSize,
			MaxRetries:            -1,
			ContextTimeoutEnabled: true,
		}), nil
	default:
		return goredis.NewClient(&goredis.Options{
			Addr:                  c.Addr,
			Username:              c.Username,
			Password:              c.Password,
			DB:                    c.DB,
			TLSConfig:             c.TLS,
			DialTimeout:           c.DialTimeout,
			PoolSize:              c.PoolSize,
			MaxRetries:            -1,
			ContextTimeoutEnabled: true,
		}), nil
	}
}
