package main

import (
	"fmt"
	"strings"

	"github.com/eventstream-go/eventstream/bench"
)

// The RabbitMQ sections run against a private rabbitmq-server node started
// for the run (bench.StartRabbitMQ: the node the adapter tests use), or the
// broker named by $RABBITMQ_URL; without rabbitmq-server they are left out
// of the report with the install command.

func (r *runner) rabbitCounts() (seq, par, consume int) {
	if r.o.quick {
		return 300, 3000, 5000
	}
	return 3000, 30000, 50000
}

func rabbitPeerNames() []string {
	var out []string
	for _, p := range bench.RabbitPeers() {
		out = append(out, p.Name)
	}
	return out
}

func (r *runner) rabbitCases() (produce, consume []testCase) {
	seq, par, n := r.rabbitCounts()
	for _, size := range r.plan.payloads {
		produce = append(produce, testCase{"rabbit-produce", "seq-" + sizeID(size), "RabbitMQ sequential Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: seq}})
		produce = append(produce, testCase{"rabbit-produce", "par64-" + sizeID(size), "RabbitMQ 64-way Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: r.plan.parallelEmitter, Payload: size, Events: par}})
		consume = append(consume, testCase{"rabbit-consume", "group1-" + sizeID(size), "RabbitMQ consumption, 1 group, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: n}})
		consume = append(consume, testCase{"rabbit-consume", "conc8-" + sizeID(size), "RabbitMQ consumption, handler concurrency 8, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 8, Producers: 1, Payload: size, Events: n}})
	}
	return produce, consume
}

func (r *runner) runRabbit() error {
	produce, consume := r.rabbitCases()
	any := false
	for _, tc := range append(produce, consume...) {
		for _, p := range bench.RabbitPeers() {
			any = any || r.selected(tc.Section, tc.ID, p.Name)
		}
	}
	if !any {
		return nil
	}
	srv, err := bench.StartRabbitMQ()
	if err != nil {
		r.rabbitInfo = "not run: " + err.Error()
		r.logf("%v", err)
		return nil
	}
	defer srv.Close()
	env, err := bench.NewRabbitEnv(srv.URL)
	if err != nil {
		return err
	}
	defer env.Close()
	env.BrokerPid = srv.Pid
	if srv.External {
		r.rabbitInfo = "RabbitMQ at $RABBITMQ_URL (" + srv.URL + ")"
	} else {
		r.rabbitInfo = fmt.Sprintf("a private RabbitMQ node (rabbitmq-server, Erlang VM pid %d) at %s", srv.Pid, srv.URL)
	}
	r.logf("rabbitmq: %s", r.rabbitInfo)
	r.cases = append(r.cases, produce...)
	r.cases = append(r.cases, consume...)
	for _, tc := range append(produce, consume...) {
		measure := func(p bench.RabbitPeer, sc bench.Scenario) (bench.Sample, error) {
			if tc.Section == "rabbit-produce" {
				return bench.RabbitProduce(env, p, sc)
			}
			return bench.RabbitConsume(env, p, sc)
		}
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.RabbitPeers() {
				if !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				s, err := measure(p, tc.Sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.PeerBusRabbit, rabbitPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := bench.RabbitPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := measure(p, sc)
			return err
		})
	}
	return nil
}

func rabbitGoals() []goal {
	prefix := func(section, p string) func(tc testCase) bool {
		return func(tc testCase) bool { return tc.Section == section && strings.HasPrefix(tc.ID, p) }
	}
	return []goal{
		{
			ID: "R1", Section: "rabbit-produce", Text: "RabbitMQ 64-way Emit ≥ 10× Watermill-amqp", Cases: prefix("rabbit-produce", "par64-"),
			Ours: bench.PeerBusRabbit, Theirs: bench.PeerWatermillRabbit, Cmp: ">=", Limit: 10, Unit: "×",
		},
		{
			ID: "R2", Section: "rabbit-produce", Text: "RabbitMQ 64-way Emit ≥ 0.8× amqp091-go with pipelined confirms", Cases: prefix("rabbit-produce", "par64-"),
			Ours: bench.PeerBusRabbit, Theirs: bench.PeerAmqp091, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
		{
			ID: "R3", Section: "rabbit-consume", Text: "RabbitMQ consumption through the bus ≥ 0.8× amqp091-go (same prefetch)", Cases: prefix("rabbit-consume", "group1-"),
			Ours: bench.PeerBusRabbit, Theirs: bench.PeerAmqp091, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
	}
}

// rabbitSection writes the RabbitMQ tables.
func (r *runner) rabbitSection(b *strings.Builder) {
	if r.rabbitInfo == "" {
		return
	}
	fmt.Fprintf(b, "## RabbitMQ\n\n%s, the same broker for every peer; persistent messages, publisher confirms. Peers:\n\n", r.rabbitInfo)
	for _, p := range bench.RabbitPeers() {
		fmt.Fprintf(b, "- **%s**: %s\n", p.Name, p.Config)
	}
	b.WriteString("\n### Produce\n\n")
	r.caseTables(b, "rabbit-produce", rabbitPeerNames(), bench.PeerBusRabbit, false)
	b.WriteString("### Consumption\n\n")
	r.caseTables(b, "rabbit-consume", rabbitPeerNames(), bench.PeerBusRabbit, true)
}
