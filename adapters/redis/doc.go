// Package redis is an eventstream.MQAdapter for Redis Streams (Redis 6.2 or
// later; 7.0 or later for the report of trimmed pending entries), built on
// github.com/redis/go-redis/v9.
//
//	ad, err := redis.NewAdapter(redis.Config{Addr: "127.0.0.1:6379"})
//	if err != nil { ... }
//	defer ad.Close()
//
// # Topology
//
// A topic is one stream, named Config.KeyPrefix + topic ("es:orders" by
// default). A consumer group of the bus is a Redis consumer group on that
// stream, created with MKSTREAM from the start of the stream ("0"), so a
// new group receives every entry still retained. Every subscription is a
// consumer of its own, named host-pid-uuid. An entry is
//
//	XADD es:<topic> * v <value> [k <key>] [t <unix ms>] [h:<name> <value>]...
//
// so plain Redis clients can read what the adapter writes and write what it
// reads. An entry without a "v" field (another producer's layout) is
// delivered with a JSON object of its fields as the value.
//
// # Publishing
//
// Publish and PublishRecord return nil only once Redis answered the XADD.
// Concurrent publishes are pipelined: one goroutine sends everything that
// queued while its previous pipeline was in flight (up to
// Config.MaxPublishBatch XADDs) as one pipeline, without a batch timer. A
// temporary failure (connection lost, LOADING after a restart, failover) is
// retried with backoff until the caller's context ends; a lost reply cannot
// tell whether the entry was added, so a retry may add it twice. Other Redis
// errors are returned at once.
//
// # Consuming
//
// A subscription's reader alternates between XREADGROUP ">" with COUNT
// Config.ReadCount and a short BLOCK (Config.Block: a blocked read cannot be
// interrupted, so this bounds how long cancel and Close wait) and, every
// Config.ClaimInterval, XAUTOCLAIM of the group's entries that were idle for
// Config.ClaimIdle. The adapter parses these replies itself (values stay
// in the reply buffer, no per-entry map), except with a cluster client,
// which follows MOVED and ASK only for go-redis' own commands. At most
// Config.ReadCount entries wait in the subscription's channel, and at most
// Config.MaxInFlight delivered entries wait for
// their Ack; reading pauses meanwhile. Ack queues the ID and returns; one
// XACK carries every ID queued while the previous XACK was in flight (up to
// Config.AckBatch). While an entry is in flight its subscription refreshes
// its idle time every ClaimIdle/3 (XCLAIM JUSTID to itself), so a slow
// handler does not lose it to a sibling.
//
// Delivery is at least once. When a subscription ends (cancel, its context,
// Close) it stops reading, sends its last acks and hands its pending
// entries back to the group by making them look idle for a year (XCLAIM
// IDLE), so the next XAUTOCLAIM of any member takes them at once, and
// deletes its consumer only when it has no pending entries left (deleting a
// consumer discards its pending entries). A consumer whose process died
// keeps its entries until another member takes them over, ClaimIdle after
// they were delivered; consumers left without pending entries are deleted
// after Config.ConsumerExpiry by a live member of the group.
//
// # Order
//
// One subscription receives new entries in stream order, so with the bus's
// per-key workers events of one key are handled in publish order at any
// concurrency. Entries taken over (Message.Redelivered) may arrive after
// later ones. Across several subscriptions of one group, within one process
// or many, Redis hands out entries in order but they compete: two entries
// of one key may be handled at the same time by two members. Run one
// subscription per group when per-key order must hold across the group.
//
// # Trimming
//
// With Config.MaxLen set, every stream the adapter publishes to is trimmed
// every Config.TrimInterval by a Lua script that computes, atomically, the
// oldest entry some group still needs (the oldest pending ID, or the entry
// after the last delivered one) and removes only entries below it (XTRIM
// MINID ~ with LIMIT), so trimming never loses an entry a group has not
// acknowledged: a stream grows beyond MaxLen while a group lags and shrinks
// once it caught up. Config.TrimUnacknowledged trims to exactly MaxLen
// instead and logs, per trim, how many unacknowledged entries it dropped
// and for which groups.
//
// # Failures
//
// Connection errors are retried by every loop with backoff and logged.
// When Redis answers NOGROUP (restarted without persistence, stream or
// group deleted), the subscription recreates the group from the start of
// the stream and logs the loss at level Error. With AOF persistence
// (appendfsync always) a restart loses nothing: every entry whose XADD
// returned, and every pending entry, is still there. With appendfsync
// everysec about a second of writes can be lost, and replication to
// replicas is asynchronous. An eviction policy other than noeviction can
// evict whole streams.
//
// go-redis writes some diagnostics of its own (failed dials, for example)
// through its process-wide logger, which the adapter leaves alone; silence or
// redirect it with go-redis' SetLogger.
package redis
