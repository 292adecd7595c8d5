package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
	"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest"
	"github.com/eventstream-go/eventstream/internal/brokertest"
)

// kcatPath returns the kcat binary. Without one the test fails when CI=true
// (.ci/run installs it) and is skipped otherwise.
func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("kcat is not on PATH (%v): CI must install it (Debian: apt-get install -y kcat) for the kcat interop tests", err)
	}
	t.Skipf("kcat is not on PATH (%v); install it (apt-get install -y kcat) to run the kcat interop tests", err)
	return ""
}

// kcatBroker is the broker a kcat test runs on: the embedded one or a real
// Apache Kafka.
type kcatBroker struct {
	addr   string
	suffix string // makes topic names unique on a broker shared by several tests
}

// name returns the topic name for base on this broker.
func (kb kcatBroker) name(base string) string { return base + kb.suffix }

// create creates topics with partitions partitions each.
func (kb kcatBroker) create(t *testing.T, partitions int32, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		kadmin.CreateTopic(t, strings.Split(kb.addr, ","), topic, partitions)
	}
}

// embeddedBroker starts an embedded broker for one kcat test.
func embeddedBroker(t *testing.T) kcatBroker {
	return kcatBroker{addr: kafkatest.NewCluster(t).Addrs()[0]}
}

// TestKcatRealKafka runs the kcat interop tests on real Apache Kafka 4.x
// and 3.9.x, one broker per release started in parallel (or on the cluster
// KAFKA_BROKERS names).
func TestKcatRealKafka(t *testing.T) {
	bin := kcatPath(t)
	versions := []string{"4.x", "3.9.x"}
	if os.Getenv("KAFKA_BROKERS") != "" {
		versions = versions[:1] // the cluster the variable names, once
	}
	for _, v := range versions {
		t.Run("kafka"+v, func(t *testing.T) {
			t.Parallel()
			b := brokertest.Kafka(t, brokertest.KafkaVersion(v))
			kb := kcatBroker{addr: b.Addr(), suffix: fmt.Sprintf("-%d", time.Now().UnixNano())}
			t.Run("ReadsBusEvents", func(t *testing.T) { testKcatReadsBusEvents(t, bin, kb) })
			t.Run("PartitionerMatchesBus", func(t *testing.T) { testKcatPartitionerMatchesBus(t, bin, kb) })
			t.Run("RecordsReachBus", func(t *testing.T) { testKcatRecordsReachBus(t, bin, kb) })
		})
	}
}

// kcat runs kcat with args and stdin and returns its standard output.
func kcat(t *testing.T, bin string, stdin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// kcatRecord is one record as kcat -J prints it.
type kcatRecord struct {
	Topic     string   `json:"topic"`
	Partition int      `json:"partition"`
	Offset    int64    `json:"offset"`
	Headers   []string `json:"headers"` // name, value, name, value, ...
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

func (r kcatRecord) header(name string) (string, bool) {
	for i := 0; i+1 < len(r.Headers); i += 2 {
		if r.Headers[i] == name {
			return r.Headers[i+1], true
		}
	}
	return "", false
}

// kcatConsumeJSON reads every record of topic from the beginning with
// kcat's JSON envelope output.
func kcatConsumeJSON(t *testing.T, bin, broker, topic string) []kcatRecord {
	t.Helper()
	out := kcat(t, bin, "", "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q", "-J")
	var recs []kcatRecord
	for line := range bytes.Lines(out) {
		if line = bytes.TrimSpace(line); len(line) == 0 {
			continue
		}
		var r kcatRecord
		require.NoError(t, json.Unmarshal(line, &r), "kcat -J line %q", line)
		recs = append(recs, r)
	}
	return recs
}

// order is the payload of the kcat tests.
type order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

// TestKcatReadsBusEvents: events emitted by the bus are plain Kafka records
// to librdkafka: the key as the record key, a content-type header and a
// structured CloudEvent as the value, whose extension attributes carry the
// event headers and whose data is the payload.
func TestKcatReadsBusEvents(t *testing.T) {
	testKcatReadsBusEvents(t, kcatPath(t), embeddedBroker(t))
}

func testKcatReadsBusEvents(t *testing.T, bin string, kb kcatBroker) {
	topic := kb.name("bus-to-kcat")
	kb.create(t, 3, topic)
	broker := kb.addr
	ctx := testContext(t, 30*time.Second)
	bus := newBus(t, newAdapter(t, fastGroupConfig(strings.Split(broker, ","))), func(c *eventstream.Config) {
		c.Source = "e2e/kcat"
	})
	want := map[string]order{}
	for i := range 5 {
		o := order{ID: i, Customer: fmt.Sprintf("customer-%d", i), Amount: 10.5 * float64(i)}
		key := fmt.Sprintf("order-%d", i)
		want[key] = o
		require.NoError(t, bus.Emit(ctx, topic, o,
			eventstream.WithKey(key), eventstream.WithHeader("traceid", "trace-"+key), eventstream.WithType("order.created")))
	}

	// The format the brief of these tests names: key, headers, payload.
	out := kcat(t, bin, "", "-C", "-b", broker, "-t", topic, "-o", "beginning", "-e", "-q", "-f", `%k\t%h\t%s\n`)
	seen := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSuffix(line, "\n")
		f := strings.Split(line, "\t")
		require.Len(t, f, 3, "kcat line %q", line)
		key, headers, value := f[0], f[1], f[2]
		o, ok := want[key]
		require.True(t, ok, "unexpected key %q", key)
		seen[key] = true
		assert.ElementsMatch(t, []string{"content-type=" + eventstream.CloudEventsContentType, "traceid=trace-" + key},
			strings.Split(headers, ","),
			"native headers of %s: the event headers travel as Kafka headers too", key)

		var ce map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(value), &ce), "value of %s: %s", key, value)
		str := func(name string) string {
			var s string
			require.NoError(t, json.Unmarshal(ce[name], &s), "attribute %q of %s", name, value)
			return s
		}
		assert.Equal(t, "1.0", str("specversion"))
		assert.NotEmpty(t, str("id"))
		assert.Equal(t, "e2e/kcat", str("source"))
		assert.Equal(t, "order.created", str("type"))
		assert.Equal(t, "application/json", str("datacontenttype"))
		assert.Equal(t, key, str("partitionkey"))
		assert.Equal(t, "trace-"+key, str("traceid"))
		_, err := time.Parse(time.RFC3339Nano, str("time"))
		assert.NoError(t, err)
		var got order
		require.NoError(t, json.Unmarshal(ce["data"], &got), "data of %s", value)
		assert.Equal(t, o, got)
	}
	assert.Len(t, seen, len(want), "kcat output:\n%s", out)
}

// TestKcatPartitionerMatchesBus: keyed records land on the partition of
// Kafka's Java client (murmur2). librdkafka's default partitioner
// (consistent_random, CRC32) differs; with partitioner=murmur2_random kcat
// and the bus agree, so per-key order holds across the two producers.
func TestKcatPartitionerMatchesBus(t *testing.T) {
	testKcatPartitionerMatchesBus(t, kcatPath(t), embeddedBroker(t))
}

func testKcatPartitionerMatchesBus(t *testing.T, bin string, kb kcatBroker) {
	const partitions = 6
	topic, other := kb.name("partitioner"), kb.name("partitioner-default")
	kb.create(t, partitions, topic, other)
	broker := kb.addr
	ctx := testContext(t, 30*time.Second)
	bus := newBus(t, newAdapter(t, fastGroupConfig(strings.Split(broker, ","))), nil)
	var keys []string
	var lines strings.Builder
	for i := range 40 {
		k := fmt.Sprintf("customer-%d", i)
		keys = append(keys, k)
		require.NoError(t, bus.Emit(ctx, topic, map[string]int{"n": i}, eventstream.WithKey(k)))
		fmt.Fprintf(&lines, "%s:{\"n\":%d}\n", k, i)
	}
	kcat(t, bin, lines.String(), "-P", "-b", broker, "-t", topic, "-K:", "-X", "partitioner=murmur2_random")

	byProducer := map[bool]map[string]int{true: {}, false: {}} // from the bus? -> key -> partition
	for _, r := range kcatConsumeJSON(t, bin, broker, topic) {
		require.NotNil(t, r.Key)
		require.NotNil(t, r.Payload)
		fromBus := strings.Contains(*r.Payload, `"specversion"`)
		byProducer[fromBus][*r.Key] = r.Partition
	}
	require.Len(t, byProducer[true], len(keys))
	require.Len(t, byProducer[false], len(keys))
	used := map[int]bool{}
	for _, k := range keys {
		assert.Equal(t, byProducer[true][k], byProducer[false][k], "partition of key %q: bus vs kcat murmur2_random", k)
		used[byProducer[true][k]] = true
	}
	assert.Greater(t, len(used), 1, "40 keys should spread over the partitions")

	// For the record: kcat's default partitioner places keys elsewhere.
	kcat(t, bin, lines.String(), "-P", "-b", broker, "-t", other, "-K:")
	differ := 0
	for _, r := range kcatConsumeJSON(t, bin, broker, other) {
		if r.Key != nil && r.Partition != byProducer[true][*r.Key] {
			differ++
		}
	}
	t.Logf("with librdkafka's default partitioner %d of %d keys land on another partition than the bus picks", differ, len(keys))
}

// TestKcatRecordsReachBus: records produced by kcat, which are not
// CloudEvents, reach bus handlers as raw events; a payload the subscriber's
// Serializer cannot read is dead-lettered without blocking its partition.
func TestKcatRecordsReachBus(t *testing.T) {
	testKcatRecordsReachBus(t, kcatPath(t), embeddedBroker(t))
}

func testKcatRecordsReachBus(t *testing.T, bin string, kb kcatBroker) {
	topic := kb.name("kcat-to-bus")
	const (
		jsonGroup = "json-readers"
		rawGroup  = "raw-readers"
		notJSON   = "this is not JSON {"
		goodJSON  = `{"id":7,"customer":"kcat","amount":12.5}`
	)
	dlq := eventstream.DeadLetterTopicName(topic, jsonGroup)
	kb.create(t, 3, topic, dlq, eventstream.DeadLetterTopicName(topic, rawGroup))
	broker := kb.addr
	ctx := testContext(t, 60*time.Second)

	// Both records on partition 0, the undecodable one first: the JSON one
	// behind it must still be handled.
	kcat(t, bin, "k-bad:"+notJSON+"\nk-good:"+goodJSON+"\n",
		"-P", "-b", broker, "-t", topic, "-p", "0", "-K:", "-H", "origin=kcat", "-H", "batch=b1")

	type delivery struct {
		ev  *eventstream.Event
		err error // of Unmarshal
	}
	collect := func(bus eventstream.Bus, group string, dst func(*eventstream.Event) (any, error)) <-chan delivery {
		ch := make(chan delivery, 16)
		_, err := bus.On(topic, func(_ context.Context, e *eventstream.Event) error {
			_, err := dst(e)
			ch <- delivery{e, err}
			return nil
		}, eventstream.WithConsumerGroup(group), eventstream.WithRetryPolicy(&eventstream.RetryPolicy{MaxRetries: 0}))
		require.NoError(t, err)
		return ch
	}
	next := func(ch <-chan delivery, what string) delivery {
		t.Helper()
		select {
		case d := <-ch:
			return d
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
			return delivery{}
		}
	}

	// The default JSON serializer.
	var (
		fmu      sync.Mutex
		failures []*eventstream.Failure
	)
	jsonBus := newBus(t, newAdapter(t, fastGroupConfig(strings.Split(broker, ","))), func(c *eventstream.Config) {
		c.OnFailure = func(_ context.Context, f *eventstream.Failure) {
			fmu.Lock()
			failures = append(failures, f)
			fmu.Unlock()
		}
	})
	jsonCh := collect(jsonBus, jsonGroup, func(e *eventstream.Event) (any, error) {
		var o order
		return o, e.Unmarshal(&o)
	})
	d := next(jsonCh, "the JSON record")
	e := d.ev
	require.NoError(t, d.err, "Unmarshal of a bare JSON payload")
	assert.Equal(t, "k-good", e.Key)
	assert.Equal(t, topic+"/0/1", e.ID, "ID of a bare payload: topic/partition/offset")
	assert.Equal(t, topic, e.Topic)
	assert.Equal(t, "application/json", e.ContentType)
	assert.Equal(t, []byte(goodJSON), e.Data)
	assert.Equal(t, map[string]string{"origin": "kcat", "batch": "b1"}, e.Headers)
	assert.WithinDuration(t, time.Now(), e.Time, time.Minute, "the record timestamp")
	var o order
	require.NoError(t, e.Unmarshal(&o))
	assert.Equal(t, order{ID: 7, Customer: "kcat", Amount: 12.5}, o)

	// The undecodable record went to the dead-letter topic, with its key,
	// value and headers, and was acknowledged: the group's committed offset
	// of partition 0 moves past both records.
	require.Eventually(t, func() bool { return jsonBus.Stats().DeadLettered == 1 }, 20*time.Second, 10*time.Millisecond)
	fmu.Lock()
	require.Len(t, failures, 1)
	f := failures[0]
	fmu.Unlock()
	assert.ErrorIs(t, f.Err, eventstream.ErrDecode)
	assert.Nil(t, f.Event)
	assert.Equal(t, []byte(notJSON), f.Raw)
	assert.Zero(t, f.Attempts)
	assert.Equal(t, uint64(1), jsonBus.Stats().Failed)

	dead := kcatConsumeJSON(t, bin, broker, dlq)
	require.Len(t, dead, 1, "dead-letter topic %s", dlq)
	r := dead[0]
	require.NotNil(t, r.Key)
	require.NotNil(t, r.Payload)
	assert.Equal(t, "k-bad", *r.Key)
	assert.Equal(t, notJSON, *r.Payload)
	for name, want := range map[string]string{
		eventstream.HeaderDeadLetterTopic:    topic,
		eventstream.HeaderDeadLetterGroup:    jsonGroup,
		eventstream.HeaderDeadLetterAttempts: "0",
		"origin":                             "kcat",
		"batch":                              "b1",
	} {
		got, ok := r.header(name)
		assert.True(t, ok, "dead-letter header %q missing: %v", name, r.Headers)
		assert.Equal(t, want, got, "dead-letter header %q", name)
	}
	reason, ok := r.header(eventstream.HeaderDeadLetterError)
	assert.True(t, ok, "dead-letter header %q missing: %v", eventstream.HeaderDeadLetterError, r.Headers)
	assert.Contains(t, reason, "neither a CloudEvent nor a valid application/json payload")
	t.Logf("dead-letter record: key %q headers %q", *r.Key, r.Headers)

	require.Eventually(t, func() bool {
		return kadmin.Committed(t, strings.Split(broker, ","), jsonGroup, topic, 3)[0] == 2
	}, 20*time.Second, 20*time.Millisecond, "committed offset of partition 0 past the dead-lettered and the handled record")

	// RawSerializer takes any bytes: both records arrive as they are.
	rawBus := newBus(t, newAdapter(t, fastGroupConfig(strings.Split(broker, ","))), func(c *eventstream.Config) {
		c.Distributed.Serializer = eventstream.RawSerializer{}
	})
	rawCh := collect(rawBus, rawGroup, func(e *eventstream.Event) (any, error) {
		var s string
		return s, e.Unmarshal(&s)
	})
	byKey := map[string]*eventstream.Event{}
	for range 2 {
		d := next(rawCh, "records on the raw subscription")
		require.NoError(t, d.err)
		byKey[d.ev.Key] = d.ev
	}
	for key, value := range map[string]string{"k-bad": notJSON, "k-good": goodJSON} {
		e := byKey[key]
		require.NotNil(t, e, "raw event with key %q", key)
		assert.Equal(t, "application/octet-stream", e.ContentType)
		assert.Equal(t, []byte(value), e.Data)
		var s string
		require.NoError(t, e.Unmarshal(&s))
		assert.Equal(t, value, s)
		var b []byte
		require.NoError(t, e.Unmarshal(&b))
		assert.Equal(t, []byte(value), b)
		assert.Equal(t, "kcat", e.Headers["origin"])
	}
	assert.Equal(t, topic+"/0/0", byKey["k-bad"].ID)
	assert.Zero(t, rawBus.Stats().Failed)

	// Nothing more arrives on either subscription.
	select {
	case d := <-jsonCh:
		t.Errorf("unexpected event on the JSON subscription: %+v", d.ev)
	case d := <-rawCh:
		t.Errorf("unexpected event on the raw subscription: %+v", d.ev)
	default:
	}
}
