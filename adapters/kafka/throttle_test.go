package kafka_test

import (
	"sync"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// throttleFirstFetch answers the first fetch request of c with an empty
// response asking for throttle; later fetches go to the broker. It returns
// the arrival times of the fetches so far and when the throttled answer was
// given.
func throttleFirstFetch(c *kafkatest.Cluster, throttle time.Duration) func() ([]time.Time, time.Time) {
	var mu sync.Mutex
	var fetches []time.Time
	var answered time.Time
	c.Fake.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.Fake.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		fetches = append(fetches, time.Now())
		if len(fetches) > 1 {
			return nil, nil, false
		}
		freq := req.(*kmsg.FetchRequest)
		resp := freq.ResponseKind().(*kmsg.FetchResponse)
		resp.ThrottleMillis = int32(throttle / time.Millisecond)
		for _, rt := range freq.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		answered = time.Now()
		return resp, nil, true
	})
	return func() ([]time.Time, time.Time) {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), fetches...), answered
	}
}

// TestFetchThrottle: after a fetch response with ThrottleMillis, the next
// fetch to that broker is not sent before the throttle time has passed,
// and the message is then delivered.
func TestFetchThrottle(t *testing.T) {
	const topic, group, throttle = "throttle", "g-throttle", 400 * time.Millisecond
	c := startCluster(t, 1, topic)
	seen := throttleFirstFetch(c, throttle)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)
	if err := a.Publish(ctx, topic, []byte("m")); err != nil {
		t.Fatal(err)
	}
	ch, stop, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case m := <-ch:
		if string(m.Value()) != "m" {
			t.Fatalf("delivered %q", m.Value())
		}
	case <-ctx.Done():
		t.Fatal("nothing delivered")
	}
	fetches, answered := seen()
	if len(fetches) < 2 {
		t.Fatalf("%d fetches", len(fetches))
	}
	if gap := fetches[1].Sub(answered); gap < throttle {
		t.Errorf("the fetch after a %v throttle was sent %v after the throttled answer", throttle, gap)
	}
}

// TestFetchThrottleStops: a subscription whose partition waits out a long
// throttle stops at once, without sending another fetch.
func TestFetchThrottleStops(t *testing.T) {
	const topic, group = "throttle-stop", "g-throttle-stop"
	c := startCluster(t, 1, topic)
	seen := throttleFirstFetch(c, time.Hour)
	a := newAdapter(t, testConfig(c.Addrs()))
	ctx := ctxT(t, 30*time.Second)
	_, stop, err := a.Subscribe(ctx, topic, group)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the throttled fetch", func() bool {
		_, answered := seen()
		return !answered.IsZero()
	})
	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the subscription did not stop while its partition was throttled")
	}
	if fetches, _ := seen(); len(fetches) != 1 {
		t.Errorf("%d fetches sent during an hour's throttle", len(fetches))
	}
}
