// Package adaptertest checks that an eventstream.MQAdapter honours the
// adapter contract documented on eventstream.MQAdapter. Adapter authors call
// Run from a test:
//
//	func TestContract(t *testing.T) {
//		adaptertest.Run(t, func(t *testing.T) eventstream.MQAdapter {
//			a, err := mybroker.New(mybroker.Config{Brokers: brokers})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return a
//		})
//	}
//
// Run runs one subtest per contract rule, each with a new adapter from the
// Factory and with its own topic and group names (derived from the test name
// plus a random suffix, restricted to [a-zA-Z0-9._-]), so every case may share
// one broker and runs of the suite do not see each other's messages. The
// cases, named as the subtests, check that:
//
//   - RoundTrip: a message published with Publish arrives with its topic and
//     value, without a key and with a timestamp close to the publish time.
//   - RecordRoundTrip: with eventstream.RecordPublisher, the key, value and a
//     given timestamp (to the millisecond) arrive unchanged.
//   - Headers: with eventstream.RecordPublisher and messages implementing
//     eventstream.HeaderCarrier, headers arrive unchanged and a record
//     without headers arrives without any; messages that also implement
//     eventstream.HeaderLister list exactly what Headers holds.
//   - EmptyPayload, LargePayload (1 MiB unless WithLargeMessageSize) and
//     BinaryPayload (every byte value, invalid UTF-8) arrive byte for byte.
//   - TopicIsolation: a subscription only receives its own topic.
//   - GroupsFanOut: two groups each receive every message.
//   - CompetingConsumers: two subscriptions of one group, acknowledging
//     everything, receive every message between them and no message twice.
//   - RedeliveryAfterCancel: messages received but not acknowledged are
//     delivered again to the next subscription of the group, acknowledged
//     ones are not, and an Ack after the subscription ended is harmless.
//   - AckTwice: acknowledging a message twice acknowledges nothing else.
//   - CancelClosesChannel, ContextCancelEndsSubscription and
//     CloseEndsSubscriptions: the channel is closed when the subscription
//     ends by cancel, by its context or by Close, and no goroutine is left
//     behind (after cancel, or at the latest after Close for adapters that
//     keep shared background goroutines until Close; see below).
//   - CloseTwice, PublishAfterClose and SubscribeAfterClose: Close is
//     idempotent and the adapter refuses work after Close (an error is
//     required; one that does not wrap eventstream.ErrAdapterClosed is only
//     logged).
//   - ConcurrentPublishers: messages published from 8 goroutines at once are
//     all delivered.
//   - KeyOrder: with eventstream.RecordPublisher, messages of one key reach a
//     single consumer in publish order.
//
// Cases that need an optional capability the adapter lacks are skipped with
// the reason. The cases never sleep to let something happen: they wait for
// messages with a timeout (WithTimeout), and to check that a message does
// not come back they publish a sentinel message afterwards and wait for it.
// Every case either publishes before its group first subscribes (a new group
// starts at the earliest message) or subscribes before publishing, so
// adapters whose group join is slow or asynchronous pass too, provided a new
// group starts at the earliest retained message.
//
// The goroutine checks use go.uber.org/goleak and look at every goroutine of
// the test binary, so Run must not run in parallel with other tests
// (do not call t.Parallel in the test that calls Run, nor run other tests
// in parallel with it). Goroutines that exist when the Factory returns are
// ignored.
package adaptertest
