package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	eventstream "github.com/eventstream-go/eventstream"
)

// Expected values from the Java client's murmur2 (Kafka's UtilsTest).
func TestMurmur2MatchesJava(t *testing.T) {
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	for in, want := range cases {
		if got := int32(murmur2([]byte(in))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", in, got, want)
		}
	}
	// toPositive(murmur2) % n, as the Java DefaultPartitioner.
	if p := keyPartition([]byte("foobar"), 7); p != int((-790332482&0x7fffffff)%7) {
		t.Errorf("keyPartition = %d", p)
	}
}

func TestTrackerContiguous(t *testing.T) {
	tr := newPartTracker(0, 0, 100, nil)
	for o := int64(10); o < 15; o++ {
		tr.add(o)
	}
	check := func(want int64, ok bool) {
		t.Helper()
		got, pending := tr.pending(false)
		if got != want || pending != ok {
			t.Fatalf("pending = %d,%v want %d,%v", got, pending, want, ok)
		}
	}
	check(10, true)
	tr.ack(12)
	tr.ack(14)
	check(10, true) // gap at 10
	tr.ack(10)
	check(11, true)
	tr.setCommitted(11)
	check(11, false)
	if tr.ack(10) {
		t.Fatal("duplicate ack counted")
	}
	if tr.ack(99) {
		t.Fatal("unknown ack counted")
	}
	tr.ack(11)
	check(13, true)
	tr.ack(13)
	check(15, true)
	// Abandoned (never handed over) messages stay a barrier.
	tr.add(15)
	tr.add(16)
	tr.abandon(16)
	tr.ack(15)
	check(16, true)
	if !tr.waitDrained(context.Background(), time.Second) {
		t.Fatal("abandoned message still counted in flight")
	}
	// After revocation acks are ignored.
	tr.add(17)
	tr.pending(true)
	if tr.ack(17) {
		t.Fatal("ack after revoke counted")
	}
}

func TestTrackerCapacity(t *testing.T) {
	tr := newPartTracker(0, 0, 2, nil)
	tr.add(0)
	tr.add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if tr.waitCapacity(ctx) {
		t.Fatal("capacity with 2 of 2 in flight")
	}
	done := make(chan bool)
	go func() { done <- tr.waitCapacity(context.Background()) }()
	tr.ack(1)
	if !<-done {
		t.Fatal("no capacity after ack")
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []Config{
		{},
		{Brokers: []string{""}},
		{Brokers: []string{"localhost"}},
		{Brokers: []string{"x:1"}, SessionTimeout: -1},
		{Brokers: []string{"x:1"}, HeartbeatInterval: 5 * time.Second, SessionTimeout: time.Second},
		{Brokers: []string{"x:1"}, RevokeTimeout: time.Minute},
		{Brokers: []string{"x:1"}, MaxInFlightPerPartition: -3},
		{Brokers: []string{"x:1"}, FetchMaxBytes: 2 << 30},
		{Brokers: []string{"x:1"}, RequiredAcks: 7},
		{Brokers: []string{"x:1"}, Compression: 9},
		{Brokers: []string{"x:1"}, StartOffset: 5},
		{Brokers: []string{"x:1"}, SASL: &SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}},
		{Brokers: []string{"x:1"}, SASL: &SASL{Mechanism: SASLPlain}},
	}
	for i, c := range bad {
		if _, err := NewAdapter(c); !errors.Is(err, eventstream.ErrInvalidConfig) {
			t.Errorf("case %d: err = %v, want ErrInvalidConfig", i, err)
		}
	}
	a, err := NewAdapter(Config{Brokers: []string{"localhost:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.RequiredAcks != AcksAll || a.cfg.kafkaAcks() != -1 {
		t.Errorf("default acks = %v", a.cfg.kafkaAcks())
	}
	if a.cfg.RevokeTimeout != 5*time.Second || a.cfg.MaxInFlightPerPartition != 256 {
		t.Errorf("defaults not applied: %+v", a.cfg)
	}
	_ = a.Close()
}
