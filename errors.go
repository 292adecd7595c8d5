package eventstream

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these when the
// condition applies, so callers can test with errors.Is.
var (
	// ErrClosed is returned by On, Emit and Publish after Close.
	ErrClosed = errors.New("eventstream: bus closed")
	// ErrInvalidConfig is wrapped by New when the Config is unusable.
	ErrInvalidConfig = errors.New("eventstream: invalid config")
	// ErrInvalidOption is wrapped by On and Emit when an option value is
	// unusable (zero or negative sizes, nil retry policy, ...).
	ErrInvalidOption = errors.New("eventstream: invalid option")
	// ErrNilHandler is returned by On when the handler is nil.
	ErrNilHandler = errors.New("eventstream: nil handler")
	// ErrEmptyTopic is returned by On and Emit when the topic is empty.
	ErrEmptyTopic = errors.New("eventstream: empty topic")
	// ErrInvalidRetryPolicy is wrapped when a RetryPolicy has nonsense values.
	ErrInvalidRetryPolicy = errors.New("eventstream: invalid retry policy")
	// ErrUnknownSubscription is returned by Off for a subscription this bus
	// did not create.
	ErrUnknownSubscription = errors.New("eventstream: unknown subscription")
	// ErrNoConsumerGroup is returned by On in distributed mode when neither
	// the subscription nor the config names a consumer group.
	ErrNoConsumerGroup = errors.New("eventstream: consumer group required")
	// ErrDrainTimeout is wrapped by Off and Close when in-flight handlers did
	// not finish within the drain timeout.
	ErrDrainTimeout = errors.New("eventstream: drain timeout")
	// ErrUnsubscribed is the failure reason of events that were queued for a
	// subscription when it was removed and could not be handed to another
	// member of its group.
	ErrUnsubscribed = errors.New("eventstream: subscription removed before delivery")
	// ErrPanic is wrapped by the error a handler panic turns into.
	ErrPanic = errors.New("eventstream: handler panicked")
	// ErrHandlerPanic is ErrPanic under the name the Observer contract uses:
	// errors.Is(err, ErrHandlerPanic) and errors.Is(err, ErrPanic) agree.
	ErrHandlerPanic = ErrPanic
	// ErrDecode is wrapped when a message cannot be decoded: not an
	// envelope, truncated, or a content type the Serializer cannot read.
	ErrDecode = errors.New("eventstream: cannot decode message")
	// ErrContentType is wrapped by Event.Unmarshal when the event's content
	// type does not match the Serializer's.
	ErrContentType = errors.New("eventstream: content type mismatch")
	// ErrAdapterContract is wrapped when an MQAdapter breaks its contract:
	// Subscribe returned a nil channel or cancel func without an error (On
	// fails), or the subscription sent a nil Message (reported as a failure
	// and skipped).
	ErrAdapterContract = errors.New("eventstream: adapter broke the MQAdapter contract")
	// ErrSubscriptionEnded is wrapped by Off when the adapter ended the
	// subscription on its own (closed its channel): the bus logged it,
	// removed the subscription and counts it no more in Stats.Subscriptions.
	ErrSubscriptionEnded = errors.New("eventstream: the adapter ended the subscription")
	// ErrAdapterClosed is wrapped by MQAdapter methods called after Close.
	ErrAdapterClosed = errors.New("eventstream: adapter closed")
)
