// Command report runs every benchmark of the bench module — eventstream and
// its peers, in-process and over one embedded Kafka-protocol broker — and
// writes docs/benchmarks.md with tables, goal checks and PNG charts.
//
//	cd bench && go run ./cmd/report -out ../docs/benchmarks.md
//
// Flags:
//
//	-out FILE        markdown report to write (default ../docs/benchmarks.md);
//	                 charts go to the directory "benchmarks" beside it
//	-quick           small event counts and one repetition (a smoke run)
//	-reps N          repetitions of every measurement; the median is reported
//	                 (default 3, 1 with -quick)
//	-only REGEXP     run only measurements whose "section/case/peer" matches,
//	                 e.g. 'kafka-consume/.*/eventstream'
//	-brokers LIST    use these Kafka brokers instead of starting the embedded
//	                 one (e.g. from adapters/kafka/kafkatest/cmd/kfake)
//	-broker-info S   describes the -brokers broker in the report
//	-broker-pid N    the -brokers broker's process id, for its CPU column
//	-real-kafka      run only the Kafka measurements (needs -brokers) and
//	                 write them as the "Real Apache Kafka" block of the
//	                 existing -out report, leaving the rest of it alone;
//	                 charts are named real-kafka-*.png. A full run keeps
//	                 that block. From the repository root:
//	                 go run ./internal/brokertest/cmd/kafka-up -- sh -c 'cd bench &&
//	                   go run ./cmd/report -real-kafka -brokers {brokers}
//	                   -broker-pid {pid} -broker-info "Apache Kafka {version}"'
//	                 (make bench-report-kafka)
//	-cpuprofile FILE write a CPU profile of the whole run (use with -only);
//	                 it replaces the per-scenario profiles below
//	-no-profiles     do not profile the scenarios in which a goal is missed
//	                 (by default the eventstream peer of every goal missed in
//	                 a scenario runs again under the CPU profiler, and the
//	                 report breaks its CPU time down)
//	-v               print every sample
//
// The embedded broker runs in a child process (this executable, re-run by
// bench.StartBroker), so it does not share the Go runtime of the clients.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/eventstream-go/eventstream/bench"
)

type options struct {
	out        string
	quick      bool
	reps       int
	only       *regexp.Regexp
	brokers    string
	brokerInfo string
	brokerPid  int
	realKafka  bool
	cpuprofile string
	noProfiles bool
	verbose    bool
}

func main() {
	bench.MaybeRunBroker()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	var only string
	flag.StringVar(&o.out, "out", "../docs/benchmarks.md", "markdown report to write; charts go to the \"benchmarks\" directory beside it")
	flag.BoolVar(&o.quick, "quick", false, "small event counts and one repetition")
	flag.IntVar(&o.reps, "reps", 0, "repetitions per measurement (default 3, 1 with -quick)")
	flag.StringVar(&only, "only", "", "run only measurements whose section/case/peer matches this regexp")
	flag.StringVar(&o.brokers, "brokers", "", "comma-separated Kafka brokers to use instead of the embedded one")
	flag.StringVar(&o.brokerInfo, "broker-info", "", "description of the -brokers broker for the report")
	flag.IntVar(&o.brokerPid, "broker-pid", 0, "process id of the -brokers broker, for its CPU column")
	flag.BoolVar(&o.realKafka, "real-kafka", false, "run the Kafka measurements against -brokers and write them as the real-Kafka block of the -out report")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
	flag.BoolVar(&o.noProfiles, "no-profiles", false, "do not profile the scenarios in which a goal is missed")
	flag.BoolVar(&o.verbose, "v", false, "print every sample")
	flag.Parse()
	if o.reps == 0 {
		o.reps = 3
		if o.quick {
			o.reps = 1
		}
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		o.only = re
	}
	if o.realKafka {
		if o.brokers == "" {
			return errors.New("-real-kafka needs -brokers")
		}
		if o.only == nil {
			o.only = regexp.MustCompile("^kafka")
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	r := &runner{o: o, plan: newPlan(o.quick), started: time.Now(), machine: describeMachine()}
	if o.realKafka {
		r.chartPrefix = "real-"
		r.kafkaTitle = "Real Kafka"
	}
	r.runMemory()
	if err := r.runKafka(); err != nil {
		return err
	}
	if err := r.runRabbit(); err != nil {
		return err
	}
	if err := r.runNATS(); err != nil {
		return err
	}
	if err := r.runRedis(); err != nil {
		return err
	}
	r.finished = time.Now()

	chartDir := filepath.Join(filepath.Dir(o.out), "benchmarks")
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return err
	}
	charts, err := r.writeCharts(chartDir)
	if err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(o.out), chartDir)
	if err != nil {
		rel = chartDir
	}
	old, err := os.ReadFile(o.out)
	if err != nil && (o.realKafka || !errors.Is(err, fs.ErrNotExist)) {
		return err
	}
	var md string
	if o.realKafka {
		md = replaceBlock(string(old), r.realKafkaBlock(rel, charts))
	} else {
		md = replaceBlock(r.markdown(rel, charts), block(string(old)))
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %d charts in %s (%v)\n", o.out, len(charts), chartDir, r.finished.Sub(r.started).Round(time.Second))
	return nil
}

// plan holds the event counts of a run.
type plan struct {
	memEvents       int // in-process events per measurement
	memSlowDivisor  int // Watermill GoChannel gets memEvents/memSlowDivisor
	memLatency      int // in-process latency samples
	kafkaSeq        int // sequential publishes
	kafkaPar        int // 64-way publishes
	kafkaConsume    int // backlog for single-group consumption
	kafkaFanout     int // backlog for 4-group consumption
	kafkaLatency    int // Kafka latency samples
	latencyPayload  int
	payloads        []int
	parallelEmitter int
}

func newPlan(quick bool) plan {
	if quick {
		return plan{
			memEvents: 20000, memSlowDivisor: 2, memLatency: 2000,
			kafkaSeq: 300, kafkaPar: 3000, kafkaConsume: 5000, kafkaFanout: 2000, kafkaLatency: 50,
			latencyPayload: 100, payloads: []int{100, 1024}, parallelEmitter: 64,
		}
	}
	return plan{
		memEvents: 200000, memSlowDivisor: 2, memLatency: 20000,
		kafkaSeq: 3000, kafkaPar: 30000, kafkaConsume: 100000, kafkaFanout: 30000, kafkaLatency: 300,
		latencyPayload: 100, payloads: []int{100, 1024}, parallelEmitter: 64,
	}
}

// result is one measurement (the median of its repetitions) of one peer.
type result struct {
	Section  string
	Case     string // case ID, e.g. "sub1-seq-100B"
	Peer     string
	Scenario bench.Scenario
	Samples  []bench.Sample
	Median   bench.Sample
	NA       string
	Err      string
}

type latResult struct {
	Section string
	Peer    string
	Samples []bench.Latency
	Median  bench.Latency
	Err     string
}

// testCase is one scenario of a section.
type testCase struct {
	Section string
	ID      string
	Title   string
	Sc      bench.Scenario
}

type runner struct {
	o                 options
	plan              plan
	started, finished time.Time
	cases             []testCase
	results           map[string]*result // section/case/peer
	lat               []*latResult
	machine           machine
	brokerInfo        string
	chartPrefix       string // prepended to chart file names
	kafkaTitle        string // heading prefix of the Kafka sections; "" means "Kafka"
	rabbitInfo        string
	natsInfo          string
	redisInfo         string
	recordSizes       map[string][2]int        // peer/payload size → value, headers bytes
	profiles          map[string]*cpuBreakdown // section/case/peer, where a goal is missed
}

func key(section, c, peer string) string { return section + "/" + c + "/" + peer }

func (r *runner) selected(section, c, peer string) bool {
	return r.o.only == nil || r.o.only.MatchString(key(section, c, peer))
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%7s  ", time.Since(r.started).Round(time.Second))
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func sizeLabel(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func sizeID(n int) string { return strings.ReplaceAll(sizeLabel(n), " ", "") }

// memoryCases are the in-process scenarios.
func (r *runner) memoryCases() []testCase {
	shapes := []struct {
		id, title string
		sc        bench.Scenario
	}{
		{"sub1-seq", "1 subscriber, sequential Emit", bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1}},
		{"sub1-par64", "1 subscriber, 64-way Emit", bench.Scenario{Groups: 1, Concurrency: 1, Producers: 64}},
		{"fanout4-seq", "fan-out to 4 groups, sequential Emit", bench.Scenario{Groups: 4, Concurrency: 1, Producers: 1}},
		{"fanout4-par64", "fan-out to 4 groups, 64-way Emit", bench.Scenario{Groups: 4, Concurrency: 1, Producers: 64}},
		{"conc8-seq", "handler concurrency 8, sequential Emit", bench.Scenario{Groups: 1, Concurrency: 8, Producers: 1}},
		{"conc8-par64", "handler concurrency 8, 64-way Emit", bench.Scenario{Groups: 1, Concurrency: 8, Producers: 64}},
	}
	var out []testCase
	for _, size := range r.plan.payloads {
		for _, s := range shapes {
			sc := s.sc
			sc.Payload = size
			sc.Events = r.plan.memEvents
			out = append(out, testCase{"memory", s.id + "-" + sizeID(size), s.title + ", " + sizeLabel(size), sc})
		}
	}
	return out
}

func (r *runner) kafkaProduceCases() []testCase {
	var out []testCase
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"kafka-produce", "seq-" + sizeID(size), "sequential Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: r.plan.kafkaSeq}})
	}
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"kafka-produce", "par64-" + sizeID(size), "64-way Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: r.plan.parallelEmitter, Payload: size, Events: r.plan.kafkaPar}})
	}
	return out
}

func (r *runner) kafkaConsumeCases() []testCase {
	var out []testCase
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"kafka-consume", "group1-" + sizeID(size), "group consumption, 1 group, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: r.plan.kafkaConsume}})
	}
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"kafka-consume", "fanout4-" + sizeID(size), "fan-out to 4 groups, " + sizeLabel(size),
			bench.Scenario{Groups: 4, Concurrency: 1, Producers: 1, Payload: size, Events: r.plan.kafkaFanout}})
	}
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"kafka-consume", "conc8-" + sizeID(size), "1 group, handler concurrency 8, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 8, Producers: 1, Payload: size, Events: r.plan.kafkaConsume}})
	}
	return out
}

func (r *runner) record(tc testCase, peer string, rep int, s bench.Sample, err error) {
	if r.results == nil {
		r.results = map[string]*result{}
	}
	k := key(tc.Section, tc.ID, peer)
	res := r.results[k]
	if res == nil {
		res = &result{Section: tc.Section, Case: tc.ID, Peer: peer, Scenario: tc.Sc}
		r.results[k] = res
	}
	if reason, ok := bench.IsNA(err); ok {
		res.NA = reason
		return
	}
	if err != nil {
		res.Err = err.Error()
		r.logf("%s rep %d: ERROR %v", k, rep, err)
		return
	}
	res.Samples = append(res.Samples, s)
	res.Median = bench.Median(res.Samples)
	if r.o.verbose {
		r.logf("%s rep %d: %.0f ns/event, %.0f events/s, %.2f allocs/event, startup %v", k, rep,
			s.NsPerEvent(), s.PerSec(), s.AllocsPerEvent(), s.Startup.Round(time.Millisecond))
	}
}

// skip reports whether a peer should not be measured again: it is n/a or
// failed in an earlier repetition.
func (r *runner) skip(tc testCase, peer string) bool {
	res := r.results[key(tc.Section, tc.ID, peer)]
	return res != nil && (res.NA != "" || res.Err != "")
}

func (r *runner) runMemory() {
	cases := r.memoryCases()
	r.cases = append(r.cases, cases...)
	for _, tc := range cases {
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.MemoryPeers() {
				if !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				sc := tc.Sc
				if p.Name == bench.PeerGoChannel {
					sc.Events /= r.plan.memSlowDivisor
				}
				s, err := bench.MemoryThroughput(p, sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.MemoryPeers()[0].Name, memoryPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := bench.MemoryPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := bench.MemoryThroughput(p, sc)
			return err
		})
	}
	for _, p := range bench.MemoryPeers() {
		if !r.selected("memory-latency", "latency", p.Name) {
			continue
		}
		lr := &latResult{Section: "memory", Peer: p.Name}
		for range r.o.reps {
			d, err := bench.MemoryLatency(p, r.plan.memLatency, r.plan.latencyPayload)
			if err != nil {
				lr.Err = err.Error()
				break
			}
			lr.Samples = append(lr.Samples, bench.Summarize(d))
		}
		lr.Median = bench.MedianLatency(lr.Samples)
		r.lat = append(r.lat, lr)
		r.logf("memory latency %s: p50 %v p99 %v %s", p.Name, lr.Median.P50, lr.Median.P99, lr.Err)
	}
}

func memoryPeerNames() []string {
	var out []string
	for _, p := range bench.MemoryPeers() {
		out = append(out, p.Name)
	}
	return out
}

func kafkaPeerNames() []string {
	var out []string
	for _, p := range bench.KafkaPeers() {
		out = append(out, p.Name)
	}
	return out
}

// kafkaProducerNames are the Kafka peers that publish (not the
// consume-only ones).
func kafkaProducerNames() []string {
	var out []string
	for _, p := range bench.KafkaPeers() {
		if p.Produces() {
			out = append(out, p.Name)
		}
	}
	return out
}

func (r *runner) logMedians(tc testCase, ours string, peers []string) {
	var parts []string
	for _, p := range peers {
		res := r.results[key(tc.Section, tc.ID, p)]
		switch {
		case res == nil:
		case res.NA != "":
			parts = append(parts, p+" n/a")
		case res.Err != "":
			parts = append(parts, p+" error")
		default:
			parts = append(parts, fmt.Sprintf("%s %s/s", p, si(res.Median.PerSec())))
		}
	}
	if len(parts) > 0 {
		r.logf("%s/%s: %s", tc.Section, tc.ID, strings.Join(parts, ", "))
	}
}

func (r *runner) anyKafkaSelected() bool {
	if r.o.only == nil {
		return true
	}
	for _, tc := range append(r.kafkaProduceCases(), r.kafkaConsumeCases()...) {
		for _, p := range bench.KafkaPeers() {
			if r.selected(tc.Section, tc.ID, p.Name) {
				return true
			}
		}
	}
	for _, p := range bench.KafkaPeers() {
		if r.selected("kafka-latency", "latency", p.Name) || r.selected("kafka-produce", "record-size", p.Name) {
			return true
		}
	}
	return false
}

func (r *runner) runKafka() error {
	produce := r.kafkaProduceCases()
	consume := r.kafkaConsumeCases()
	r.cases = append(r.cases, produce...)
	r.cases = append(r.cases, consume...)
	if !r.anyKafkaSelected() {
		return nil
	}
	var brokers []string
	pid := 0
	if r.o.brokers != "" {
		brokers = strings.Split(r.o.brokers, ",")
		r.brokerInfo = "external broker(s) " + r.o.brokers
		if r.o.brokerInfo != "" {
			r.brokerInfo = r.o.brokerInfo + " at " + r.o.brokers
		}
		pid = r.o.brokerPid
	} else {
		b, err := bench.StartBroker(bench.KafkaPartitions)
		if err != nil {
			return err
		}
		defer b.Close()
		brokers = b.Addrs
		pid = b.Pid()
		r.brokerInfo = fmt.Sprintf("embedded kfake (kafkatest.Start, 1 broker) in a child process (pid %d) at %s", b.Pid(), strings.Join(b.Addrs, ","))
	}
	r.logf("kafka: %s", r.brokerInfo)
	env, err := bench.NewKafkaEnv(brokers, bench.KafkaPartitions)
	if err != nil {
		return err
	}
	defer env.Close()
	env.BrokerPid = pid

	// What each peer actually stores per message.
	r.recordSizes = map[string][2]int{}
	for _, p := range bench.KafkaPeers() {
		if !p.Produces() || !r.selected("kafka-produce", "record-size", p.Name) && !r.selected("kafka-consume", "record-size", p.Name) {
			continue
		}
		for _, size := range r.plan.payloads {
			v, h, err := bench.KafkaRecordSize(env, p, size)
			if err != nil {
				r.logf("record size %s: %v", p.Name, err)
				continue
			}
			r.recordSizes[fmt.Sprintf("%s/%d", p.Name, size)] = [2]int{v, h}
		}
	}

	for _, tc := range produce {
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.KafkaPeers() {
				if !p.Produces() || !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				s, err := bench.KafkaProduce(env, p, tc.Sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.PeerBusKafka, kafkaPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := bench.KafkaPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := bench.KafkaProduce(env, p, sc)
			return err
		})
	}

	// One preloaded backlog per peer and payload size (and group count:
	// fan-out uses a smaller one), shared by the repetitions: each one
	// reads it with new consumer groups.
	type backlogKey struct {
		peer     string
		size, n  int
		joinOnly bool
	}
	backlogs := map[backlogKey]string{}
	backlog := func(p bench.KafkaPeer, size, n int, joinOnly bool) (string, error) {
		if owner, ok := bench.KafkaPeerByName(p.Drains); ok {
			p = owner // read the very records that peer reads
		}
		k := backlogKey{p.Name, size, n, joinOnly}
		if t, ok := backlogs[k]; ok {
			return t, nil
		}
		count := n
		if joinOnly {
			count = 1
		}
		t, err := bench.KafkaPreload(env, p, count, size)
		if err != nil {
			return "", err
		}
		backlogs[k] = t
		return t, nil
	}
	for _, tc := range consume {
		measure := func(p bench.KafkaPeer, sc bench.Scenario) (bench.Sample, error) {
			topic, err := backlog(p, sc.Payload, sc.Events, false)
			if err != nil {
				return bench.Sample{}, err
			}
			join, err := backlog(p, sc.Payload, 0, true)
			if err != nil {
				return bench.Sample{}, err
			}
			return bench.KafkaConsume(env, p, topic, join, sc)
		}
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.KafkaPeers() {
				if !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				s, err := measure(p, tc.Sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.PeerBusKafka, kafkaPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := bench.KafkaPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := measure(p, sc)
			return err
		})
	}

	for _, p := range bench.KafkaPeers() {
		if !p.Produces() || !r.selected("kafka-latency", "latency", p.Name) {
			continue
		}
		lr := &latResult{Section: "kafka", Peer: p.Name}
		for range r.o.reps {
			d, err := bench.KafkaLatency(env, p, r.plan.kafkaLatency, r.plan.latencyPayload)
			if err != nil {
				lr.Err = err.Error()
				break
			}
			lr.Samples = append(lr.Samples, bench.Summarize(d))
		}
		lr.Median = bench.MedianLatency(lr.Samples)
		r.lat = append(r.lat, lr)
		r.logf("kafka latency %s: p50 %v p99 %v %s", p.Name, lr.Median.P50, lr.Median.P99, lr.Err)
	}
	return nil
}

// si formats a rate with a metric suffix.
func si(v float64) string {
	switch {
	case v != v:
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
