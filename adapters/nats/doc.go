// Package nats is an eventstream.MQAdapter for NATS JetStream, built on
// github.com/nats-io/nats.go and its jetstream package.
//
//	a, err := nats.NewAdapter(nats.Config{URL: "nats://127.0.0.1:4222"})
//	if err != nil { ... }
//	defer a.Close()
//
// It needs a server with JetStream enabled (nats-server -js), version 2.9
// or later, reached through the account's own JetStream API ($JS.API):
// JetStream domains and API prefixes (leaf nodes importing another
// account's JetStream) are not supported. Stream and consumer management go
// through the jetstream package; publishing and pulling use the JetStream
// wire protocol directly on the connection, so that publishes pipeline and
// a subscription's pulls stay within its MaxInFlight and MaxInFlightBytes.
// Package natstest
// starts an embedded server for tests; importing this package does not
// link the NATS server.
//
// # Topology
//
// Every topic has its own stream, named by Adapter.StreamName
// (Config.StreamPrefix + escaped topic, "ES_orders" for "orders"), holding
// one subject, Adapter.Subject ("es.orders"). Streams use limits retention
// (Config.MaxAge, MaxBytes, MaxMsgs; DiscardOld by default, DiscardNew makes
// publishing fail while the stream is full), so any number of groups read
// the same stream: a work-queue stream would refuse a second group, and
// interest retention would hide the history from groups created later.
// Streams and consumers are created on first use; an existing stream is used
// as it is, so operators may create or tune them beforehand.
//
// Every consumer group is one durable pull consumer on the stream, named by
// Adapter.ConsumerName, with explicit acknowledgements and DeliverAll: a new
// group starts at the first message the stream retains, and every group gets
// every message. The subscriptions of one group, in one process or many,
// compete for its messages.
//
// # Publishing
//
// Publish and PublishRecord publish asynchronously underneath and wait for
// their own JetStream acknowledgement, so they return nil only once the
// message is stored, while concurrent callers overlap their round trips (up
// to Config.MaxPendingPublishes outstanding). The key travels in the es-key
// header (es-key-b64 for keys that are not printable ASCII), Record.Time in
// es-time, Record.Headers as headers of their own name; names starting with
// "Nats-" or "es-" are refused, and headers NATS cannot carry unchanged
// (non-ASCII names, CR/LF in values, ...) travel encoded and arrive intact.
// The bus's structured events travel as the CloudEvents NATS binding maps
// them, with no header at all unless the event has a key, headers or trace
// context of its own (the Adapter implements eventstream.BareEnvelope;
// Config.EnvelopeHeaders adds content-type and es-time back): the payload
// is the JSON envelope, which holds the event's time and content type, and
// a receiver's Timestamp is the server's store time.
// Transient failures (disconnection, server restart, acknowledgement
// timeout) are retried until the caller's context is done; a retried
// message may be stored twice.
//
// # Consuming
//
// A subscription pulls with one pull request at a time and never asks for
// more than the room it has left under Config.MaxInFlight messages and
// Config.MaxInFlightBytes bytes (it pulls as soon as half of both is free,
// after a short linger for less; when the next message did not fit in the
// bytes left, once there is room for it), so the messages it holds (fetched
// and not yet acknowledged) never exceed those bounds, but for a single
// message larger than MaxInFlightBytes: that one is pulled on its own once
// the subscription holds nothing else (the byte bound needs nats-server 2.11
// or later, see Config.MaxInFlightBytes). Messages arrive in stream order.
// Messages wait in no buffer the adapter does not track: every
// Config.InProgressInterval the subscription tells the
// server that the messages it holds are still being worked on, so a handler
// slower than Config.AckWait does not get its message redelivered underneath
// it. Config.MaxAckPending caps the unacknowledged messages of the whole
// group; keep it at least the number of subscriptions times MaxInFlight.
//
// Ack sends a JetStream acknowledgement without waiting for an answer. When
// a subscription ends (cancel, its context, Close) it stops pulling, ends
// the subscription of its pull requests' inbox without dropping what is on
// the way (it waits for a round trip to the server, so that every message
// the server sent has arrived; what the server assigns after it saw the
// unsubscription it gives to another member), and sends a negative
// acknowledgement for every message it holds that the reader never took
// from the channel, so the group gets them again at once. A message the
// reader took stays the reader's until it is acknowledged, so that no other
// member processes it while a handler still does: the cancel function hands
// back those not acknowledged (the bus calls it after its handlers
// returned); after an end by the context they can still be acknowledged
// (after Close they cannot: the connection is gone, and Ack returns an error
// wrapping ErrAdapterClosed), and otherwise the server redelivers them after
// AckWait. An Ack for a message handed back is
// ignored. A member that dies without ending its subscriptions (a crash)
// leaves its messages invisible until AckWait passes; then the server
// delivers them to the other members.
//
// # Order
//
// A subscription receives the messages of its stream in order, so the bus
// keeps per-key order within one subscription at any concurrency. A
// redelivered message (after a Nak or AckWait) may arrive after later ones.
// Across the members of a group there is no per-key order: they compete for
// single messages, not for keys. Config.Exclusive (nats-server 2.11+: pinned
// consumers) changes that: one member of the group receives everything while
// the others stand by and take over when it ends (it unpins itself) or stops
// pulling for Config.PinnedTTL, so order holds across members too, except for
// redeliveries around a takeover: the member taking over gets first what the
// old one held (handed back in stream order, before it unpins) or had on the
// way when it left (the server queues those for redelivery as it notices),
// and the two groups may interleave. At most Config.MaxInFlight messages are
// concerned; TestExclusiveBusKeyOrder checks this with two buses.
//
// # Failures
//
// The adapter reconnects forever (the nats.go default gives up after about
// two minutes), every Config.ReconnectWait; publishes and acks made meanwhile
// are buffered by the client (Config.ReconnectBufSize). Pull requests lost
// with the connection are sent again once it is back (and missed idle
// heartbeats, Config.PullHeartbeat, catch requests lost otherwise);
// publishes that were waiting for an acknowledgement when the connection
// broke are sent again then too. A consumer or stream deleted behind
// the adapter's back is created again (the new consumer starts at the first
// retained message: its deliveries are at-least-once). With file storage
// (the default) a server restart loses nothing that was acknowledged to a
// publisher, and subscriptions resume by themselves. Acknowledgements carry
// the stream and sequence, so an acknowledgement sent over a new connection
// still counts, and one lost with the old connection only causes a
// redelivery.
//
// # Server versions
//
// Everything above works on nats-server 2.9 (the Debian package is 2.9.10)
// and later, except Config.Exclusive, which needs 2.11 (Subscribe reports
// ErrNotSupported otherwise). Other features of 2.10 and later (multiple
// filter subjects, per-message TTL) are not used.
package nats
