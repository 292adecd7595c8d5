// Package kafka is an eventstream.MQAdapter for Apache Kafka and other
// brokers speaking the Kafka protocol, built on github.com/segmentio/kafka-go.
//
//	a, err := kafka.NewAdapter(kafka.Config{Brokers: []string{"localhost:9092"}})
//	if err != nil { ... }
//	defer a.Close()
//
// # Producing
//
// Every topic partition has a bounded queue (Config.MaxBufferedRecords
// records; Publish blocks, honouring its context, while it is full), and
// every broker has one writer goroutine for the partitions it leads. The
// writer takes everything that queued up in those partitions, of all topics,
// while its previous produce request was in flight and sends it as ONE
// multi-topic, multi-partition request (up to Config.MaxBatchRecords records
// and Config.MaxBatchBytes bytes in all; partitions left over go first next
// time). A lone publish therefore costs one broker round trip, with no batch
// timer, while concurrent publishes share requests across partitions. A
// writer has one request in flight at a time and a partition is only sent by
// the writer of its leader, so a partition never has two requests in flight
// and its records keep their order. Publish returns nil only after the broker
// acknowledged the record's partition at Config.RequiredAcks (all in-sync
// replicas by default). Errors are per partition: only the records of a
// failed partition are retried, until the caller's context is done, and a
// partition whose leader moved is handed to the new leader's writer. Keyed
// records go to the partition chosen by the Java client's default partitioner
// (murmur2), so keys map to the same partitions as in other Kafka clients;
// unkeyed records are spread round-robin. Keys, headers and timestamps are
// carried natively in the record. A writer encodes the record batches itself
// and sends them over a connection of its own to its broker (cluster
// metadata comes from kafka-go's Transport), honouring the throttle time a
// broker's quota asks for.
//
// # Consuming
//
// Subscribe joins a consumer group with the classic group protocol (eager
// rebalancing, the "range" and "roundrobin" assignors), which the adapter
// runs itself on connections of its own to the group coordinator (requests
// encoded with github.com/twmb/franz-go/pkg/kmsg). Each
// partition assigned to the member is fetched by its own goroutine, over a
// connection of its own to the partition's leader, which may have up to
// Config.MaxInFlightPerPartition messages delivered and not yet
// acknowledged. The adapter decodes the fetched record batches itself
// (record format 2, Kafka 0.11 and later; CRC checked; any compression
// codec): a delivered message owns one copy of its key, value and headers,
// and consecutive records with identical headers share one header map. A
// batch that passed its CRC but cannot be decoded (it does not decompress,
// decompresses past Config.MaxDecompressedBatchBytes, or its records are
// malformed; for the message sets of the formats before Kafka 0.11, a
// compressed message past the bound) would come back unchanged on every
// fetch: it is delivered, in its place in the partition, as one stand-in
// message whose DecodeError is not nil, whose Value is the batch as fetched
// (up to 64 KiB) and whose headers give its offsets and size. The bus
// dead-letters it (eventstream.Undecodable) and its ack moves the partition
// past the batch; nothing is skipped silently and nothing blocks. Data
// whose extent cannot be trusted (a CRC mismatch, a bad batch length) is
// never skipped: its
// partition stays there, logging an ERROR and fetching it again every few
// seconds, while the other partitions go on. Ack may be called in any order; per partition the adapter
// tracks the delivered offsets and commits only up to just past the highest
// offset below which every delivered message was acknowledged, so a gap is
// never skipped and a commit never moves backwards. Commits are batched
// (Config.CommitInterval, Config.CommitCount) and flushed when the
// subscription ends and before partitions are given up in a rebalance: the
// member stops fetching, waits up to Config.RevokeTimeout for in-flight
// messages, commits and only then rejoins. Acks for a generation that ended
// are dropped, never committed under a later generation; those messages are
// delivered again (at-least-once).
//
// # Deleted topics
//
// A subscription whose topic is deleted ends: its channel is closed (the
// bus reports that as the adapter ending the subscription, and Off then
// returns an error wrapping eventstream.ErrSubscriptionEnded), with one
// ERROR log naming the topic and the group, and its pending commits are
// dropped, since they cannot succeed. The subscription asks a broker for
// the topic's metadata (never letting it create the topic) every
// Config.PartitionWatchInterval, at once when a fetch or a commit is told
// the topic is unknown, and every 250ms while it is missing; the topic
// counts as deleted once the broker called it UNKNOWN_TOPIC_OR_PARTITION
// for 3s (real Kafka briefly says that about a topic created a moment
// ago), about 3s after the deletion on Apache Kafka 4.x and 3.9.x. A
// topic deleted and created again under the same name has a new topic id:
// the subscription notices it at its next check or commit, ends the same
// way and never commits offsets of the deleted topic to the new one, so no
// record of the new topic is skipped by a commit (records fetched from it
// meanwhile are not committed): a commit names the topic by its id where
// the group coordinator supports that (OffsetCommit v10, Kafka 4.1 and
// later), so the broker refuses it, and elsewhere compares the id in the
// metadata first. A subscription never creates its topic again, not even with
// Config.AutoCreateTopics; Publish with AutoCreateTopics does.
//
// # Failover
//
// A member that is killed does not leave its group: the coordinator drops
// it once Config.SessionTimeout passed without a heartbeat and starts a
// rebalance. The other members learn of it with their next heartbeat
// (Config.HeartbeatInterval), give their partitions up (waiting at most
// Config.RevokeTimeout for in-flight messages, less when they are
// acknowledged sooner), commit, rejoin and get the dead member's
// partitions. Failover therefore takes about SessionTimeout +
// HeartbeatInterval + the time to give partitions up: 10–12s with the
// defaults (measured from the last SIGKILL until a 20,000-event stream was
// finished: 10.4s and 11.8s on the embedded broker), 1.5–2.7s with a 1.5s
// session timeout and a 100ms heartbeat (12 runs on the embedded broker;
// 1.6s on Apache Kafka 4.x and 3.9.x). A lower SessionTimeout moves partitions sooner (the broker's
// group.min.session.timeout.ms, 6s by default, is the floor) but lets a GC
// pause or a network hiccup evict a healthy member; keep HeartbeatInterval
// at a third of it or less. Config.RebalanceTimeout bounds how long the
// coordinator waits for the live members to rejoin; it matters only when
// one of them does not. A member that stops normally (Close, cancel) leaves
// the group, so its partitions move at once.
//
// The adapter runs the group protocol itself: a JoinGroup or SyncGroup is
// given as long as the coordinator may legitimately hold it (twice
// RebalanceTimeout plus SessionTimeout), a failed join keeps the member id
// (only UNKNOWN_MEMBER_ID makes the member start over), and one heartbeat
// loop per subscription, on its own connection, runs through generations,
// revoking and rejoining alike, also for a member that was assigned no
// partitions.
//
// Package kafkatest starts an embedded broker for tests.
package kafka
