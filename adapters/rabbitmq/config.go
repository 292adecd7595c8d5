package rabbitmq

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// QueueType selects the RabbitMQ queue type of group queues.
type QueueType string

const (
	// QueueQuorum is a replicated, durable quorum queue (the default). It
	// was the faster type with pipelined confirms and prefetch on RabbitMQ
	// 3.10.
	QueueQuorum QueueType = "quorum"
	// QueueClassic is a durable classic queue.
	QueueClassic QueueType = "classic"
)

// Config configures an Adapter. Only URL is required; every zero value
// selects the documented default. NewAdapter rejects negative durations and
// counts and other nonsensical values with an error wrapping
// eventstream.ErrInvalidConfig.
type Config struct {
	// URL is the AMQP URI, "amqp://user:pass@host:port/vhost" or
	// "amqps://..." for TLS. Required. An empty vhost path means the
	// default vhost "/" (write "%2f" explicitly to be unambiguous).
	URL string
	// TLS is the TLS configuration for amqps URLs; nil selects a default
	// configuration verifying the server against the system roots. Setting
	// it for a plain amqp URL is an error.
	TLS *tls.Config
	// ConnectionName is shown in the RabbitMQ management UI and
	// rabbitmqctl list_connections. Default "eventstream".
	ConnectionName string

	// Groups lists, per topic, the consumer groups whose queues the adapter
	// declares as soon as it first connects and again after every
	// reconnect, before anything is published through it. RabbitMQ only
	// routes a message to queues that exist when it is published, so a
	// group must exist before the first message it has to see is
	// published: declare it here, with DeclareGroup, or by subscribing.
	Groups map[string][]string

	// QueueType is the type of group queues. Default QueueQuorum.
	QueueType QueueType
	// Partitions, when above 1, turns on partitioned mode: every group has
	// Partitions queues, each with a single active consumer, and a keyed
	// message goes to the queue chosen by a hash of its key, so that per-key
	// order holds across competing members of a group; the members share
	// the partitions out among themselves (see RebalanceInterval and the
	// package documentation). All adapters using a topic must agree on
	// Partitions. Default 1 (one queue per group).
	Partitions int

	// RebalanceInterval is how often, in partitioned mode, a subscription
	// looks at which members its group has and takes or releases partitions
	// to own its share (see the package documentation). A new or departed
	// member changes the assignment within about one interval. Default 2s.
	RebalanceInterval time.Duration

	// Prefetch is how many unacknowledged messages the broker may deliver to
	// one subscription (per partition queue in partitioned mode). Keep it
	// near the bus buffer size. Default 256; at most 65535.
	Prefetch int
	// MaxPending caps how many published messages may wait for their
	// publisher confirm at once; Publish blocks (honouring its context)
	// while the cap is reached. Default 4096.
	MaxPending int

	// DialTimeout bounds establishing one connection, including TLS and the
	// AMQP handshake. Default 10s.
	DialTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval requested from the broker
	// (the lower of the client's and the server's value wins); a dead peer
	// is noticed after about two intervals. Default 10s.
	Heartbeat time.Duration
	// ReconnectMin and ReconnectMax bound the wait between reconnect
	// attempts after a connection was lost; it starts at ReconnectMin and
	// doubles up to ReconnectMax. Defaults 100ms and 5s.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// OperationTimeout bounds broker round trips that have no caller
	// context: declarations on reconnect and consumer cancellation when a
	// subscription ends. Default 10s.
	OperationTimeout time.Duration

	// Logger receives diagnostics (reconnects, dropped acks, unconvertible
	// headers). Default: discard.
	Logger *slog.Logger
}

// ErrInvalidName is wrapped by Publish, PublishRecord, Subscribe and
// DeclareGroup when a topic or group name cannot be mapped to a RabbitMQ
// name: empty groups, or names whose exchange or queue name would exceed 255
// bytes. An empty topic is reported with eventstream.ErrEmptyTopic.
var ErrInvalidName = errors.New("rabbitmq: invalid topic or group name")

// ErrUnroutable is wrapped by Publish and PublishRecord when the broker
// returned the message because no queue is bound to the topic (or, in
// partitioned mode, to the message's partition): no consumer group exists
// yet, so the message was not stored anywhere. Declare the groups first
// (Config.Groups, DeclareGroup or Subscribe).
var ErrUnroutable = errors.New("rabbitmq: message unroutable: no consumer group queue is bound to the topic")

// ErrNacked is wrapped by Publish and PublishRecord when the broker
// negatively acknowledged the message (an internal broker error, or a queue
// length limit with overflow reject-publish).
var ErrNacked = errors.New("rabbitmq: message nacked by the broker")

// ErrReservedHeader is wrapped by PublishRecord when a header name starts
// with the prefix "es-" reserved for the adapter's own headers, is empty, or
// is longer than 128 bytes.
var ErrReservedHeader = errors.New("rabbitmq: invalid header name")

// ErrForeignMessage is wrapped by Ack when the message was not delivered by
// this adapter, or was delivered to another group.
var ErrForeignMessage = errors.New("rabbitmq: message not delivered by this adapter to this group")

func invalid(format string, args ...any) error {
	return fmt.Errorf("rabbitmq: %w: %s", eventstream.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// withDefaults validates c and returns a copy with every default filled in.
func (c Config) withDefaults() (Config, amqp.URI, error) {
	if c.URL == "" {
		return c, amqp.URI{}, invalid("URL is empty; give an amqp:// or amqps:// URI")
	}
	uri, err := amqp.ParseURI(c.URL)
	if err != nil {
		return c, uri, invalid("URL: %v", err)
	}
	if uri.Host == "" {
		return c, uri, invalid("URL %q has no host", redact(uri))
	}
	if c.TLS != nil && uri.Scheme != "amqps" {
		return c, uri, invalid("TLS is set but the URL scheme is %q, not amqps", uri.Scheme)
	}
	if uri.Scheme == "amqps" && c.TLS == nil {
		c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.TLS != nil {
		c.TLS = c.TLS.Clone()
		if c.TLS.ServerName == "" {
			c.TLS.ServerName = uri.Host
		}
	}
	if uri.Vhost == "" {
		uri.Vhost = "/"
	}
	if len(uri.Vhost) > 255 {
		return c, uri, invalid("vhost is longer than 255 bytes")
	}
	if c.ConnectionName == "" {
		c.ConnectionName = "eventstream"
	}
	switch c.QueueType {
	case "":
		c.QueueType = QueueQuorum
	case QueueQuorum, QueueClassic:
	default:
		return c, uri, invalid("QueueType %q is not %q or %q", c.QueueType, QueueQuorum, QueueClassic)
	}
	type num struct {
		name     string
		v        *int
		def, max int
	}
	for _, n := range []num{
		{"Partitions", &c.Partitions, 1, 1024},
		{"Prefetch", &c.Prefetch, 256, 65535},
		{"MaxPending", &c.MaxPending, 4096, 1 << 20},
	} {
		if *n.v < 0 {
			return c, uri, invalid("%s is negative (%d)", n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
		if *n.v > n.max {
			return c, uri, invalid("%s is %d, above the maximum %d", n.name, *n.v, n.max)
		}
	}
	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, d := range []dur{
		{"DialTimeout", &c.DialTimeout, 10 * time.Second},
		{"Heartbeat", &c.Heartbeat, 10 * time.Second},
		{"ReconnectMin", &c.ReconnectMin, 100 * time.Millisecond},
		{"ReconnectMax", &c.ReconnectMax, 5 * time.Second},
		{"OperationTimeout", &c.OperationTimeout, 10 * time.Second},
		{"RebalanceInterval", &c.RebalanceInterval, 2 * time.Second},
	} {
		if *d.v < 0 {
			return c, uri, invalid("%s is negative (%v)", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Heartbeat < time.Second {
		return c, uri, invalid("Heartbeat %v is below the AMQP resolution of 1s", c.Heartbeat)
	}
	if c.ReconnectMin > c.ReconnectMax {
		return c, uri, invalid("ReconnectMin (%v) is above ReconnectMax (%v)", c.ReconnectMin, c.ReconnectMax)
	}
	groups := make(map[string][]string, len(c.Groups))
	for topic, gs := range c.Groups {
		for _, g := range gs {
			if _, err := queueName(topic, g, -1); err != nil {
				return c, uri, invalid("Groups: %v", err)
			}
		}
		groups[topic] = append([]string(nil), gs...)
	}
	c.Groups = groups
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, uri, nil
}

// redact returns the URI without its password, for messages.
func redact(u amqp.URI) string {
	u.Password = ""
	return u.String()
}

// Names. A topic maps to the exchange "es.<topic>"; a group to the queue
// "es.<topic>/<group>", with '%' and '/' percent-escaped in both parts so that
// different (topic, group) pairs never share a queue; partition i of a group
// to "es.<topic>/<group>/<i>".

func exchangeName(topic string) (string, error) {
	if err := checkExchangeName(topic); err != nil {
		return "", err
	}
	return exchangePrefix + topic, nil
}

const exchangePrefix = "es."

// checkExchangeName reports why topic has no valid exchange name, if it has
// none.
func checkExchangeName(topic string) error {
	if topic == "" {
		return eventstream.ErrEmptyTopic
	}
	if len(exchangePrefix)+len(topic) > 255 {
		return fmt.Errorf("%w: exchange name for topic %q is longer than 255 bytes", ErrInvalidName, topic)
	}
	return nil
}

var nameEscaper = strings.NewReplacer("%", "%25", "/", "%2F")

// queueName returns the queue of group on topic, of partition part when
// part >= 0.
func queueName(topic, group string, part int) (string, error) {
	if topic == "" {
		return "", eventstream.ErrEmptyTopic
	}
	if group == "" {
		return "", fmt.Errorf("%w: empty group", ErrInvalidName)
	}
	n := "es." + nameEscaper.Replace(topic) + "/" + nameEscaper.Replace(group)
	if part >= 0 {
		n += fmt.Sprintf("/%d", part)
	}
	if len(n) > 255 {
		return "", fmt.Errorf("%w: queue name for topic %q, group %q is longer than 255 bytes", ErrInvalidName, topic, group)
	}
	return n, nil
}
