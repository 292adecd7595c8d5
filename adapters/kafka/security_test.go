package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// selfSigned returns a server TLS config with a fresh self-signed
// certificate for 127.0.0.1 and a client config trusting it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kafkatest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client
}

// roundTrip publishes and consumes a few messages through cfg.
func roundTrip(t *testing.T, cfg kafka.Config, topic string) {
	t.Helper()
	a := newAdapter(t, cfg)
	ctx := ctxT(t, 30*time.Second)
	want := vals("sec", 3)
	for _, v := range want {
		if err := a.Publish(ctx, topic, []byte(v)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	ch, cancel, err := a.Subscribe(ctx, topic, "g-"+topic)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < len(want) {
		select {
		case m := <-ch:
			seen[string(m.Value())] = true
			if err := a.Ack(ctx, "g-"+topic, m); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("received %d of %d", len(seen), len(want))
		}
	}
}

func TestTLS(t *testing.T) {
	server, client := selfSigned(t)
	c := kafkatest.NewCluster(t, kfake.TLS(server), kfake.SeedTopics(2, "tls"))
	cfg := testConfig(c.Addrs())
	cfg.TLS = client
	roundTrip(t, cfg, "tls")

	// Without trusting the certificate nothing is published.
	bad := testConfig(c.Addrs())
	bad.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	a := newAdapter(t, bad)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := a.Publish(ctx, "tls", []byte("x")); err == nil {
		t.Fatal("publish succeeded with an untrusted certificate")
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []kafka.SASLMechanism{kafka.SASLScramSHA256, kafka.SASLScramSHA512, kafka.SASLPlain} {
		t.Run(string(mech), func(t *testing.T) {
			c := kafkatest.NewCluster(t, kfake.EnableSASL(), kfake.Superuser(string(mech), "alice", "s3cret"), kfake.SeedTopics(2, "sasl"))
			cfg := testConfig(c.Addrs())
			cfg.SASL = &kafka.SASL{Mechanism: mech, Username: "alice", Password: "s3cret"}
			roundTrip(t, cfg, "sasl")

			bad := testConfig(c.Addrs())
			bad.SASL = &kafka.SASL{Mechanism: mech, Username: "alice", Password: "wrong"}
			a := newAdapter(t, bad)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := a.Publish(ctx, "sasl", []byte("x"))
			t.Logf("wrong password: %v", err)
			if err == nil {
				t.Fatal("publish succeeded with a wrong password")
			}
		})
	}
}

func TestTLSWithSASLPlain(t *testing.T) {
	server, client := selfSigned(t)
	c := kafkatest.NewCluster(t, kfake.TLS(server), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "bob", "pw"), kfake.SeedTopics(1, "tlssasl"))
	cfg := testConfig(c.Addrs())
	cfg.TLS = client
	cfg.SASL = &kafka.SASL{Mechanism: kafka.SASLPlain, Username: "bob", Password: "pw"}
	roundTrip(t, cfg, "tlssasl")
}
