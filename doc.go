// Package eventstream is an event bus for Go services: the same On / Off /
// Emit / Close API passes events between goroutines of one process (memory
// mode) or between processes through a message broker (distributed mode, over
// an MQAdapter such as adapters/kafka).
//
// # One engine
//
// Both modes run one subscription engine over a small internal transport:
// the in-process queues (memory mode) or the MQAdapter (distributed mode).
// An event travels
//
//	Emit/Publish → transport write (memory: into a queue of one member of
//	every consumer group; distributed: encoded by internal/wire, published)
//	→ the subscription's bounded queue → a worker → the handler, with
//	retries per RetryPolicy → settle: acknowledge, or requeue (Off/Close:
//	memory mode hands the event to another group member, distributed mode
//	leaves it for the broker to redeliver), or dead-letter and then
//	acknowledge.
//
// Off and Close stop input at once, give running handlers DrainTimeout,
// cancel their context and give them one more DrainTimeout. Stats, failure
// reporting and the dead-letter shape (see HeaderDeadLetterError) mean the
// same in both modes; package bustest checks it for every adapter.
//
// # Limits
//
// SubscribeConfig.Concurrency is at most MaxConcurrency and BufferSize at
// most MaxBufferSize (the queues are allocated when On is called).
package eventstream
