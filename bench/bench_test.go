package bench

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary double as the broker process (StartBroker
// re-runs this executable) and stops the broker after the benchmarks.
func TestMain(m *testing.M) {
	MaybeRunBroker()
	code := m.Run()
	if testBroker != nil {
		_ = testBroker.Close()
	}
	rabbitShared.Close()
	os.Exit(code)
}

var (
	envOnce    sync.Once
	testEnv    *KafkaEnv
	testBroker *Broker
	envErr     error
)

// kafkaEnv returns the broker of the benchmarks: $KAFKA_BROKERS when set
// (comma-separated, e.g. from `go run ./adapters/kafka/kafkatest/cmd/kfake`
// in the repository root), otherwise an embedded broker in a child process.
func kafkaEnv(b *testing.B) *KafkaEnv {
	b.Helper()
	envOnce.Do(func() {
		brokers := os.Getenv("KAFKA_BROKERS")
		var addrs []string
		if brokers != "" {
			addrs = strings.Split(brokers, ",")
		} else {
			testBroker, envErr = StartBroker(KafkaPartitions)
			if envErr != nil {
				return
			}
			addrs = testBroker.Addrs
		}
		testEnv, envErr = NewKafkaEnv(addrs, KafkaPartitions)
		if envErr == nil && testBroker != nil {
			testEnv.BrokerPid = testBroker.Pid()
		}
	})
	if envErr != nil {
		b.Fatal(envErr)
	}
	return testEnv
}

var payloadSizes = []int{100, 1024}

func sizeName(n int) string {
	if n%1024 == 0 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// memoryScenarios are the in-process scenarios: name → scenario without
// payload and event count.
var memoryScenarios = []struct {
	name string
	sc   Scenario
}{
	{"Sub1/Seq", Scenario{Groups: 1, Concurrency: 1, Producers: 1}},
	{"Sub1/Par64", Scenario{Groups: 1, Concurrency: 1, Producers: 64}},
	{"Fanout4/Seq", Scenario{Groups: 4, Concurrency: 1, Producers: 1}},
	{"Fanout4/Par64", Scenario{Groups: 4, Concurrency: 1, Producers: 64}},
	{"Conc8/Seq", Scenario{Groups: 1, Concurrency: 8, Producers: 1}},
	{"Conc8/Par64", Scenario{Groups: 1, Concurrency: 8, Producers: 64}},
}

func peerName(s string) string {
	r := strings.NewReplacer(" ", "", "(", "", ")", "", "/", "", "-", "")
	return r.Replace(s)
}

// BenchmarkMemory: ns/op is the time per emitted event until every handler
// call returned; allocs are per event (whole process).
func BenchmarkMemory(b *testing.B) {
	for _, s := range memoryScenarios {
		for _, size := range payloadSizes {
			for _, p := range MemoryPeers() {
				b.Run(s.name+"/"+sizeName(size)+"/"+peerName(p.Name), func(b *testing.B) {
					sc := s.sc
					sc.Payload = size
					sc.Events = b.N
					b.ReportAllocs()
					res, err := MemoryThroughput(p, sc)
					if reason, ok := IsNA(err); ok {
						b.Skip(reason)
					}
					if err != nil {
						b.Fatal(err)
					}
					report(b, res)
				})
			}
		}
	}
}

func report(b *testing.B, s Sample) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(s.NsPerEvent(), "ns/event")
	b.ReportMetric(s.PerSec(), "events/s")
	b.ReportMetric(s.AllocsPerEvent(), "mallocs/event")
	b.ReportMetric(float64(s.CPUPerEvent().Nanoseconds()), "cpu-ns/event")
	if s.BrokerCPU > 0 {
		b.ReportMetric(float64(s.BrokerCPUPerEvent().Nanoseconds()), "broker-cpu-ns/event")
	}
}

// BenchmarkMemoryLatency reports unloaded Emit→handler latency percentiles.
func BenchmarkMemoryLatency(b *testing.B) {
	for _, p := range MemoryPeers() {
		b.Run(peerName(p.Name), func(b *testing.B) {
			d, err := MemoryLatency(p, max(b.N, 100), 100)
			if err != nil {
				b.Fatal(err)
			}
			l := Summarize(d)
			b.ReportMetric(float64(l.P50.Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(l.P99.Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkKafkaProduce: each op is one acknowledged publish.
func BenchmarkKafkaProduce(b *testing.B) {
	for _, prod := range []int{1, 64} {
		for _, size := range payloadSizes {
			for _, p := range KafkaPeers() {
				if !p.Produces() {
					continue
				}
				b.Run("P"+strconv.Itoa(prod)+"/"+sizeName(size)+"/"+peerName(p.Name), func(b *testing.B) {
					env := kafkaEnv(b)
					res, err := KafkaProduce(env, p, Scenario{Groups: 1, Concurrency: 1, Producers: prod, Payload: size, Events: max(b.N, prod)})
					if err != nil {
						b.Fatal(err)
					}
					report(b, res)
				})
			}
		}
	}
}

// BenchmarkKafkaConsume consumes a preloaded topic; b.N is ignored beyond
// the first iteration (a fixed 10000 messages per group).
func BenchmarkKafkaConsume(b *testing.B) {
	const n = 50000
	for _, s := range []struct {
		name         string
		groups, conc int
	}{{"Group1", 1, 1}, {"Groups4", 4, 1}, {"Group1Conc8", 1, 8}} {
		for _, size := range payloadSizes {
			for _, p := range KafkaPeers() {
				b.Run(s.name+"/"+sizeName(size)+"/"+peerName(p.Name), func(b *testing.B) {
					env := kafkaEnv(b)
					topic, err := KafkaPreload(env, p, n, size)
					if err != nil {
						b.Fatal(err)
					}
					joinTopic, err := KafkaPreload(env, p, 1, size)
					if err != nil {
						b.Fatal(err)
					}
					b.ResetTimer()
					res, err := KafkaConsume(env, p, topic, joinTopic, Scenario{Groups: s.groups, Concurrency: s.conc, Producers: 1, Payload: size, Events: n})
					if reason, ok := IsNA(err); ok {
						b.Skip(reason)
					}
					if err != nil {
						b.Fatal(err)
					}
					report(b, res)
					b.ReportMetric(float64(res.Startup)/float64(time.Millisecond), "startup-ms")
				})
			}
		}
	}
}
