package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/internal/brokertest"
	kafkago "github.com/segmentio/kafka-go"
)

// TestRealSASL authenticates with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
// on the SASL_PLAINTEXT listener of real Kafka (the user brokertest
// provisions), publishes and consumes through it, and checks that a wrong
// password fails Publish and Subscribe with the broker's authentication
// error well before their deadline instead of retrying until it.
func TestRealSASL(t *testing.T) {
	forEachKafka(t, func(t *testing.T, b *brokertest.Broker) {
		for _, mech := range []kafka.SASLMechanism{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
			t.Run(string(mech), func(t *testing.T) {
				if b.SASLAddr() == "" {
					t.Skip("the external Kafka has no SASL listener (set KAFKA_SASL_BROKERS)")
				}
				cfg := realConfig(b)
				cfg.Brokers = addrs(b.SASLAddr())
				cfg.SASL = &kafka.SASL{Mechanism: mech, Username: brokertest.KafkaSASLUser, Password: brokertest.KafkaSASLPassword}
				roundTrip(t, cfg, uniqueTopic("sasl"))

				bad := cfg
				bad.SASL = &kafka.SASL{Mechanism: mech, Username: brokertest.KafkaSASLUser, Password: "wrong"}
				a := newAdapter(t, bad)
				const deadline = 20 * time.Second
				for _, op := range []struct {
					name string
					call func(ctx context.Context) error
				}{
					{"Publish", func(ctx context.Context) error { return a.Publish(ctx, "sasl-denied", []byte("x")) }},
					{"Subscribe", func(ctx context.Context) error {
						_, cancel, err := a.Subscribe(ctx, "sasl-denied", "g-sasl-denied")
						if err == nil {
							cancel()
						}
						return err
					}},
				} {
					ctx, cancel := context.WithTimeout(context.Background(), deadline)
					begin := time.Now()
					err := op.call(ctx)
					took := time.Since(begin)
					cancel()
					t.Logf("%s with a wrong password: %v after %v", op.name, err, took.Round(time.Millisecond))
					if !errors.Is(err, kafkago.SASLAuthenticationFailed) {
						t.Errorf("%s with a wrong password: %v, want an error wrapping SASL_AUTHENTICATION_FAILED", op.name, err)
					}
					if took > deadline/2 {
						t.Errorf("%s with a wrong password took %v of its %v deadline: retried instead of failing", op.name, took, deadline)
					}
				}
			})
		}
	})
}
