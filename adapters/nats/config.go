package nats

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	natsgo "github.com/nats-io/nats.go"
)

// Storage selects where a stream keeps its messages. The zero value means
// FileStorage.
type Storage int

const (
	// FileStorage keeps messages on disk: they survive a server restart. It
	// is the default.
	FileStorage Storage = iota
	// MemoryStorage keeps messages in server memory: a server restart loses
	// the stream's messages.
	MemoryStorage
)

// Discard selects what a stream does when one of its limits (MaxMsgs,
// MaxBytes) is reached. The zero value means DiscardOld.
type Discard int

const (
	// DiscardOld removes the oldest messages to make room, even if some
	// group has not read them yet. It is the default, as in NATS.
	DiscardOld Discard = iota
	// DiscardNew refuses new messages while the stream is full: Publish
	// fails (backpressure) instead of old messages disappearing.
	DiscardNew
)

// Config configures an Adapter. Only URL is required; every zero value
// selects the documented default. NewAdapter rejects negative durations and
// counts, conflicting credentials and other unusable values with an error
// wrapping eventstream.ErrInvalidConfig.
//
// The stream settings (Storage, Replicas, MaxAge, MaxBytes, MaxMsgs,
// MaxMsgSize, Discard, DuplicateWindow) apply when the adapter creates a
// topic's stream; a stream that already exists is used as it is, so an
// operator may tune it. The consumer settings (AckWait, MaxAckPending,
// MaxDeliver) apply when the adapter creates a group's durable consumer.
type Config struct {
	// URL is the NATS server URL, for example "nats://127.0.0.1:4222"; a
	// comma-separated list names several servers of a cluster. Required.
	URL string
	// Name is the connection name shown by the server. Default
	// "eventstream".
	Name string

	// User and Password authenticate with a user name and password. Give
	// both or neither. They may also be part of URL.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CredentialsFile names a decentralized-auth credentials file (JWT and
	// NKey seed), as written by nsc. It must exist.
	CredentialsFile string
	// NKeySeedFile names a file holding an NKey user seed. It must exist.
	NKeySeedFile string
	// TLS, when not nil, makes the connection use TLS with this
	// configuration (server certificate verification, client certificates).
	// A "tls://" URL enables TLS with the default configuration too.
	// NewAdapter refuses TLS with a "ws://" URL, a MaxVersion below
	// MinVersion or below TLS 1.2 (the oldest nats-server accepts), and a
	// client certificate without its chain or private key.
	TLS *tls.Config

	// ReconnectWait is the pause between reconnection attempts, to which
	// nats.go adds a random jitter of up to 100ms (1s with TLS; change it
	// with nats.ReconnectJitter in ConnOptions). The adapter reconnects
	// forever (the nats.go default gives up after 60 attempts). Default 1s.
	ReconnectWait time.Duration
	// ReconnectBufSize is how many bytes of publishes and acks the client
	// buffers while it reconnects. Default 8 MiB, as in nats.go.
	ReconnectBufSize int
	// ConnectTimeout bounds dialling one server. Default 2s.
	ConnectTimeout time.Duration
	// EnvelopeHeaders makes the bus's structured events carry the
	// content-type header (application/cloudevents+json) and es-time, for
	// plain NATS consumers that look for them. By default they travel as
	// the CloudEvents NATS binding maps them, the envelope alone (see
	// Adapter.BareEnvelope), which nats.go consumers read faster.
	EnvelopeHeaders bool

	// ConnOptions are applied after the adapter's own connection options,
	// for settings this Config does not offer (for example
	// nats.InProcessServer to connect to an embedded server without TCP).
	// Options that limit reconnection (nats.NoReconnect, a non-negative
	// nats.MaxReconnects) are refused: the adapter reconnects forever.
	ConnOptions []natsgo.Option

	// StreamPrefix is prepended to the name of every stream the adapter
	// uses (one stream per topic). Default "ES_".
	StreamPrefix string
	// SubjectPrefix is the first subject token of every topic's subject.
	// Default "es".
	SubjectPrefix string
	// Storage is the storage of created streams. Default FileStorage.
	Storage Storage
	// Replicas is the replica count of created streams, 1 to 5. Default 1.
	Replicas int
	// MaxAge removes messages older than this from created streams. 0
	// keeps them until another limit applies.
	MaxAge time.Duration
	// MaxBytes caps the size of a created stream. 0 means unlimited.
	MaxBytes int64
	// MaxMsgs caps the number of messages of a created stream. 0 means
	// unlimited.
	MaxMsgs int64
	// MaxMsgSize caps the size of one message in a created stream. 0 means
	// the server's limit (max_payload, 1 MiB by default).
	MaxMsgSize int32
	// Discard is what a created stream does when MaxMsgs or MaxBytes is
	// reached. Default DiscardOld.
	Discard Discard
	// DuplicateWindow is the created streams' window for detecting
	// duplicate message IDs (the Nats-Msg-Id header, which the adapter
	// does not set itself). 0 means the server default (2 minutes). At
	// most MaxAge when MaxAge is set.
	DuplicateWindow time.Duration

	// AckWait is how long the server waits for an acknowledgement before it
	// delivers a message again. The adapter tells the server every
	// InProgressInterval that messages it holds are still being worked
	// on, so a slow handler does not get its message redelivered
	// underneath it; AckWait is therefore mostly how long a message of a
	// crashed member stays invisible. At least 1s. Default 30s.
	AckWait time.Duration
	// InProgressInterval is how often a subscription resets the AckWait
	// timer of the messages it holds and has not acknowledged. Must be
	// below AckWait. Default AckWait/3.
	InProgressInterval time.Duration
	// MaxInFlight caps how many messages one subscription holds: fetched
	// from the server and not yet acknowledged (nor handed back). The
	// adapter never pulls more than that. Default 512.
	MaxInFlight int
	// MaxInFlightBytes caps the bytes of the messages one subscription
	// holds, counted as the server counts them (subject, reply subject,
	// headers and payload; not the pin header of Exclusive): every pull
	// asks for no more than the bytes left, and when the next message does
	// not fit the subscription pulls again once acknowledgements made room
	// for it. A message larger than the cap is pulled on its own once the
	// subscription holds nothing else, so it is still delivered and the
	// cap is exceeded by that one message. With the bound in force,
	// Subscribe refuses a consumer that exists with a MaxRequestMaxBytes
	// below it. Default 64 MiB
	// (there is no "unbounded": a cap far above the server's max_payload
	// times MaxInFlight does not bind). Servers before 2.11 do not get
	// the bound: they mishandle a redelivered message that a pull refuses
	// for its bytes (the consumer's position slips), so with them pulls
	// carry no byte limit and only MaxInFlight bounds a subscription.
	MaxInFlightBytes int
	// MaxAckPending caps how many messages a group's consumer has
	// delivered and not yet acknowledged, across all its subscriptions;
	// the server stops delivering at the cap. Must be at least
	// MaxInFlight. Default 64 × MaxInFlight.
	MaxAckPending int
	// MaxDeliver is how often the server delivers a message before it gives
	// up on it. 0 means unlimited (the default): the bus's retry and
	// dead-letter policy decides instead.
	MaxDeliver int
	// Exclusive makes each group's consumer deliver to one subscription at
	// a time (a pinned client, NATS priority groups): the other members
	// of the group stand by and take over when the pinned one ends or
	// stops pulling for PinnedTTL, so per-key order holds across members
	// too, except for redeliveries around a takeover. It needs
	// nats-server 2.11 or later (Subscribe fails with an error wrapping
	// ErrNotSupported on older servers) and applies when the adapter
	// creates the consumer; Subscribe refuses an existing consumer that
	// is not pinned.
	Exclusive bool
	// PinnedTTL is how long an Exclusive consumer keeps a member pinned
	// that sends no pull request; then another member takes over. Must be
	// above PullExpiry. Default 2 × PullExpiry.
	PinnedTTL time.Duration

	// PullExpiry is how long one pull request waits at the server for
	// messages; an idle subscription sends one pull request per
	// PullExpiry. At least 1s. Default 10s.
	PullExpiry time.Duration
	// PullHeartbeat is how often the server sends an idle heartbeat on a
	// waiting pull request; two missed heartbeats make the subscription
	// pull again (after a reconnect or a server restart). Must be below
	// PullExpiry/2. Default PullExpiry/5.
	PullHeartbeat time.Duration

	// MaxPendingPublishes caps publishes waiting for their JetStream
	// acknowledgement; Publish waits (honouring its context) while the
	// cap is reached. Default 4000.
	MaxPendingPublishes int
	// PublishTimeout bounds the wait for one publish acknowledgement
	// (checked every PublishTimeout/4, so a publish times out after 1 to
	// 1.25 × PublishTimeout); a publish that timed out is retried until
	// the caller's context is done. Default 5s.
	PublishTimeout time.Duration
	// RequestTimeout bounds JetStream API requests (creating or looking up
	// streams and consumers). Default 5s.
	RequestTimeout time.Duration
	// CloseTimeout bounds how long Close waits for outstanding publish
	// acknowledgements before it closes the connection. Default 5s.
	CloseTimeout time.Duration

	// Logger receives diagnostics (disconnects, reconnects, recreated
	// consumers, pull errors). Default: discard.
	Logger *slog.Logger
}

// ErrInvalidTopic is wrapped by Publish, PublishRecord and Subscribe when
// a topic or group name is too long to name a stream or consumer.
var ErrInvalidTopic = errors.New("nats: invalid topic or group name")

// ErrInvalidHeader is wrapped by PublishRecord when a header cannot be sent:
// an empty name or a reserved name (prefixes "Nats-" and "es-", in any
// case).
var ErrInvalidHeader = errors.New("nats: invalid header")

// ErrNotSupported is wrapped by Subscribe when the server lacks a feature
// the configuration asks for (Config.Exclusive needs nats-server 2.11).
var ErrNotSupported = errors.New("nats: not supported by the server")

// ErrMessageTooLarge is wrapped by Publish and PublishRecord when a message
// with its headers exceeds the server's maximum payload.
var ErrMessageTooLarge = errors.New("nats: message too large")

func invalid(format string, args ...any) error {
	return fmt.Errorf("nats: %w: %s", eventstream.ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// withDefaults validates c and returns a copy with every default filled in.
func (c Config) withDefaults() (Config, error) {
	if strings.TrimSpace(c.URL) == "" {
		return c, invalid("URL is empty; give a server URL such as nats://127.0.0.1:4222")
	}
	for _, u := range strings.Split(c.URL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Host == "" {
			return c, invalid("URL %q is not a server URL such as nats://127.0.0.1:4222", u)
		}
		switch pu.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return c, invalid("URL %q: scheme %q is not nats, tls, ws or wss", u, pu.Scheme)
		}
	}
	if c.Name == "" {
		c.Name = "eventstream"
	}
	if (c.User == "") != (c.Password == "") {
		return c, invalid("give both User and Password or neither")
	}
	methods := 0
	for _, set := range []bool{c.User != "", c.Token != "", c.CredentialsFile != "", c.NKeySeedFile != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return c, invalid("User/Password, Token, CredentialsFile and NKeySeedFile are exclusive; give one")
	}
	for _, f := range []struct{ name, path string }{{"CredentialsFile", c.CredentialsFile}, {"NKeySeedFile", c.NKeySeedFile}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(f.path); err != nil {
			return c, invalid("%s: %v", f.name, err)
		} else if st.IsDir() {
			return c, invalid("%s %q is a directory", f.name, f.path)
		}
	}
	if err := c.checkTLS(); err != nil {
		return c, err
	}
	if c.StreamPrefix == "" {
		c.StreamPrefix = "ES_"
	}
	if strings.ContainsAny(c.StreamPrefix, " \t\r\n.*>/\\") {
		return c, invalid("StreamPrefix %q must not contain whitespace, '.', '*', '>', '/' or '\\'", c.StreamPrefix)
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "es"
	}
	if strings.ContainsAny(c.SubjectPrefix, " \t\r\n*>") || strings.HasPrefix(c.SubjectPrefix, ".") ||
		strings.HasSuffix(c.SubjectPrefix, ".") || strings.Contains(c.SubjectPrefix, "..") || strings.HasPrefix(c.SubjectPrefix, "$") {
		return c, invalid("SubjectPrefix %q is not a valid subject prefix (no whitespace, wildcards, empty tokens or leading '$')", c.SubjectPrefix)
	}
	if c.Storage != FileStorage && c.Storage != MemoryStorage {
		return c, invalid("unknown Storage %d", c.Storage)
	}
	if c.Discard != DiscardOld && c.Discard != DiscardNew {
		return c, invalid("unknown Discard %d", c.Discard)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return c, invalid("Replicas is %d, must be 1 to 5", c.Replicas)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxBytes < 0 || c.MaxMsgs < 0 || c.MaxMsgSize < 0 {
		return c, invalid("MaxBytes (%d), MaxMsgs (%d) and MaxMsgSize (%d) must not be negative", c.MaxBytes, c.MaxMsgs, c.MaxMsgSize)
	}
	if c.MaxDeliver < 0 {
		return c, invalid("MaxDeliver is %d, must not be negative (0 means unlimited)", c.MaxDeliver)
	}
	if c.MaxDeliver == 1 {
		return c, invalid("MaxDeliver 1 never redelivers: at-least-once delivery needs 0 (unlimited) or at least 2")
	}
	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, d := range []dur{
		{"ReconnectWait", &c.ReconnectWait, time.Second},
		{"ConnectTimeout", &c.ConnectTimeout, 2 * time.Second},
		{"MaxAge", &c.MaxAge, 0},
		{"DuplicateWindow", &c.DuplicateWindow, 0},
		{"AckWait", &c.AckWait, 30 * time.Second},
		{"PullExpiry", &c.PullExpiry, 10 * time.Second},
		{"PublishTimeout", &c.PublishTimeout, 5 * time.Second},
		{"RequestTimeout", &c.RequestTimeout, 5 * time.Second},
		{"CloseTimeout", &c.CloseTimeout, 5 * time.Second},
		{"InProgressInterval", &c.InProgressInterval, 0},
		{"PullHeartbeat", &c.PullHeartbeat, 0},
		{"PinnedTTL", &c.PinnedTTL, 0},
	} {
		if *d.v < 0 {
			return c, invalid("%s is negative (%v)", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge {
		return c, invalid("DuplicateWindow (%v) must not exceed MaxAge (%v): the server refuses such a stream", c.DuplicateWindow, c.MaxAge)
	}
	if c.AckWait < time.Second {
		return c, invalid("AckWait is %v, must be at least 1s", c.AckWait)
	}
	if c.InProgressInterval == 0 {
		c.InProgressInterval = c.AckWait / 3
	}
	if c.InProgressInterval >= c.AckWait {
		return c, invalid("InProgressInterval (%v) must be below AckWait (%v)", c.InProgressInterval, c.AckWait)
	}
	if c.PullExpiry < time.Second {
		return c, invalid("PullExpiry is %v, must be at least 1s", c.PullExpiry)
	}
	if c.PullHeartbeat == 0 {
		c.PullHeartbeat = c.PullExpiry / 5
	}
	if 2*c.PullHeartbeat >= c.PullExpiry {
		return c, invalid("PullHeartbeat (%v) must be below PullExpiry/2 (%v)", c.PullHeartbeat, c.PullExpiry/2)
	}
	if c.PinnedTTL == 0 {
		c.PinnedTTL = 2 * c.PullExpiry
	}
	if c.PinnedTTL <= c.PullExpiry {
		return c, invalid("PinnedTTL (%v) must be above PullExpiry (%v), or an idle pinned member loses its pin", c.PinnedTTL, c.PullExpiry)
	}
	type num struct {
		name string
		v    *int
		def  int
	}
	for _, n := range []num{
		{"ReconnectBufSize", &c.ReconnectBufSize, 8 << 20},
		{"MaxInFlight", &c.MaxInFlight, 512},
		{"MaxInFlightBytes", &c.MaxInFlightBytes, 64 << 20},
		{"MaxPendingPublishes", &c.MaxPendingPublishes, 4000},
	} {
		if *n.v < 0 {
			return c, invalid("%s is negative (%d)", n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if c.MaxAckPending < 0 {
		return c, invalid("MaxAckPending is negative (%d)", c.MaxAckPending)
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 64 * c.MaxInFlight
	}
	if c.MaxAckPending < c.MaxInFlight {
		return c, invalid("MaxAckPending (%d) must be at least MaxInFlight (%d), or one subscription could stall the group", c.MaxAckPending, c.MaxInFlight)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.ConnOptions = append([]natsgo.Option(nil), c.ConnOptions...)
	// The adapter's guarantees rest on reconnecting forever: ConnOptions
	// must not take that away.
	o := natsgo.GetDefaultOptions()
	natsgo.MaxReconnects(-1)(&o)
	for _, opt := range c.ConnOptions {
		if opt == nil {
			return c, invalid("ConnOptions holds a nil option")
		}
		if err := opt(&o); err != nil {
			return c, invalid("ConnOptions: %v", err)
		}
	}
	if !o.AllowReconnect || o.MaxReconnect >= 0 {
		return c, invalid("ConnOptions limit reconnection (nats.NoReconnect or nats.MaxReconnects(%d)): the adapter reconnects forever, "+
			"so that subscriptions and publishes survive any outage", o.MaxReconnect)
	}
	return c, nil
}

// checkTLS rejects TLS settings that cannot work.
func (c Config) checkTLS() error {
	if c.TLS == nil {
		return nil
	}
	for _, u := range strings.Split(c.URL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err == nil && pu.Scheme == "ws" {
			return invalid("TLS is set but URL %q is a plain WebSocket URL; use wss://", u)
		}
	}
	if c.TLS.MaxVersion != 0 && c.TLS.MaxVersion < c.TLS.MinVersion {
		return invalid("TLS.MaxVersion (%#x) is below TLS.MinVersion (%#x)", c.TLS.MaxVersion, c.TLS.MinVersion)
	}
	if c.TLS.MaxVersion != 0 && c.TLS.MaxVersion < tls.VersionTLS12 {
		return invalid("TLS.MaxVersion (%#x) is below TLS 1.2, the oldest version nats-server accepts", c.TLS.MaxVersion)
	}
	for i, cert := range c.TLS.Certificates {
		if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
			return invalid("TLS.Certificates[%d] lacks its certificate chain or its private key (load it with tls.LoadX509KeyPair)", i)
		}
	}
	return nil
}
