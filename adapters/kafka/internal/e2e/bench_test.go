package e2e_test

// Benchmarks of the distributed bus over the Kafka adapter next to raw
// kafka-go, against the embedded broker run as a separate process (the
// command adapters/kafka/kafkatest/cmd/kfake, built once per test binary), so
// that the broker's CPU time is not charged to the code under test's process.
//
//	go test -run '^$' -bench 'Emit' -benchtime 2s ./adapters/kafka/internal/e2e
//	go test -run '^$' -bench 'Consume' -benchtime 20000x ./adapters/kafka/internal/e2e
//
// Each reports msgs/s. The bars these benchmarks were written for:
// sequential Emit ≥ 5× a kafka-go Writer with a 1ms BatchTimeout writing one
// message at a time; 64 goroutines emitting ≥ 2× 64 goroutines on one shared
// such Writer; consuming through the whole bus ≥ 0.5× a kafka-go Reader
// committing every message.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/adapters/kafka"
	"github.com/eventstream-go/eventstream/adapters/kafka/internal/kadmin"
)

const (
	benchPartitions = 6
	benchWriters    = 64
)

var kfakeBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// kfakeBinary builds cmd/kfake once per test binary.
func kfakeBinary(b *testing.B) string {
	b.Helper()
	kfakeBin.once.Do(func() {
		kfakeBin.dir, kfakeBin.err = os.MkdirTemp("", "eventstream-e2e-kfake-")
		if kfakeBin.err != nil {
			return
		}
		kfakeBin.path = filepath.Join(kfakeBin.dir, "kfake")
		out, err := exec.Command("go", "build", "-o", kfakeBin.path,
			"github.com/eventstream-go/eventstream/adapters/kafka/kafkatest/cmd/kfake").CombinedOutput()
		if err != nil {
			kfakeBin.err = fmt.Errorf("go build cmd/kfake: %w\n%s", err, out)
		}
	})
	if kfakeBin.err != nil {
		b.Fatal(kfakeBin.err)
	}
	return kfakeBin.path
}

// cleanupBench removes the kfake binary; TestMain calls it.
func cleanupBench() {
	if kfakeBin.dir != "" {
		_ = os.RemoveAll(kfakeBin.dir)
	}
}

// startBroker runs cmd/kfake in its own process until the end of b and
// returns its address.
func startBroker(b *testing.B) []string {
	b.Helper()
	cmd := exec.Command(kfakeBinary(b), "-port", "0", "-partitions", strconv.Itoa(benchPartitions))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case addr <- sc.Text():
			default:
			}
		}
	}()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-scanned
		if err := cmd.Wait(); err != nil {
			b.Errorf("kfake process: %v\n%s", err, stderr.String())
		}
	})
	select {
	case a := <-addr:
		return []string{a}
	case <-scanned:
		b.Fatalf("kfake exited without printing its address: %s", stderr.String())
	case <-time.After(30 * time.Second):
		b.Fatal("kfake did not print its address within 30s")
	}
	return nil
}

var topicSeq atomic.Int64

// benchTopic creates a fresh topic with benchPartitions partitions.
func benchTopic(b *testing.B, brokers []string, prefix string) string {
	b.Helper()
	topic := fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), topicSeq.Add(1))
	kadmin.CreateTopic(b, brokers, topic, benchPartitions)
	return topic
}

// benchEvent is the payload emitted through the bus.
type benchEvent struct {
	Seq      int    `json:"seq"`
	Customer string `json:"customer"`
	Note     string `json:"note"`
}

var benchKeys = func() []string {
	k := make([]string, 256)
	for i := range k {
		k[i] = "customer-" + strconv.Itoa(i)
	}
	return k
}()

func benchPayload(i int) benchEvent {
	return benchEvent{Seq: i, Customer: benchKeys[i%len(benchKeys)], Note: "an event of about the usual size for a benchmark"}
}

// rawValue is what kafka-go writes: a structured CloudEvent of the same
// size as the bus envelope of benchPayload(i).
func rawValue(i int) []byte {
	data, _ := json.Marshal(benchPayload(i))
	v, _ := json.Marshal(map[string]any{
		"specversion": "1.0", "id": "0192f9a4-4c41-7c1e-9d6b-3f8a2b1c0d9e", "source": "eventstream",
		"type": "e2e_test.benchEvent", "time": time.Now().UTC().Format(time.RFC3339Nano),
		"datacontenttype": "application/json", "partitionkey": benchKeys[i%len(benchKeys)],
		"data": json.RawMessage(data),
	})
	return v
}

func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "msgs/s")
	}
}

// benchBus returns a distributed bus over an adapter with default settings.
func benchBus(b *testing.B, brokers []string) eventstream.Bus {
	return newBus(b, newAdapter(b, kafka.Config{Brokers: brokers, Logger: logger()}), nil)
}

func emitOne(ctx context.Context, bus eventstream.Bus, topic string, i int) error {
	return bus.Emit(ctx, topic, benchPayload(i), eventstream.WithKey(benchKeys[i%len(benchKeys)]))
}

// benchWriter returns a kafka-go Writer with a 1ms batch timeout that waits
// for all in-sync replicas, like the adapter's default RequiredAcks.
func benchWriter(b *testing.B, brokers []string, topic string) *kafkago.Writer {
	tr := &kafkago.Transport{}
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafkago.Murmur2Balancer{},
		BatchTimeout: time.Millisecond,
		RequiredAcks: kafkago.RequireAll,
		Transport:    tr,
	}
	b.Cleanup(func() {
		if err := w.Close(); err != nil {
			b.Errorf("Writer.Close: %v", err)
		}
		tr.CloseIdleConnections()
	})
	return w
}

func writeOne(ctx context.Context, w *kafkago.Writer, i int) error {
	return w.WriteMessages(ctx, kafkago.Message{Key: []byte(benchKeys[i%len(benchKeys)]), Value: rawValue(i)})
}

// BenchmarkKafkaEmitSequential: one event at a time, each waiting for the
// broker's acknowledgement.
func BenchmarkKafkaEmitSequential(b *testing.B) {
	brokers := startBroker(b)
	ctx := context.Background()
	b.Run("bus", func(b *testing.B) {
		topic := benchTopic(b, brokers, "emit-seq-bus")
		bus := benchBus(b, brokers)
		if err := emitOne(ctx, bus, topic, 0); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := emitOne(ctx, bus, topic, i); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportRate(b)
	})
	b.Run("kafka-go-writer", func(b *testing.B) {
		topic := benchTopic(b, brokers, "emit-seq-kgo")
		w := benchWriter(b, brokers, topic)
		if err := writeOne(ctx, w, 0); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := writeOne(ctx, w, i); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportRate(b)
	})
}

// runConcurrently calls fn for 0..b.N-1 from benchWriters goroutines and
// times it.
func runConcurrently(b *testing.B, fn func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchWriters)
	b.ReportAllocs()
	b.ResetTimer()
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	reportRate(b)
}

// BenchmarkKafkaEmit64Goroutines: 64 goroutines emitting at once.
func BenchmarkKafkaEmit64Goroutines(b *testing.B) {
	brokers := startBroker(b)
	ctx := context.Background()
	b.Run("bus", func(b *testing.B) {
		topic := benchTopic(b, brokers, "emit-par-bus")
		bus := benchBus(b, brokers)
		if err := emitOne(ctx, bus, topic, 0); err != nil {
			b.Fatal(err)
		}
		runConcurrently(b, func(i int) error { return emitOne(ctx, bus, topic, i) })
	})
	b.Run("kafka-go-writer", func(b *testing.B) {
		topic := benchTopic(b, brokers, "emit-par-kgo")
		w := benchWriter(b, brokers, topic)
		if err := writeOne(ctx, w, 0); err != nil {
			b.Fatal(err)
		}
		runConcurrently(b, func(i int) error { return writeOne(ctx, w, i) })
	})
}

// prefill emits n events on a fresh topic through a bus of its own.
func prefill(b *testing.B, brokers []string, n int) string {
	b.Helper()
	topic := benchTopic(b, brokers, "consume")
	a, err := kafka.NewAdapter(kafka.Config{Brokers: brokers, Logger: logger()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	cfg := eventstream.DefaultDistributedConfig()
	cfg.Distributed.MQAdapter = a
	cfg.Logger = logger()
	bus, err := eventstream.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range benchWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := emitOne(ctx, bus, topic, i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		b.Fatalf("prefill: %v", *p)
	}
	return topic
}

// BenchmarkKafkaConsume: b.N events produced beforehand are consumed by a
// consumer group that joins when the timer starts, until every one was
// handled and committed.
func BenchmarkKafkaConsume(b *testing.B) {
	brokers := startBroker(b)
	busCase := func(concurrency int) func(b *testing.B) {
		return func(b *testing.B) {
			topic := prefill(b, brokers, b.N)
			bus := benchBus(b, brokers)
			ctx := testContext(b, 5*time.Minute)
			var handled atomic.Int64
			done := make(chan struct{})
			h := func(context.Context, *eventstream.Event) error {
				if handled.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}
			b.ReportAllocs()
			b.ResetTimer()
			sub, err := bus.On(topic, h, eventstream.WithConsumerGroup("bench-bus"), eventstream.WithConcurrency(concurrency))
			if err != nil {
				b.Fatal(err)
			}
			select {
			case <-done:
			case <-ctx.Done():
				b.Fatalf("handled %d of %d events", handled.Load(), b.N)
			}
			// Off commits what was acknowledged and leaves the group.
			if err := bus.Off(sub); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			reportRate(b)
		}
	}
	b.Run("bus", busCase(1))
	b.Run("bus-concurrency8", busCase(8))
	b.Run("kafka-go-reader", func(b *testing.B) {
		topic := prefill(b, brokers, b.N)
		ctx := testContext(b, 5*time.Minute)
		b.ReportAllocs()
		b.ResetTimer()
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers:     brokers,
			GroupID:     "bench-reader",
			Topic:       topic,
			StartOffset: kafkago.FirstOffset,
			MaxWait:     500 * time.Millisecond,
		})
		b.Cleanup(func() { _ = r.Close() }) // idempotent; for an early b.Fatal
		for range b.N {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.CommitMessages(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		reportRate(b)
	})
}
