package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/eventstream-go/eventstream/bench"
)

// goal is one target of the report, checked on every case it applies to.
type goal struct {
	ID      string
	Section string // result section
	Text    string
	Cases   func(tc testCase) bool
	// Ours is the eventstream peer the goal is about (the one profiled
	// where the goal is missed), Theirs the peer it is measured against.
	Ours, Theirs string
	// Serial takes Theirs from the one-handler case of a concurrency-8
	// case (a peer without a handler pool; see serialCase).
	Serial bool
	// Value computes the measured quantity for a case (ok is false when a
	// result is missing); nil means Ours' throughput ÷ Theirs'.
	Value func(r *runner, tc testCase) (float64, bool)
	Cmp   string // "<=", ">=" or ">"
	Limit float64
	Unit  string // "×" or ""
}

func (g goal) met(v float64) bool {
	switch g.Cmp {
	case "<=":
		return v <= g.Limit
	case ">=":
		return v >= g.Limit
	default:
		return v > g.Limit
	}
}

func (g goal) required() string {
	cmp := map[string]string{"<=": "≤", ">=": "≥", ">": ">"}[g.Cmp]
	return fmt.Sprintf("%s %s%s", cmp, trimFloat(g.Limit), g.Unit)
}

// miss says by how much v misses the goal.
func (g goal) miss(v float64) string {
	switch g.Cmp {
	case "<=":
		return fmt.Sprintf("%.0f%% over the limit", (v/g.Limit-1)*100)
	default:
		if v <= 0 {
			return "no throughput"
		}
		return fmt.Sprintf("%.0f%% short: eventstream needs %.2f× its throughput", (1-v/g.Limit)*100, g.Limit/v)
	}
}

// fmtValue formats a measured goal value, with an extra digit when two
// would hide on which side of the limit it is.
func (g goal) fmtValue(v float64) string {
	out := fmtRatio(v, g.Unit)
	if out == fmtRatio(g.Limit, g.Unit) && !g.met(v) {
		out = fmt.Sprintf("%.3f%s", v, g.Unit)
	}
	return out
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func fmtRatio(v float64, unit string) string {
	if unit == "" {
		return fmt.Sprintf("%.2f", v)
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f%s", v, unit)
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f%s", v, unit)
	}
	return fmt.Sprintf("%.2f%s", v, unit)
}

func (r *runner) get(section, c, peer string) (bench.Sample, bool) {
	res := r.results[key(section, c, peer)]
	if res == nil || res.NA != "" || res.Err != "" || len(res.Samples) == 0 {
		return bench.Sample{}, false
	}
	return res.Median, true
}

// serialCase is the one-handler case of a concurrency-8 consume case
// ("conc8-100B" -> "group1-100B"); other cases are their own.
func serialCase(id string) string {
	if rest, ok := strings.CutPrefix(id, "conc8-"); ok {
		return "group1-" + rest
	}
	return id
}

// theirsCase is the case Theirs is taken from in case tc.
func (g goal) theirsCase(tc testCase) string {
	if g.Serial {
		return serialCase(tc.ID)
	}
	return tc.ID
}

// value is the goal's measured quantity in case tc.
func (g goal) value(r *runner, tc testCase) (float64, bool) {
	if g.Value != nil {
		return g.Value(r, tc)
	}
	a, ok1 := r.get(tc.Section, tc.ID, g.Ours)
	b, ok2 := r.get(tc.Section, g.theirsCase(tc), g.Theirs)
	if !ok1 || !ok2 {
		return 0, false
	}
	return a.PerSec() / b.PerSec(), true
}

func goals() []goal {
	isMem := func(tc testCase) bool { return tc.Section == "memory" }
	prefix := func(section string, ps ...string) func(tc testCase) bool {
		return func(tc testCase) bool {
			if tc.Section != section {
				return false
			}
			for _, p := range ps {
				if strings.HasPrefix(tc.ID, p) {
					return true
				}
			}
			return false
		}
	}
	return append([]goal{
		{
			ID: "M1", Section: "memory", Text: "Memory bus ns per event ≤ 4× the raw channel's", Cases: isMem,
			Ours: bench.PeerEventstream, Theirs: bench.PeerRawChannel,
			Value: func(r *runner, tc testCase) (float64, bool) {
				a, ok1 := r.get(tc.Section, tc.ID, bench.PeerEventstream)
				b, ok2 := r.get(tc.Section, tc.ID, bench.PeerRawChannel)
				if !ok1 || !ok2 {
					return 0, false
				}
				return a.NsPerEvent() / b.NsPerEvent(), true
			},
			Cmp: "<=", Limit: 4, Unit: "×",
		},
		{
			ID: "M2", Section: "memory", Text: "Memory bus ≤ 1 allocation per event (pointer payload)", Cases: isMem,
			Ours: bench.PeerEventstream,
			Value: func(r *runner, tc testCase) (float64, bool) {
				a, ok := r.get(tc.Section, tc.ID, bench.PeerEventstream)
				// Whole-process counts carry a little runtime noise
				// (goroutine stacks, timers): round to 2 decimals.
				return math.Round(a.AllocsPerEvent()*100) / 100, ok
			},
			Cmp: "<=", Limit: 1, Unit: "",
		},
		{
			ID: "M3", Section: "memory", Text: "Memory bus throughput ≥ 50× Watermill GoChannel", Cases: isMem,
			Ours: bench.PeerEventstream, Theirs: bench.PeerGoChannel, Cmp: ">=", Limit: 50, Unit: "×",
		},
		{
			ID: "M4", Section: "memory", Text: "Memory bus ahead of EventBus async (throughput ratio > 1)", Cases: isMem,
			Ours: bench.PeerEventstream, Theirs: bench.PeerEventBus, Cmp: ">", Limit: 1, Unit: "×",
		},
		{
			ID: "K1", Section: "kafka-produce", Text: "Kafka sequential Emit ≥ 1.5× Watermill-kafka", Cases: prefix("kafka-produce", "seq-"),
			Ours: bench.PeerBusKafka, Theirs: bench.PeerWatermillKafka, Cmp: ">=", Limit: 1.5, Unit: "×",
		},
		{
			ID: "K2", Section: "kafka-produce", Text: "Kafka 64-way Emit ≥ franz-go ProduceSync", Cases: prefix("kafka-produce", "par64-"),
			Ours: bench.PeerBusKafka, Theirs: bench.PeerFranzGo, Cmp: ">=", Limit: 1, Unit: "×",
		},
		{
			ID: "K3", Section: "kafka-consume", Text: "Kafka group consumption through the bus ≥ 3× Watermill-kafka",
			Cases: prefix("kafka-consume", "group1-", "fanout4-"),
			Ours:  bench.PeerBusKafka, Theirs: bench.PeerWatermillKafka, Cmp: ">=", Limit: 3, Unit: "×",
		},
		{
			ID: "K4", Section: "kafka-consume", Text: "Kafka group consumption through the bus ≥ 0.8× raw kafka-go draining the same records " +
				"(concurrency 8 against kafka-go's one handler)",
			Cases: prefix("kafka-consume", "group1-", "fanout4-", "conc8-"),
			Ours:  bench.PeerBusKafka, Theirs: bench.PeerKafkaGoBusRecords, Serial: true, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
		{
			ID: "K5", Section: "kafka-consume", Text: "Kafka consumption through the bus with concurrency 8 not slower than with 1",
			Cases: prefix("kafka-consume", "conc8-"),
			Ours:  bench.PeerBusKafka, Theirs: bench.PeerBusKafka, Serial: true, Cmp: ">=", Limit: 1, Unit: "×",
		},
		{
			ID: "K6", Section: "kafka-consume", Text: "adapters/kafka alone consumes ≥ 1× raw kafka-go (both on raw records)",
			Cases: prefix("kafka-consume", "group1-", "fanout4-"),
			Ours:  bench.PeerAdapterKafka, Theirs: bench.PeerKafkaGo, Cmp: ">=", Limit: 1, Unit: "×",
		},
		{
			ID: "K7", Section: "kafka-produce", Text: "Kafka sequential Emit ≥ 0.95× the adapter alone", Cases: prefix("kafka-produce", "seq-"),
			Ours: bench.PeerBusKafka, Theirs: bench.PeerAdapterKafka, Cmp: ">=", Limit: 0.95, Unit: "×",
		},
		{
			ID: "K1b", Section: "kafka-produce", Text: "K1 with Distributed.BinaryMode", Cases: prefix("kafka-produce", "seq-"),
			Ours: bench.PeerBusKafkaBinary, Theirs: bench.PeerWatermillKafka, Cmp: ">=", Limit: 1.5, Unit: "×",
		},
		{
			ID: "K2b", Section: "kafka-produce", Text: "K2 with Distributed.BinaryMode", Cases: prefix("kafka-produce", "par64-"),
			Ours: bench.PeerBusKafkaBinary, Theirs: bench.PeerFranzGo, Cmp: ">=", Limit: 1, Unit: "×",
		},
		{
			ID: "K3b", Section: "kafka-consume", Text: "K3 with Distributed.BinaryMode",
			Cases: prefix("kafka-consume", "group1-", "fanout4-"),
			Ours:  bench.PeerBusKafkaBinary, Theirs: bench.PeerWatermillKafka, Cmp: ">=", Limit: 3, Unit: "×",
		},
		{
			ID: "K4b", Section: "kafka-consume", Text: "K4 with Distributed.BinaryMode (kafka-go on the binary-mode records)",
			Cases: prefix("kafka-consume", "group1-", "fanout4-", "conc8-"),
			Ours:  bench.PeerBusKafkaBinary, Theirs: bench.PeerKafkaGoBinaryRecords, Serial: true, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
	}, append(append(rabbitGoals(), natsGoals()...), redisGoals()...)...)
}

// goalEval is a goal checked on every case it applies to.
type goalEval struct {
	goal
	cases  []testCase
	values []float64
	have   []bool
}

func (r *runner) evalGoals() []goalEval {
	var out []goalEval
	for _, g := range goals() {
		ge := goalEval{goal: g}
		for _, tc := range r.cases {
			if !g.Cases(tc) {
				continue
			}
			v, ok := g.value(r, tc)
			ge.cases = append(ge.cases, tc)
			ge.values = append(ge.values, v)
			ge.have = append(ge.have, ok)
		}
		out = append(out, ge)
	}
	return out
}

func (ge goalEval) summary() (result, verdict string) {
	n, met := 0, 0
	for i, v := range ge.values {
		if ge.have[i] {
			n++
			if ge.met(v) {
				met++
			}
		}
	}
	worstI := ge.worst()
	if worstI < 0 {
		return "not measured", "–"
	}
	worst := ge.values[worstI]
	var parts []string
	for i, v := range ge.values {
		if ge.have[i] {
			mark := "✅"
			if !ge.met(v) {
				mark = "❌"
			}
			parts = append(parts, fmt.Sprintf("%s %s %s", shortCase(ge.cases[i]), ge.fmtValue(v), mark))
		}
	}
	if len(parts) > 4 {
		result = fmt.Sprintf("met in %d of %d scenarios; worst %s (%s)", met, n, ge.fmtValue(worst), ge.cases[worstI].Title)
	} else {
		result = strings.Join(parts, "; ")
	}
	switch {
	case met == n:
		verdict = "**met**"
	case met == 0:
		verdict = fmt.Sprintf("**not met** (worst: %s)", ge.miss(worst))
	default:
		verdict = fmt.Sprintf("**not met** in %d of %d (worst: %s)", n-met, n, ge.miss(worst))
	}
	return result, verdict
}

func shortCase(tc testCase) string {
	return strings.ReplaceAll(tc.ID, "-", " ")
}

func (r *runner) markdown(chartRel string, charts map[string]string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine

	w("# Benchmarks\n\n")
	w("Generated by `make bench-report` (`cd bench && go run ./cmd/report -out ../docs/benchmarks.md`); ")
	w("do not edit by hand. The numbers are from one run on one machine: compare the ratios, which were measured side by side, rather than absolute values.\n\n")
	if r.o.quick {
		w("> **Quick run** (`-quick`): small event counts and %d repetition(s); the numbers are noisy.\n\n", r.o.reps)
	}
	if r.o.only != nil {
		w("> **Partial run** (`-only %s`): only matching measurements were made.\n\n", r.o.only)
	}

	w("## Machine and run\n\n")
	w("| | |\n|---|---|\n")
	w("| Date | %s (run took %s) |\n", r.started.UTC().Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	w("| CPU | %s |\n", m.CPU)
	w("| Cores | %d (GOMAXPROCS %d) |\n", m.Cores, m.MaxProcs)
	if m.MemGiB > 0 {
		w("| Memory | %.0f GiB |\n", m.MemGiB)
	}
	if m.Kernel != "" {
		w("| OS | %s |\n", m.Kernel)
	}
	w("| Go | %s |\n", m.GoVersion)
	if m.Commit != "" {
		w("| eventstream commit | %s |\n", m.Commit)
	}
	if r.brokerInfo != "" {
		w("| Kafka broker | %s |\n", r.brokerInfo)
	}
	w("| Repetitions | %d per measurement, median reported |\n", r.o.reps)
	for _, d := range m.Deps {
		w("| `%s` | %s |\n", d[0], d[1])
	}
	w("\n")

	evals := r.evalGoals()
	w("## Goals\n\n")
	w("Ratios are eventstream ÷ peer, measured in the same run (throughput ratios: > 1 means eventstream is faster; M1 is a time ratio: < 1 would mean faster than the raw channel). ")
	w("Each goal is checked on every scenario it applies to, and is met only if it is met in all of them.\n\n")
	w("| # | Goal | Required | Measured | Verdict |\n|---|---|---|---|---|\n")
	for _, ge := range evals {
		res, verdict := ge.summary()
		w("| %s | %s | %s | %s | %s |\n", ge.ID, ge.Text, ge.required(), res, verdict)
	}
	w("\n")
	// Per-scenario matrix for the in-process goals.
	w("In-process goals per scenario:\n\n| Scenario |")
	var memGoals []goalEval
	for _, ge := range evals {
		if ge.Section == "memory" {
			memGoals = append(memGoals, ge)
			w(" %s (%s) |", ge.ID, ge.required())
		}
	}
	w("\n|---|")
	for range memGoals {
		w("---|")
	}
	w("\n")
	if len(memGoals) > 0 {
		for i, tc := range memGoals[0].cases {
			w("| %s |", tc.Title)
			for _, ge := range memGoals {
				if i >= len(ge.values) || !ge.have[i] {
					w(" n/a |")
					continue
				}
				mark := "✅"
				if !ge.met(ge.values[i]) {
					mark = "❌"
				}
				w(" %s %s |", ge.fmtValue(ge.values[i]), mark)
			}
			w("\n")
		}
	}
	w("\n")
	r.missesSection(&b, evals)

	r.overhead(&b)

	w("## Method\n\n")
	w("- Every measurement is repeated %d× (peers interleaved within each repetition) and the median is reported; allocations are the median too.\n", r.o.reps)
	w("- **allocs/event** is the process-wide `runtime.MemStats.Mallocs` difference over the timed part divided by the events emitted (or consumed per group): it includes the handler side and the libraries' background goroutines. The broker runs in another process and is not counted.\n")
	w("- **In-process**: %d events per measurement (Watermill GoChannel: %d, it is much slower), after a warm-up of 10%% of that. ", r.plan.memEvents, r.plan.memEvents/r.plan.memSlowDivisor)
	w("Each producer goroutine emits one reused `*Payload` (a pointer; the 100 B / 1 KiB `[]byte` inside it is what Watermill messages carry). ")
	w("Timing runs from the first Emit until the last handler call returned; handlers only count. Queues are 1024 deep where a peer has one. ")
	w("ns/event is per *emitted* event: with fan-out to 4 groups each event is handled 4 times.\n")
	w("  - eventstream: `DefaultConfig()`, one `On` per consumer group with `WithConcurrency`.\n")
	w("  - raw channel: one `chan *Payload` (cap 1024) per group, read by `Concurrency` goroutines; emit sends to every channel. The floor.\n")
	w("  - raw channel, new *Event per emit: the same channels carrying a new `*eventstream.Event` per emit (topic, `time.Now()`, payload; one for all groups): the one allocation and the clock read any bus that hands handlers an event pays, without the bus.\n")
	w("  - EventBus: `SubscribeAsync(topic, fn, false)` per group (non-transactional: every call runs on a goroutine of its own), completion by `WaitAsync`. It has no bounded handler pool, so the concurrency-8 scenarios are n/a.\n")
	w("  - Watermill GoChannel: `NewGoChannel(Config{OutputChannelBuffer: 1024})`, one `Subscribe` per group, `Concurrency` goroutines reading the channel and `Ack`ing; one `message.NewMessage(watermill.NewUUID(), payload)` per publish.\n")
	w("- **Kafka**: every peer talks to the same broker, topics have %d partitions and are created for each measurement. acks=all everywhere, no compression everywhere. ", bench.KafkaPartitions)
	w("Produce: %d sequential publishes (1 goroutine waiting for each acknowledgement) or %d publishes from %d goroutines, after a short warm-up; timed until the last publish returned. ", r.plan.kafkaSeq, r.plan.kafkaPar, r.plan.parallelEmitter)
	w("Consumption: a backlog of %d messages (fan-out: %d) preloaded in the peer's own format is drained by new consumer groups starting at the earliest offset (the bus's records, CloudEvents with their attributes, are bigger than the raw records of the other peers: see the record sizes; the kafka-go rows on the bus's records drain exactly what the bus drains); each handler counts the message and then acknowledges/commits it the way the library does. ", r.plan.kafkaConsume, r.plan.kafkaFanout)
	w("Because clients fetch ahead (some take the whole backlog before the first handler call), the drain is timed from subscribing to the last handled message, less the time the same peer needs to join and deliver a one-message backlog (reported as *join*). ")
	w("Before every timed broker measurement (every broker, produce and consumption) the harness waits until the broker process is idle, at most 10ms of CPU in 100ms (for up to 3s), so that work it still does for an earlier step (a preload, collecting what the previous peer left) does not land in the next peer's numbers.\n")
	for _, p := range bench.KafkaPeers() {
		w("  - %s: %s.\n", p.Name, p.Config)
	}
	w("- **Latency** (Emit→handler): one subscription, one event in flight: each event is emitted only after the previous one reached its handler, so this is the unloaded hop latency (p50/p99 over %d in-process or %d Kafka samples per repetition, %d B payload; medians of the repetitions' percentiles).\n", r.plan.memLatency, r.plan.kafkaLatency, r.plan.latencyPayload)
	w("- **CPU columns** (Kafka): *client CPU* is this process's user+system time (getrusage) over the timed part, *broker CPU* the broker process's (from /proc, 10 ms ticks), both per message of the topic (with fan-out each is handled by 4 groups). Client and broker share the machine's %d cores, so where a scenario is CPU-bound the sum of the two decides the ranking.\n", m.Cores)
	w("- Scenarios a peer does not support are marked n/a with the reason.\n")
	w("- %s\n\n", r.watermillNote())
	w("### Caveats\n\n")
	w("- kfake is an in-memory implementation of the Kafka protocol, not Apache Kafka: no disk, no replication, one process. Absolute numbers will differ on a real cluster; what transfers is how much work each client makes per message, for itself and for the broker.\n")
	w("- Sequential publishing is bound by the loopback round trip (client and broker wake-ups), so it differs little between clients that do not add a timer; kafka-go's 1 ms BatchTimeout shows up directly.\n")
	w("- In-process numbers with one producer measure a hand-off between goroutines on 2 cores; they vary between runs by ±30%% or more. The ratios of the same run are the meaningful part.\n\n")

	// Sections.
	w("## In-process\n\n")
	if f, ok := charts["memory"]; ok {
		w("![in-process throughput](%s/%s)\n\n", chartRel, f)
	}
	r.caseTables(&b, "memory", memoryPeerNames(), bench.PeerEventstream, false)
	w("### Emit→handler latency (in-process, unloaded)\n\n")
	if f, ok := charts["latency-memory"]; ok {
		w("![in-process latency](%s/%s)\n\n", chartRel, f)
	}
	r.latencyTable(&b, "memory", bench.PeerEventstream)

	r.kafkaSections(&b, chartRel, charts)
	r.rabbitSection(&b)
	r.natsMarkdown(&b)
	r.redisSection(&b)

	w("## Reproduce\n\n")
	w("```sh\nmake bench-report                                   # or:\ncd bench && go run ./cmd/report -out ../docs/benchmarks.md\nmake bench-report-kafka                             # the real-Kafka block (needs make brokers)\ncd bench && go run ./cmd/report -quick -out /tmp/bench.md   # smoke run, about a minute\n")
	w("cd bench && go run ./cmd/report -only 'kafka-consume/group1-100B/eventstream' -cpuprofile /tmp/cpu.out -out /tmp/one.md\n")
	w("cd bench && go test -run '^$' -bench 'Memory/Sub1' -benchmem   # the same scenarios as Go benchmarks\n```\n")
	return b.String()
}

// kafkaSections writes the Kafka record-size, produce, consumption and
// latency sections.
func (r *runner) kafkaSections(b *strings.Builder, chartRel string, charts map[string]string) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	r.recordSizeTable(b)
	w("## %s: produce\n\n", r.kafkaHeading())
	if f, ok := charts["kafka-produce"]; ok {
		w("![kafka produce](%s/%s)\n\n", chartRel, f)
	}
	r.caseTables(b, "kafka-produce", kafkaProducerNames(), bench.PeerBusKafka, false)
	w("## %s: group consumption\n\n", r.kafkaHeading())
	if f, ok := charts["kafka-consume"]; ok {
		w("![kafka consume](%s/%s)\n\n", chartRel, f)
	}
	r.caseTables(b, "kafka-consume", kafkaPeerNames(), bench.PeerBusKafka, true)
	w("### Emit→handler latency (%s, unloaded)\n\n", r.kafkaHeading())
	if f, ok := charts["latency-kafka"]; ok {
		w("![kafka latency](%s/%s)\n\n", chartRel, f)
	}
	r.latencyTable(b, "kafka", bench.PeerBusKafka)
}

// kafkaHeading is the prefix of the Kafka section headings.
func (r *runner) kafkaHeading() string {
	if r.kafkaTitle != "" {
		return r.kafkaTitle
	}
	return "Kafka"
}

// The real-Kafka block of the report, written by -real-kafka and kept by
// full runs.
const (
	blockBegin = "<!-- real-kafka: begin (written by cmd/report -real-kafka; kept by full runs) -->\n"
	blockEnd   = "<!-- real-kafka: end -->\n"
)

// block returns the real-Kafka block of a report ("" when it has none).
func block(md string) string {
	i := strings.Index(md, blockBegin)
	j := strings.Index(md, blockEnd)
	if i < 0 || j < i {
		return ""
	}
	return md[i : j+len(blockEnd)]
}

// replaceBlock puts blk in place of md's real-Kafka block, or before its
// "## Reproduce" section (at the end if there is none). An empty blk
// leaves md as it is.
func replaceBlock(md, blk string) string {
	if blk == "" {
		return md
	}
	if old := block(md); old != "" {
		return strings.Replace(md, old, blk, 1)
	}
	if i := strings.Index(md, "## Reproduce\n"); i >= 0 {
		return md[:i] + blk + "\n" + md[i:]
	}
	return md + "\n" + blk
}

// realKafkaBlock is the report block of a -real-kafka run: the Kafka goals
// and sections measured against a real broker.
func (r *runner) realKafkaBlock(chartRel string, charts map[string]string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("%s", blockBegin)
	w("## Real Apache Kafka\n\n")
	w("The Kafka scenarios and peers above, run against %s instead of kfake: ", r.brokerInfo)
	w("%s, %d repetition(s) per measurement, median reported", r.started.UTC().Format("2006-01-02 15:04 MST"), r.o.reps)
	if r.o.quick {
		w(", **quick run** (`-quick`: small event counts, noisy numbers)")
	}
	if r.machine.Commit != "" {
		w(", eventstream commit %s", r.machine.Commit)
	}
	w(". The broker is a JVM on the same %d cores as the clients, with its data on disk; *broker CPU* is that JVM's. ", r.machine.Cores)
	w("Regenerate with `make bench-report-kafka` (needs `make brokers`).\n\n")
	w("| # | Goal | Required | Measured | Verdict |\n|---|---|---|---|---|\n")
	var kafkaEvals []goalEval
	for _, ge := range r.evalGoals() {
		if !strings.HasPrefix(ge.Section, "kafka") {
			continue
		}
		res, verdict := ge.summary()
		w("| %s | %s | %s | %s | %s |\n", ge.ID, ge.Text, ge.required(), res, verdict)
		kafkaEvals = append(kafkaEvals, ge)
	}
	w("\n")
	r.missesSection(&b, kafkaEvals)
	r.kafkaSections(&b, chartRel, charts)
	w("%s", blockEnd)
	return b.String()
}

// overhead compares the Kafka bus with its own adapter used alone, which
// tells whether a gap to the peers is in the bus or in the adapter.
func (r *runner) overhead(b *strings.Builder) {
	var lines []string
	for _, tc := range r.cases {
		if tc.Section == "memory" {
			continue
		}
		bus, ok1 := r.get(tc.Section, tc.ID, bench.PeerBusKafka)
		ad, ok2 := r.get(tc.Section, tc.ID, bench.PeerAdapterKafka)
		if !ok1 || !ok2 {
			continue
		}
		section := "produce"
		if tc.Section == "kafka-consume" {
			section = "consume"
		}
		line := fmt.Sprintf("| %s: %s | %.2f× | %.1f / %.1f | %.0f / %.0f |", section, tc.Title,
			ad.PerSec()/bus.PerSec(),
			float64(bus.CPUPerEvent().Nanoseconds())/1e3, float64(ad.CPUPerEvent().Nanoseconds())/1e3,
			bus.AllocsPerEvent(), ad.AllocsPerEvent())
		if bus.BrokerCPU > 0 && ad.BrokerCPU > 0 {
			line += fmt.Sprintf(" %.1f / %.1f |", float64(bus.BrokerCPUPerEvent().Nanoseconds())/1e3, float64(ad.BrokerCPUPerEvent().Nanoseconds())/1e3)
		} else {
			line += " – |"
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### Bus over Kafka vs its adapter alone\n\n")
	fmt.Fprintf(b, "The same adapters/kafka used directly (Publish; Subscribe + Ack, no handler pool) shows how much of a gap is in the bus rather than in the adapter or the broker.\n\n")
	fmt.Fprintf(b, "| Scenario | adapter alone ÷ bus (throughput) | client CPU µs/msg, bus / adapter | allocs/msg, bus / adapter | broker CPU µs/msg, bus / adapter |\n|---|---:|---:|---:|---:|\n")
	for _, l := range lines {
		fmt.Fprintln(b, l)
	}
	fmt.Fprintln(b)
}

// recordSizeTable shows what each peer stores per message.
func (r *runner) recordSizeTable(b *strings.Builder) {
	if len(r.recordSizes) == 0 {
		return
	}
	fmt.Fprintf(b, "## %s: record size on the broker\n\n", r.kafkaHeading())
	fmt.Fprintf(b, "Bytes of the stored record value (and of its headers) for one message of each payload size: every peer is given the same payload bytes, but eventstream wraps them in a CloudEvents envelope.\n\n")
	fmt.Fprintf(b, "| Peer |")
	for _, size := range r.plan.payloads {
		fmt.Fprintf(b, " %s payload: value (headers) |", sizeLabel(size))
	}
	fmt.Fprintf(b, "\n|---|")
	for range r.plan.payloads {
		fmt.Fprintf(b, "---:|")
	}
	fmt.Fprintln(b)
	for _, p := range kafkaProducerNames() {
		fmt.Fprintf(b, "| %s |", p)
		for _, size := range r.plan.payloads {
			if v, ok := r.recordSizes[fmt.Sprintf("%s/%d", p, size)]; ok {
				fmt.Fprintf(b, " %d B (%d B) |", v[0], v[1])
			} else {
				fmt.Fprintf(b, " – |")
			}
		}
		fmt.Fprintln(b)
	}
	fmt.Fprintln(b)
}

// watermillNote says whether Watermill-kafka worked against the broker.
func (r *runner) watermillNote() string {
	ran, failed := 0, ""
	for _, res := range r.results {
		if res.Peer != bench.PeerWatermillKafka {
			continue
		}
		ran++
		if res.Err != "" && failed == "" {
			failed = res.Err
		}
	}
	for _, l := range r.lat {
		if l.Peer == bench.PeerWatermillKafka {
			ran++
			if l.Err != "" && failed == "" {
				failed = l.Err
			}
		}
	}
	switch {
	case ran == 0:
		return "Watermill-kafka was not run."
	case failed != "":
		return "Watermill-kafka (Sarama) failed against kfake: `" + failed + "`."
	}
	return "Watermill-kafka (Sarama, with Watermill's default protocol version V1_0_0_0) works against kfake unchanged: producing, consumer groups and commits."
}

func (r *runner) caseTables(b *strings.Builder, section string, peers []string, ours string, consume bool) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	for _, tc := range r.cases {
		if tc.Section != section {
			continue
		}
		any := false
		for _, p := range peers {
			if r.results[key(section, tc.ID, p)] != nil {
				any = true
			}
		}
		if !any {
			continue
		}
		w("### %s\n\n", tc.Title)
		unit := "ns/event"
		if section != "memory" {
			unit = "µs/msg"
		}
		kafka := section != "memory"
		switch {
		case consume:
			w("| Peer | msgs/s per group | %s | allocs/msg | client CPU µs/msg | broker CPU µs/msg | join | vs eventstream |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", unit)
		case kafka:
			w("| Peer | msgs/s | %s | allocs/msg | client CPU µs/msg | broker CPU µs/msg | vs eventstream |\n|---|---:|---:|---:|---:|---:|---:|\n", unit)
		default:
			w("| Peer | events/s | %s | allocs/event | vs eventstream |\n|---|---:|---:|---:|---:|\n", unit)
		}
		blanks := "| | |"
		switch {
		case consume:
			blanks = "| | | | | |"
		case kafka:
			blanks = "| | | | |"
		}
		base, haveBase := r.get(section, tc.ID, ours)
		for _, p := range peers {
			res := r.results[key(section, tc.ID, p)]
			name := p
			if p == ours {
				name = "**" + p + "**"
			}
			switch {
			case res == nil:
				continue
			case res.NA != "":
				w("| %s | n/a %s %s |\n", name, blanks, res.NA)
				continue
			case res.Err != "":
				w("| %s | error %s %s |\n", name, blanks, strings.ReplaceAll(res.Err, "|", "\\|"))
				continue
			}
			s := res.Median
			per := fmt.Sprintf("%.0f", s.NsPerEvent())
			if section != "memory" {
				per = fmt.Sprintf("%.1f", s.NsPerEvent()/1000)
			}
			ratio := "–"
			if haveBase {
				ratio = fmt.Sprintf("%.2f×", s.PerSec()/base.PerSec())
				if p == ours {
					ratio = "1.00×"
				}
			}
			cpu := fmt.Sprintf("%.1f", float64(s.CPUPerEvent().Nanoseconds())/1e3)
			bcpu := "–"
			if s.BrokerCPU > 0 {
				bcpu = fmt.Sprintf("%.1f", float64(s.BrokerCPUPerEvent().Nanoseconds())/1e3)
			}
			switch {
			case consume:
				w("| %s | %s | %s | %.1f | %s | %s | %s | %s |\n", name, si(s.PerSec()), per, s.AllocsPerEvent(), cpu, bcpu, s.Startup.Round(time.Millisecond), ratio)
			case kafka:
				w("| %s | %s | %s | %.1f | %s | %s | %s |\n", name, si(s.PerSec()), per, s.AllocsPerEvent(), cpu, bcpu, ratio)
			default:
				w("| %s | %s | %s | %.2f | %s |\n", name, si(s.PerSec()), per, s.AllocsPerEvent(), ratio)
			}
		}
		w("\n")
	}
	w("*vs eventstream* is the peer's throughput ÷ eventstream's: > 1 means the peer is faster.\n\n")
}

func (r *runner) latencyTable(b *strings.Builder, section, ours string) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	var base *latResult
	for _, l := range r.lat {
		if l.Section == section && l.Peer == ours {
			base = l
		}
	}
	rows := 0
	for _, l := range r.lat {
		if l.Section != section {
			continue
		}
		if rows == 0 {
			w("| Peer | p50 | p99 | samples | p50 vs eventstream |\n|---|---:|---:|---:|---:|\n")
		}
		rows++
		if l.Err != "" {
			w("| %s | error | | | %s |\n", l.Peer, strings.ReplaceAll(l.Err, "|", "\\|"))
			continue
		}
		ratio := "–"
		if base != nil && base.Err == "" && base.Median.P50 > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(l.Median.P50)/float64(base.Median.P50))
		}
		w("| %s | %s | %s | %d | %s |\n", l.Peer, fmtDur(l.Median.P50), fmtDur(l.Median.P99), l.Median.Samples, ratio)
	}
	if rows == 0 {
		w("Not measured in this run.\n\n")
		return
	}
	w("\n*p50 vs eventstream* is the peer's median latency ÷ eventstream's: < 1 means the peer is quicker.\n\n")
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d >= time.Microsecond:
		return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%d ns", d.Nanoseconds())
}
