package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// RequiredAcks selects how many replicas must store a produced batch before
// the broker acknowledges it. The zero value means AcksAll.
type RequiredAcks int

const (
	// AcksAll waits for every in-sync replica (Kafka acks=all). It is the
	// default: nothing is reported as published before the broker confirmed
	// it durably.
	AcksAll RequiredAcks = iota
	// AcksLeader waits for the partition leader only (Kafka acks=1).
	AcksLeader
	// AcksNone does not wait for any acknowledgement (Kafka acks=0): Publish
	// returns as soon as the request was written to the connection, so a
	// message can be lost without an error. Use only when loss is acceptable.
	AcksNone
)

// Compression selects the codec applied to produced batches. The zero value
// means no compression.
type Compression int

const (
	// CompressionNone sends batches uncompressed.
	CompressionNone Compression = iota
	// CompressionGzip compresses batches with gzip.
	CompressionGzip
	// CompressionSnappy compresses batches with snappy.
	CompressionSnappy
	// CompressionLZ4 compresses batches with lz4.
	CompressionLZ4
	// CompressionZstd compresses batches with zstd.
	CompressionZstd
)

// StartOffset selects where a consumer group starts reading a partition for
// which it has no committed offset (or whose committed offset is no longer
// available). The zero value means StartEarliest.
type StartOffset int

const (
	// StartEarliest reads from the oldest message still stored.
	StartEarliest StartOffset = iota
	// StartLatest reads only messages published after the group joined.
	StartLatest
)

// SASLMechanism names a SASL authentication mechanism.
type SASLMechanism string

const (
	// SASLPlain is SASL/PLAIN: the password travels in clear text, so use it
	// only together with TLS.
	SASLPlain SASLMechanism = "PLAIN"
	// SASLScramSHA256 is SASL/SCRAM-SHA-256.
	SASLScramSHA256 SASLMechanism = "SCRAM-SHA-256"
	// SASLScramSHA512 is SASL/SCRAM-SHA-512.
	SASLScramSHA512 SASLMechanism = "SCRAM-SHA-512"
)

// SASL holds SASL credentials. All fields are required.
type SASL struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512.
	Mechanism SASLMechanism
	// Username is the SASL user name.
	Username string
	// Password is the SASL password.
	Password string
}

// Config configures an Adapter. Only Brokers is required; every zero value
// selects the documented default. NewAdapter rejects negative durations and
// counts and other nonsensical values with an error wrapping
// eventstream.ErrInvalidConfig.
type Config struct {
	// Brokers lists the bootstrap broker addresses ("host:port"). Required.
	Brokers []string
	// ClientID is sent to the brokers with every request. Default
	// "eventstream".
	ClientID string
	// TLS enables TLS with this configuration when non-nil.
	TLS *tls.Config
	// SASL enables SASL authentication when non-nil.
	SASL *SASL
	// MetadataMaxAge bounds how long cluster metadata (partition leaders)
	// is cached; after a leadership change, produce and fetch requests are
	// retried until the next refresh. Default 3s.
	MetadataMaxAge time.Duration
	// DialTimeout bounds establishing one connection, including the TLS
	// and SASL handshakes. Default 5s.
	DialTimeout time.Duration

	// RequiredAcks is the produce acknowledgement level. Default AcksAll.
	RequiredAcks RequiredAcks
	// Compression is the codec for produced batches. Default none.
	Compression Compression
	// MaxBatchRecords caps how many records one produce request carries.
	// Default 1000.
	MaxBatchRecords int
	// MaxBatchBytes caps the summed key and value size of the records in
	// one produce request (a single larger record is still sent alone).
	// Keep it below the broker's message.max.bytes. Default 512 KiB.
	MaxBatchBytes int
	// MaxBufferedRecords caps, per partition, how many records may wait for
	// a produce request; Publish blocks (honouring its context) while the
	// buffer is full. Default 10000.
	MaxBufferedRecords int
	// ProduceTimeout bounds one produce request to the broker. Publish
	// retries failed requests until its context is done. Default 10s.
	ProduceTimeout time.Duration

	// AutoCreateTopics creates a missing topic on first use with
	// TopicPartitions partitions and TopicReplicationFactor replicas. When
	// false a missing topic is an error wrapping ErrUnknownTopic that says
	// how to fix it, and the adapter never sends a request that could make
	// a broker with auto.create.topics.enable create the topic: existence
	// is checked with DescribeConfigs, and when the broker does not answer
	// that (an error, a timeout, no permission), only the adapter's cached
	// cluster metadata (at most MetadataMaxAge old) is consulted, and the
	// check's error is returned when that cache cannot be had either.
	AutoCreateTopics bool
	// TopicPartitions is the partition count of auto-created topics.
	// Default 1.
	TopicPartitions int
	// TopicReplicationFactor is the replication factor of auto-created
	// topics. Default 1.
	TopicReplicationFactor int

	// StartOffset is where a group without a committed offset starts.
	// Default StartEarliest.
	StartOffset StartOffset
	// SessionTimeout is the consumer group session timeout: a member that
	// died (killed, hung, cut off) is dropped from the group and its
	// partitions move after this long without a heartbeat, so it is most of
	// the failover time (see the package doc). The broker bounds it
	// (group.min.session.timeout.ms, default 6s). Default 10s.
	SessionTimeout time.Duration
	// HeartbeatInterval is how often a member heartbeats, in a generation
	// as well as while it gives partitions up and rejoins; it bounds how
	// fast a member notices a rebalance. Must be below SessionTimeout.
	// Default 1s.
	HeartbeatInterval time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance. A member waits up to twice this plus
	// SessionTimeout for the answer to a join before it gives up and
	// retries (with the same member id). Default 30s.
	RebalanceTimeout time.Duration
	// RevokeTimeout bounds how long a member that is giving up its
	// partitions in a rebalance waits for in-flight messages to be
	// acknowledged before it commits and rejoins. Must be below
	// RebalanceTimeout (the coordinator waits that long for the member to
	// rejoin) and SessionTimeout. The member keeps heartbeating meanwhile.
	// Default half the smaller of the two.
	RevokeTimeout time.Duration
	// MaxInFlightPerPartition caps how many delivered but unacknowledged
	// messages one partition may have. Default 256.
	MaxInFlightPerPartition int
	// CommitInterval is how often acknowledged offsets are committed.
	// Default 1s.
	CommitInterval time.Duration
	// CommitCount commits as soon as this many messages were acknowledged
	// since the last commit, without waiting for CommitInterval. Default
	// 1000.
	CommitCount int
	// PartitionWatchInterval is how often a subscription checks the topic's
	// partition count; when it changed, the member ends its generation so
	// the group rebalances and the new partitions get consumers. Default
	// 10s.
	PartitionWatchInterval time.Duration
	// FetchMaxWait is how long the broker may hold a fetch open waiting for
	// new messages. Default 500ms.
	FetchMaxWait time.Duration
	// FetchMaxBytes caps the size of one fetch response. Default 1 MiB, at
	// most 1 GiB. A record batch larger than it is still fetched whole.
	FetchMaxBytes int
	// MaxDecompressedBatchBytes bounds what one compressed record batch may
	// decompress to while it is consumed, so that a batch written to
	// inflate to gigabytes (a decompression bomb) cannot exhaust memory;
	// decompressing one takes at most about twice this much. A batch
	// past it is logged at Error level and delivered, like one that does
	// not decompress, as a stand-in message (Message.DecodeError): none of
	// its records is, the bus writes the batch as fetched to the
	// dead-letter topic and then moves past it (see the package doc). Raise
	// the bound if your producers write larger batches. Default 64 MiB, at
	// most 1 GiB.
	MaxDecompressedBatchBytes int

	// Logger receives diagnostics (retries, rebalances, commit failures).
	// Default: discard.
	Logger *slog.Logger
}

// ErrUnknownTopic is wrapped by Publish, PublishRecord and Subscribe when the
// topic does not exist and Config.AutoCreateTopics is false. The error's
// text names the topic and the two fixes: create the topic, or set
// Config.AutoCreateTopics.
var ErrUnknownTopic = errors.New("kafka: unknown topic")

// ErrInvalidTopic is wrapped by Publish, PublishRecord and Subscribe when the
// topic name is not a valid Kafka topic name: 1 to 249 characters from
// [a-zA-Z0-9._-], and not "." or "..".
var ErrInvalidTopic = errors.New("kafka: invalid topic name")

func checkTopic(topic string) error {
	if topic == "" {
		return eventstream.ErrEmptyTopic
	}
	if len(topic) > 249 || topic == "." || topic == ".." {
		return fmt.Errorf("%w %q", ErrInvalidTopic, topic)
	}
	for _, r := range topic {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("%w %q", ErrInvalidTopic, topic)
		}
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("kafka: %w: %s", eventstream.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// withDefaults validates c and returns a copy with every default filled in.
func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		return c, invalid("Brokers is empty; give at least one host:port")
	}
	c.Brokers = append([]string(nil), c.Brokers...)
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" || port == "" {
			return c, invalid("broker address %q is not host:port", b)
		}
	}
	if c.ClientID == "" {
		c.ClientID = "eventstream"
	}
	if c.SASL != nil {
		s := *c.SASL
		switch s.Mechanism {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			return c, invalid("SASL.Mechanism %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
		}
		if s.Username == "" || s.Password == "" {
			return c, invalid("SASL needs a Username and a Password")
		}
		c.SASL = &s
	}
	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, d := range []dur{
		{"DialTimeout", &c.DialTimeout, 5 * time.Second},
		{"MetadataMaxAge", &c.MetadataMaxAge, 3 * time.Second},
		{"ProduceTimeout", &c.ProduceTimeout, 10 * time.Second},
		{"SessionTimeout", &c.SessionTimeout, 10 * time.Second},
		{"HeartbeatInterval", &c.HeartbeatInterval, time.Second},
		{"RebalanceTimeout", &c.RebalanceTimeout, 30 * time.Second},
		{"CommitInterval", &c.CommitInterval, time.Second},
		{"FetchMaxWait", &c.FetchMaxWait, 500 * time.Millisecond},
		{"PartitionWatchInterval", &c.PartitionWatchInterval, 10 * time.Second},
	} {
		if *d.v < 0 {
			return c, invalid("%s is negative (%v)", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.RevokeTimeout < 0 {
		return c, invalid("RevokeTimeout is negative (%v)", c.RevokeTimeout)
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = min(c.RebalanceTimeout, c.SessionTimeout) / 2
	}
	if c.RevokeTimeout >= c.RebalanceTimeout || c.RevokeTimeout >= c.SessionTimeout {
		return c, invalid("RevokeTimeout (%v) must be below RebalanceTimeout (%v) and SessionTimeout (%v)",
			c.RevokeTimeout, c.RebalanceTimeout, c.SessionTimeout)
	}
	if c.HeartbeatInterval >= c.SessionTimeout {
		return c, invalid("HeartbeatInterval (%v) must be below SessionTimeout (%v)", c.HeartbeatInterval, c.SessionTimeout)
	}
	type num struct {
		name string
		v    *int
		def  int
	}
	for _, n := range []num{
		{"MaxBatchRecords", &c.MaxBatchRecords, 1000},
		{"MaxBatchBytes", &c.MaxBatchBytes, 512 << 10},
		{"MaxBufferedRecords", &c.MaxBufferedRecords, 10000},
		{"TopicPartitions", &c.TopicPartitions, 1},
		{"TopicReplicationFactor", &c.TopicReplicationFactor, 1},
		{"MaxInFlightPerPartition", &c.MaxInFlightPerPartition, 256},
		{"CommitCount", &c.CommitCount, 1000},
		{"FetchMaxBytes", &c.FetchMaxBytes, 1 << 20},
		{"MaxDecompressedBatchBytes", &c.MaxDecompressedBatchBytes, 64 << 20},
	} {
		if *n.v < 0 {
			return c, invalid("%s is negative (%d)", n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.FetchMaxBytes > maxFetchBytes {
		return c, invalid("FetchMaxBytes %d is above %d", c.FetchMaxBytes, maxFetchBytes)
	}
	if c.MaxDecompressedBatchBytes > maxFetchBytes {
		return c, invalid("MaxDecompressedBatchBytes %d is above %d", c.MaxDecompressedBatchBytes, maxFetchBytes)
	}
	if c.RequiredAcks < AcksAll || c.RequiredAcks > AcksNone {
		return c, invalid("unknown RequiredAcks %d", c.RequiredAcks)
	}
	if c.Compression < CompressionNone || c.Compression > CompressionZstd {
		return c, invalid("unknown Compression %d", c.Compression)
	}
	if c.StartOffset < StartEarliest || c.StartOffset > StartLatest {
		return c, invalid("unknown StartOffset %d", c.StartOffset)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (c *Config) saslMechanism() (sasl.Mechanism, error) {
	if c.SASL == nil {
		return nil, nil
	}
	switch c.SASL.Mechanism {
	case SASLPlain:
		return plain.Mechanism{Username: c.SASL.Username, Password: c.SASL.Password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, c.SASL.Username, c.SASL.Password)
	default:
		return scram.Mechanism(scram.SHA512, c.SASL.Username, c.SASL.Password)
	}
}

func (c *Config) kafkaAcks() kafkago.RequiredAcks {
	switch c.RequiredAcks {
	case AcksLeader:
		return kafkago.RequireOne
	case AcksNone:
		return kafkago.RequireNone
	default:
		return kafkago.RequireAll
	}
}

func (c *Config) kafkaCompression() kafkago.Compression {
	switch c.Compression {
	case CompressionGzip:
		return kafkago.Gzip
	case CompressionSnappy:
		return kafkago.Snappy
	case CompressionLZ4:
		return kafkago.Lz4
	case CompressionZstd:
		return kafkago.Zstd
	default:
		return 0
	}
}

func (c *Config) kafkaStartOffset() int64 {
	if c.StartOffset == StartLatest {
		return kafkago.LastOffset
	}
	return kafkago.FirstOffset
}

// maxFetchBytes is the largest FetchMaxBytes: a fetch response must fit the
// protocol's int32 sizes with room to spare.
const maxFetchBytes = 1 << 30
