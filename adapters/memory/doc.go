// Package memory is an in-process eventstream.MQAdapter that behaves like a
// small partitioned message broker.
//
// It is meant for tests and single-process deployments of the distributed
// bus, and as the readable reference for anyone writing an adapter for a real
// broker: every rule of the eventstream.MQAdapter contract is implemented
// here in plain standard-library Go, and adaptertest.Run checks it.
//
// # Model
//
// Each topic is a retained log split into Config.Partitions partitions. A
// message published with a key (see eventstream.RecordPublisher) goes to the
// partition chosen by a hash of the key, so messages with the same key keep
// their publish order; messages without a key are spread round-robin.
//
// Each consumer group keeps, per partition, a committed offset: the first
// offset the group has not acknowledged yet. Acks may arrive in any order;
// the committed offset advances only over the contiguous acknowledged prefix,
// and acknowledged messages above it are remembered so they are not
// delivered again. A group that subscribes for the first time starts at the
// earliest retained message.
//
// The partitions of a topic are shared out among the live subscriptions
// (members) of a group; when a member joins or leaves, the partitions are
// reassigned and every partition that changes owner is resumed from the
// group's committed offset, so messages the previous owner received but did
// not acknowledge are delivered again (at-least-once delivery).
//
// A topic retains at most Config.Retention messages and Config.RetentionBytes
// bytes (keys, values and headers). A message is dropped
// once every group that ever subscribed to the topic has acknowledged it
// (and everything before it in its partition); when the topic is full,
// Publish fails with an error wrapping ErrTopicFull instead of dropping
// messages silently.
//
// Delivery is driven by the consumer: each subscription sends on an
// unbuffered channel, so at most one message per subscription is held in
// flight by the adapter and an idle consumer never makes memory grow beyond
// the retained log.
package memory
