// Package rabbitmq is an eventstream.MQAdapter for RabbitMQ (AMQP 0-9-1),
// built on github.com/rabbitmq/amqp091-go.
//
//	a, err := rabbitmq.NewAdapter(rabbitmq.Config{URL: "amqp://guest:guest@127.0.0.1:5672/"})
//	if err != nil { ... }
//	defer a.Close()
//
// # Topology
//
// A topic is a durable exchange "es.<topic>" (fanout; direct in partitioned
// mode). A consumer group is a durable queue "es.<topic>/<group>" bound to
// it ('%' and '/' in the names are percent-escaped), of Config.QueueType
// (quorum by default). Every bound queue gets a copy of every message, and
// the members of a group compete for the messages of its queue, so every
// group sees every message and each message is handled by one member of
// each group. Queues outlive their subscribers: a group keeps collecting
// messages while no member is subscribed. The adapter declares what it
// uses (idempotently) and declares it again after every reconnect; remove
// a group that is no longer wanted with rabbitmqctl delete_queue.
//
// # Groups must exist before messages are published
//
// RabbitMQ routes a message only to the queues bound when it is published:
// unlike a Kafka consumer group, a new group does not start at the earliest
// retained message. So that no message is lost silently, every publish is
// mandatory: a message no queue takes is returned by the broker and Publish
// fails with ErrUnroutable. Create groups before their first message is
// published by listing them in Config.Groups (declared on every
// connection), with DeclareGroup, or by subscribing. With the distributed
// bus this includes the dead-letter topic of each subscription
// (eventstream.DeadLetterTopicName) if dead letters are to be kept: while
// its queue is missing, the bus keeps retrying the dead-letter write and
// leaves the failed event unacknowledged.
//
// # Publishing
//
// Messages are persistent and published on one confirm-mode channel of a
// dedicated publishing connection. Publish returns nil only after the
// broker's publisher confirm; concurrent calls are pipelined (up to
// Config.MaxPending outstanding confirms), each waiting only for its own.
// The publishing connection's socket writes are coalesced: the frames of
// concurrent publishes go out together in one system call (at most 256 KiB
// wait to be written). A
// nack is ErrNacked, a returned message ErrUnroutable. The key travels in
// the "es-key" header (a byte array), the record time in "es-time" (Unix
// nanoseconds, int64) and in the AMQP timestamp property (seconds), user
// headers as string headers, except "content-type", which travels as the
// AMQP content-type property (the broker parses a header table on every
// publish, so the bus's structured messages carry only "es-time"); on
// delivery that property is reported as the "content-type" header.
// Header names starting with "es-" are
// reserved. A returned message is matched to its Publish call by its
// content (exchange, routing key, headers and body), so no other header is
// added; when the broker's copy matches no pending publish exactly, every
// pending publish to that exchange and routing key gets ErrUnroutable (a
// possible duplicate on retry, never a lost message).
//
// # Consuming
//
// Every subscription has its own channel on a shared consuming connection,
// with manual acknowledgements and a prefetch of Config.Prefetch. Acks go
// out on the channel that received the message, at most once per message: a
// second Ack is a no-op (RabbitMQ would close the channel on a repeated
// delivery tag). They are coalesced: a goroutine per channel sends one
// basic.ack multiple for every message handled below the oldest one still
// being handled (one frame, and one settle in a quorum queue's log, for
// many messages); messages handled above a slow one wait for it unless half
// the prefetch window waits, then they are acknowledged one by one. When the subscription ends its channel is closed
// and the broker requeues every unacknowledged message. Header values that
// are not strings, including nested ones such as x-death, are converted to
// strings (see Message.Headers); a header never fails a delivery. The
// broker's consumer_timeout (30 minutes by default) is the longest a
// handler may hold a message: after it the broker closes the channel and
// redelivers.
//
// # Failures
//
// A lost connection (broker restart, network failure, rabbitmqctl
// close_connection) is redialed with exponential backoff between
// Config.ReconnectMin and Config.ReconnectMax; Publish calls wait for the
// new connection, bounded by their context, and a publish whose confirm was
// lost with the connection is sent again (so it may be stored twice).
// Subscriptions open a new channel, declare their topology again and
// resume. Delivery tags restart on every channel, so the adapter never
// reuses a channel (amqp091's automatic recovery does, which makes an Ack of
// a pre-reconnect delivery acknowledge an unrelated message): an Ack for a
// delivery of a dead channel is dropped, and the broker redelivers that
// message. Wrong credentials or vhost fail Publish, Subscribe and
// DeclareGroup at once instead of waiting for the context.
//
// # Ordering
//
// A queue is FIFO, and with one member the bus keeps per-key order at any
// concurrency. Competing members of one group, however, share a queue round
// robin, so per-key order does not hold across them, and a redelivered
// message may arrive after later ones. Partitioned mode (Config.Partitions
// = N > 1) gives Kafka-like per-key order across members: every group has
// N queues "es.<topic>/<group>/<i>", each with RabbitMQ's single active
// consumer, bound to the topic's direct exchange with routing key "<i>"; a
// keyed message goes to partition FNV-1a(key) mod N (unkeyed messages
// round robin). The partitions are shared out among the members: each
// subscription holds a member slot (an exclusive queue
// "es.<topic>/<group>/member/<i>", which the broker deletes with the
// connection, so a member that dies loses it), and every
// Config.RebalanceInterval it lists the slots in use and consumes, as
// member r of M, the partitions p with p mod M == r, each on a channel of
// its own. A partition that moves to another member is released
// gracefully: its current owner stops handing out its messages, waits
// (up to Config.OperationTimeout) until those handed out are acknowledged,
// and closes the channel, so the next owner receives the rest in order;
// single active consumer on every partition queue keeps a second member
// from receiving while two members' views of the slots differ. So per-key
// order holds across members joining, leaving and dying, and a new member
// gets its share within about one interval. With more members than
// partitions the extra members are idle standbys. All adapters that use a
// topic must agree on Config.Partitions.
package rabbitmq
