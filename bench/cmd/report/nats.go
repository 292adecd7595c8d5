package main

import (
	"fmt"
	"strings"

	"github.com/eventstream-go/eventstream/bench"
)

// The NATS JetStream part of the report: the same produce and consume
// scenarios as for Kafka, against one nats-server process (the Debian
// package) with file storage.

func natsPeerByName(name string) (bench.NATSPeer, bool) {
	for _, p := range bench.NATSPeers() {
		if p.Name == name {
			return p, true
		}
	}
	return bench.NATSPeer{}, false
}

func natsPeerNames() []string {
	var out []string
	for _, p := range bench.NATSPeers() {
		out = append(out, p.Name)
	}
	return out
}

func (r *runner) natsProduceCases() []testCase {
	var out []testCase
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"nats-produce", "seq-" + sizeID(size), "sequential Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: r.plan.kafkaSeq}})
	}
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"nats-produce", "par64-" + sizeID(size), "64-way Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: r.plan.parallelEmitter, Payload: size, Events: r.plan.kafkaPar}})
	}
	return out
}

func (r *runner) natsConsumeCases() []testCase {
	var out []testCase
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"nats-consume", "group1-" + sizeID(size), "group consumption, 1 group, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: r.plan.kafkaConsume}})
	}
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"nats-consume", "fanout4-" + sizeID(size), "fan-out to 4 groups, " + sizeLabel(size),
			bench.Scenario{Groups: 4, Concurrency: 1, Producers: 1, Payload: size, Events: r.plan.kafkaFanout}})
	}
	for _, size := range r.plan.payloads {
		out = append(out, testCase{"nats-consume", "conc8-" + sizeID(size), "1 group, handler concurrency 8, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 8, Producers: 1, Payload: size, Events: r.plan.kafkaConsume}})
	}
	return out
}

// runNATS measures the NATS peers. Without the nats-server binary it logs
// why and measures nothing (the report then says "not measured").
func (r *runner) runNATS() error {
	produce := r.natsProduceCases()
	consume := r.natsConsumeCases()
	r.cases = append(r.cases, produce...)
	r.cases = append(r.cases, consume...)
	any := false
	for _, tc := range append(append([]testCase(nil), produce...), consume...) {
		for _, p := range bench.NATSPeers() {
			any = any || r.selected(tc.Section, tc.ID, p.Name)
		}
	}
	if !any {
		return nil
	}
	srv, err := bench.StartNATSServer()
	if err != nil {
		r.natsInfo = "not run: " + err.Error()
		r.logf("nats: %v", err)
		return nil
	}
	defer srv.Close()
	r.natsInfo = fmt.Sprintf("%s, `-js` with file storage, pid %d at %s", srv.Version, srv.Pid(), srv.URL)
	r.logf("nats: %s", r.natsInfo)
	env, err := bench.NewNATSEnv(srv.URL)
	if err != nil {
		return err
	}
	defer env.Close()
	env.ServerPid = srv.Pid()

	for _, tc := range produce {
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.NATSPeers() {
				if !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				s, err := bench.NATSProduce(env, p, tc.Sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.PeerBusNATS, natsPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := natsPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := bench.NATSProduce(env, p, sc)
			return err
		})
	}

	type backlogKey struct {
		peer    string
		size, n int
	}
	backlogs := map[backlogKey]string{}
	backlog := func(p bench.NATSPeer, size, n int) (string, error) {
		if owner, ok := natsPeerByName(p.Drains); ok {
			p = owner // read the very messages that peer reads
		}
		k := backlogKey{p.Name, size, n}
		if t, ok := backlogs[k]; ok {
			return t, nil
		}
		t, err := bench.NATSPreload(env, p, n, size)
		if err != nil {
			return "", err
		}
		backlogs[k] = t
		return t, nil
	}
	for _, tc := range consume {
		measure := func(p bench.NATSPeer, sc bench.Scenario) (bench.Sample, error) {
			topic, err := backlog(p, sc.Payload, sc.Events)
			if err != nil {
				return bench.Sample{}, err
			}
			join, err := backlog(p, sc.Payload, 1)
			if err != nil {
				return bench.Sample{}, err
			}
			return bench.NATSConsume(env, p, topic, join, sc)
		}
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.NATSPeers() {
				if !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				s, err := measure(p, tc.Sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.PeerBusNATS, natsPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := natsPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := measure(p, sc)
			return err
		})
	}
	return nil
}

func natsGoals() []goal {
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
	return []goal{
		{
			ID: "N1", Section: "nats-produce", Text: "NATS 64-way Emit ≥ 0.8× raw nats.go async publish", Cases: prefix("nats-produce", "par64-"),
			Ours: bench.PeerBusNATS, Theirs: bench.PeerNATSGo, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
		{
			ID: "N2", Section: "nats-produce", Text: "NATS 64-way Emit ≥ 5× Watermill-nats JetStream", Cases: prefix("nats-produce", "par64-"),
			Ours: bench.PeerBusNATS, Theirs: bench.PeerWatermillNATS, Cmp: ">=", Limit: 5, Unit: "×",
		},
		{
			ID: "N3", Section: "nats-consume", Text: "NATS group consumption through the bus ≥ 0.8× raw nats.go Consume + Ack",
			Cases: prefix("nats-consume", "group1-", "fanout4-"),
			Ours:  bench.PeerBusNATS, Theirs: bench.PeerNATSGo, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
	}
}

// natsMarkdown writes the NATS sections.
func (r *runner) natsMarkdown(b *strings.Builder) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## NATS JetStream: produce\n\n")
	if r.natsInfo != "" {
		w("Server: %s. Every peer talks to the same server; each measurement uses a new stream (limits retention, one subject). ", r.natsInfo)
	}
	w("Peers:\n\n")
	for _, p := range bench.NATSPeers() {
		w("- **%s**: %s\n", p.Name, p.Config)
	}
	w("\n")
	r.caseTables(b, "nats-produce", natsPeerNames(), bench.PeerBusNATS, false)
	w("## NATS JetStream: group consumption\n\n")
	w("A backlog preloaded in the peer's own format is drained by new durable consumers (one per group) starting at the first message.\n\n")
	r.caseTables(b, "nats-consume", natsPeerNames(), bench.PeerBusNATS, true)
}
