package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers the adapter sets itself. Every header name starting with "es-"
// is reserved for the adapter; names starting with "Nats-" for the server.
const (
	// HeaderKey carries the record key when it is printable ASCII.
	HeaderKey = "es-key"
	// HeaderKeyBase64 carries any other record key, base64 (standard
	// encoding with padding).
	HeaderKeyBase64 = "es-key-b64"
	// HeaderTime carries Record.Time as decimal Unix nanoseconds.
	HeaderTime = "es-time"
	// HeaderEncodedPrefix starts the name of a user header whose name or
	// value cannot travel unchanged (non-ASCII or control characters,
	// CR/LF, surrounding blanks): the rest of the name is the unpadded
	// base64url name, the value is the base64 (standard) value.
	HeaderEncodedPrefix = "es-h-"
)

// Publish stores message on topic and returns nil once JetStream
// acknowledged it. It is PublishRecord with only Record.Value set; the
// delivered message's Timestamp is the server's store time.
func (a *Adapter) Publish(ctx context.Context, topic string, message []byte) error {
	return a.PublishRecord(ctx, topic, eventstream.Record{Value: message})
}

// PublishRecord stores r on topic's stream (created on first use with the
// configured limits) and returns nil only after the JetStream publish
// acknowledgement: the message is stored (on Config.Replicas servers).
// Publishes are asynchronous underneath, so concurrent callers share the
// connection and their round trips overlap; each call waits for its own
// acknowledgement.
//
// The key travels in the HeaderKey (or HeaderKeyBase64) header, a non-zero
// r.Time in HeaderTime, r.Headers as headers under their own names. Header
// names starting with "Nats-" or "es-" are refused with an error wrapping
// ErrInvalidHeader, like names and values the protocol cannot carry. A
// message larger than the server's maximum payload fails with
// ErrMessageTooLarge.
//
// A publish that fails for a transient reason (disconnected, server
// restarting, acknowledgement timeout after Config.PublishTimeout) is
// retried until ctx is done, so an error after a timeout does not prove that
// the message was not stored: a retried message may be stored twice. After
// Close it fails with an error wrapping eventstream.ErrAdapterClosed.
func (a *Adapter) PublishRecord(ctx context.Context, topic string, r eventstream.Record) error {
	if err := a.checkTopic(topic); err != nil {
		return fmt.Errorf("nats: publish: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats: publish to %q: %w", topic, err)
	}
	hdr, hsize, err := buildHeader(r)
	if err != nil {
		return fmt.Errorf("nats: publish to %q: %w", topic, err)
	}
	if max := a.nc.MaxPayload(); max > 0 {
		if n := int64(len(r.Value) + hsize); n > max {
			return fmt.Errorf("nats: publish to %q: %d bytes with headers, the server allows %d: %w", topic, n, max, ErrMessageTooLarge)
		}
	}
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return fmt.Errorf("nats: publish to %q: %w", topic, eventstream.ErrAdapterClosed)
	}
	a.work.Add(1)
	a.mu.RUnlock()
	defer a.work.Done()

	subject := a.Subject(topic)
	for attempt := 0; ; attempt++ {
		err := a.publishOnce(ctx, topic, &natsgo.Msg{Subject: subject, Header: hdr, Data: r.Value}, attempt > 0)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || permanent(err) {
			return fmt.Errorf("nats: publish to %q: %w", topic, err)
		}
		if errors.Is(err, natsgo.ErrNoResponders) {
			a.forgetStream(topic) // deleted behind our back? look again
		}
		a.log.Debug("nats: publish failed, retrying", "topic", topic, "attempt", attempt+1, "err", err)
		if err := a.pause(ctx, backoff(attempt)); err != nil {
			return fmt.Errorf("nats: publish to %q: %w", topic, err)
		}
	}
}

// pause waits d, or less when ctx is done or the connection goes away.
func (a *Adapter) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.connGone:
		return eventstream.ErrAdapterClosed
	case <-t.C:
		return nil
	}
}

func (a *Adapter) publishOnce(ctx context.Context, topic string, m *natsgo.Msg, recheck bool) error {
	if err := a.ensureStream(ctx, topic, recheck && !a.knownStream(topic)); err != nil {
		return err
	}
	return a.pub.Load().publish(ctx, m, a.connGone)
}

func (a *Adapter) knownStream(topic string) bool {
	return a.topic(topic).known.Load()
}

// permanent reports whether a publish error cannot succeed on retry.
func permanent(err error) bool {
	if errors.Is(err, eventstream.ErrAdapterClosed) || errors.Is(err, natsgo.ErrConnectionClosed) ||
		errors.Is(err, natsgo.ErrMaxPayload) || errors.Is(err, natsgo.ErrBadSubject) ||
		errors.Is(err, natsgo.ErrHeadersNotSupported) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, natsgo.ErrAuthorization) || errors.Is(err, natsgo.ErrPermissionViolation) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 4xx: the request itself is refused (stream full with DiscardNew,
		// message too large, subjects overlap, ...).
		return apiErr.Code >= 400 && apiErr.Code < 500
	}
	return false
}

// buildHeader returns the headers of r and their encoded size:
// "NATS/1.0\r\n", one "k: v\r\n" line per header and a blank line.
func buildHeader(r eventstream.Record) (natsgo.Header, int, error) {
	n := len(r.Headers)
	if r.Key != nil {
		n++
	}
	if !r.Time.IsZero() {
		n++
	}
	if n == 0 {
		return nil, 0, nil
	}
	h := make(natsgo.Header, n)
	// One value per name: share one backing array.
	vals := make([]string, 0, n)
	size := len("NATS/1.0\r\n\r\n")
	put := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
		size += len(k) + len(v) + 4
	}
	for k, v := range r.Headers {
		k, v, err := wireHeader(k, v)
		if err != nil {
			return nil, 0, err
		}
		put(k, v)
	}
	if r.Key != nil {
		if printable(r.Key) {
			put(HeaderKey, string(r.Key))
		} else {
			put(HeaderKeyBase64, base64.StdEncoding.EncodeToString(r.Key))
		}
	}
	if !r.Time.IsZero() {
		put(HeaderTime, strconv.FormatInt(r.Time.UnixNano(), 10))
	}
	return h, size, nil
}

func reservedHeader(k string) bool {
	return len(k) >= 5 && strings.EqualFold(k[:5], "nats-") || len(k) >= 3 && strings.EqualFold(k[:3], "es-")
}

// wireHeader returns how user header k: v travels. Names of printable
// ASCII (no ':') with values the protocol carries unchanged (no CR, LF or
// surrounding blanks) travel as they are; any other header travels as
// HeaderEncodedPrefix + base64url(name) with the base64 value, and the
// receiving adapter decodes it.
func wireHeader(k, v string) (string, string, error) {
	if k == "" {
		return "", "", fmt.Errorf("%w: empty name", ErrInvalidHeader)
	}
	if reservedHeader(k) {
		return "", "", fmt.Errorf("%w: name %q is reserved (prefixes Nats- and es-)", ErrInvalidHeader, k)
	}
	if plainName(k) && plainValue(v) {
		return k, v, nil
	}
	return HeaderEncodedPrefix + base64.RawURLEncoding.EncodeToString([]byte(k)), base64.StdEncoding.EncodeToString([]byte(v)), nil
}

func plainName(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

func plainValue(v string) bool {
	return !strings.ContainsAny(v, "\r\n") && strings.TrimSpace(v) == v
}

// printable reports whether b can travel as a header value unchanged:
// printable ASCII without leading or trailing blanks (which the header
// parser trims).
func printable(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c > '~' {
			return false
		}
	}
	return len(b) == 0 || (b[0] != ' ' && b[len(b)-1] != ' ')
}
