// Package kafkatest starts an embedded Kafka-protocol broker (franz-go's
// kfake) for tests of code that uses the eventstream Kafka adapter.
//
//	brokers := kafkatest.NewCluster(t, kfake.SeedTopics(3, "orders")).Addrs()
//	a, err := kafka.NewAdapter(kafka.Config{Brokers: brokers})
//
// The broker keeps everything in memory and is shut down by t.Cleanup. Its
// consumer-group session timeout floor is lowered to 100ms so tests can use
// short timeouts. For benchmarks that should not share a process with the
// broker, run the command in kafkatest/cmd/kfake instead.
package kafkatest

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Cluster is a running embedded broker cluster.
type Cluster struct {
	// Fake is the underlying kfake cluster, for fault injection
	// (Fault, ControlKey, MoveTopicPartition, ...).
	Fake *kfake.Cluster
}

// DefaultOpts are applied by NewCluster and Start before the caller's
// options: one broker, 3 partitions for topics created without a count, and
// group session timeouts allowed down to 100ms. Topics are not created on
// first use unless the caller adds kfake.AllowAutoTopicCreation or the
// adapter sets Config.AutoCreateTopics.
func DefaultOpts() []kfake.Opt {
	return []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(3),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}
}

// Start starts a cluster with DefaultOpts followed by opts. The caller must
// Close it.
func Start(opts ...kfake.Opt) (*Cluster, error) {
	c, err := kfake.NewCluster(append(DefaultOpts(), opts...)...)
	if err != nil {
		return nil, err
	}
	return &Cluster{Fake: c}, nil
}

// NewCluster starts a cluster with DefaultOpts followed by opts, fails tb
// when that is impossible, and closes the cluster in tb.Cleanup. Later
// options override earlier ones (for example kfake.NumBrokers(3)); pass
// kfake.AllowAutoTopicCreation() to let metadata requests create topics, or
// kfake.SeedTopics to create them up front.
func NewCluster(tb testing.TB, opts ...kfake.Opt) *Cluster {
	tb.Helper()
	c, err := Start(opts...)
	if err != nil {
		tb.Fatalf("kafkatest: starting embedded broker: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Brokers starts a cluster like NewCluster and returns its broker
// addresses: the one-line form for tests.
func Brokers(tb testing.TB, opts ...kfake.Opt) []string {
	tb.Helper()
	return NewCluster(tb, opts...).Addrs()
}

// Addrs returns the "host:port" addresses of the brokers.
func (c *Cluster) Addrs() []string { return c.Fake.ListenAddrs() }

// Close shuts the cluster down. It is idempotent.
func (c *Cluster) Close() { c.Fake.Close() }
