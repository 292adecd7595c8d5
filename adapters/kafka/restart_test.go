package kafka_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestBrokerRestart stops the broker mid-stream and starts it again on the
// same port with the same data: the adapter (publisher and subscriber)
// recovers by itself and nothing is lost.
func TestBrokerRestart(t *testing.T) {
	const topic, group = "restart", "g-restart"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	opts := []kfake.Opt{kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(2, topic)}
	c1, err := kafkatest.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	brokers := []string{"127.0.0.1:" + strconv.Itoa(port)}
	a := newAdapter(t, testConfig(brokers))
	ctx := ctxT(t, 60*time.Second)
	ch, cancel, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	seen := newCollector()
	wait := consumeAll(t, a, group, ch, seen)
	const half = 20
	for i := 0; i < half; i++ {
		if err := a.Publish(ctx, topic, []byte(fmt.Sprintf("m-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "first half", func() bool { return seen.distinct() == half })
	c1.Close()

	// While the broker is down publishing fails by the deadline...
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := a.Publish(short, topic, []byte("lost")); err == nil {
		t.Fatal("publish succeeded with the broker down")
	}
	// ...and publishes retry until it is back.
	errs := make(chan error, 1)
	go func() {
		for i := half; i < 2*half; i++ {
			if err := a.Publish(ctx, topic, []byte(fmt.Sprintf("m-%d", i))); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	c2, err := kafkatest.Start(opts...)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer c2.Close()
	if err := <-errs; err != nil {
		t.Fatalf("publish across the restart: %v", err)
	}
	// ("lost" may arrive too: its publish timed out, which does not mean
	// the record was not written.)
	waitFor(t, 30*time.Second, "every message after the restart", func() bool {
		for i := 0; i < 2*half; i++ {
			if !seen.has(fmt.Sprintf("m-%d", i)) {
				return false
			}
		}
		return true
	})
	cancel()
	wait()
}
