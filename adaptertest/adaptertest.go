package adaptertest

import (
	"context"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
)

// Factory returns a new, empty adapter for one test case. Run closes it when
// the case ends (registering more cleanup with t.Cleanup is fine too).
type Factory func(t *testing.T) eventstream.MQAdapter

// Option changes how Run tests an adapter.
type Option func(*options)

type options struct {
	timeout   time.Duration
	largeSize int
	clockSkew time.Duration
	declare   GroupDeclarer
}

func defaultOptions() options {
	return options{
		timeout:   10 * time.Second,
		largeSize: 1 << 20,
		clockSkew: time.Minute,
	}
}

// WithTimeout sets how long a case waits for any single expected event: a
// message delivery, a channel close, or a call such as cancel or Close to
// return. The default is 10 seconds. Values <= 0 are ignored.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithLargeMessageSize sets the payload size of the LargePayload case. The
// default is 1 MiB; brokers whose maximum message size is smaller (Kafka's
// default limit is about 1 MB including overhead) should pass a size that
// fits. Values <= 0 are ignored.
func WithLargeMessageSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.largeSize = n
		}
	}
}

// WithClockSkew sets how far a message timestamp set by the broker may lie
// outside the interval in which Publish ran. The default is one minute.
// Values < 0 are ignored.
func WithClockSkew(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.clockSkew = d
		}
	}
}

// GroupDeclarer creates consumer group groupID on topic so that, from then
// on, the group keeps every message published to topic even before its first
// subscription. See WithGroupDeclarer.
type GroupDeclarer func(ctx context.Context, a eventstream.MQAdapter, topic, groupID string) error

// WithGroupDeclarer is for adapters on which a new group does not start at
// the earliest retained message but only sees messages published after the
// group was created (RabbitMQ, where a message reaches only the queues bound
// when it is published). The cases that publish before their group's first
// subscription then call declare for each of their groups before
// publishing, and log that they did; without this option those cases rely on
// a new group starting at the earliest retained message.
func WithGroupDeclarer(declare GroupDeclarer) Option {
	return func(o *options) { o.declare = declare }
}

// Run checks newAdapter's adapters against the eventstream.MQAdapter
// contract, one subtest per rule; the package documentation lists them. Each
// subtest gets a new adapter from newAdapter and closes it when it ends.
//
// Run must not run in parallel with other tests, because its goroutine leak
// checks see every goroutine of the test binary.
func Run(t *testing.T, newAdapter Factory, opts ...Option) {
	t.Helper()
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(newHarness(t, newAdapter, o))
		})
	}
}
