package main

import (
	"fmt"
	"strings"

	"github.com/eventstream-go/eventstream/bench"
)

// The Redis Streams part of the report: produce and consume scenarios
// against one redis-server process (the Debian package) started for the
// run, without persistence.

func (r *runner) redisCounts() (seq, par, consume int) {
	if r.o.quick {
		return 300, 3000, 5000
	}
	return 3000, 30000, 50000
}

func redisPeerNames() []string {
	var out []string
	for _, p := range bench.RedisPeers() {
		out = append(out, p.Name)
	}
	return out
}

func (r *runner) redisCases() (produce, consume []testCase) {
	seq, par, n := r.redisCounts()
	for _, size := range r.plan.payloads {
		produce = append(produce, testCase{"redis-produce", "seq-" + sizeID(size), "Redis sequential Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: seq}})
		produce = append(produce, testCase{"redis-produce", "par64-" + sizeID(size), "Redis 64-way Emit/publish, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: r.plan.parallelEmitter, Payload: size, Events: par}})
		consume = append(consume, testCase{"redis-consume", "group1-" + sizeID(size), "Redis consumption, 1 group, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 1, Producers: 1, Payload: size, Events: n}})
		consume = append(consume, testCase{"redis-consume", "conc8-" + sizeID(size), "Redis consumption, handler concurrency 8, " + sizeLabel(size),
			bench.Scenario{Groups: 1, Concurrency: 8, Producers: 1, Payload: size, Events: n}})
	}
	return produce, consume
}

// runRedis measures the Redis peers. Without the redis-server binary it
// logs why and measures nothing.
func (r *runner) runRedis() error {
	produce, consume := r.redisCases()
	any := false
	for _, tc := range append(append([]testCase(nil), produce...), consume...) {
		for _, p := range bench.RedisPeers() {
			any = any || r.selected(tc.Section, tc.ID, p.Name)
		}
	}
	if !any {
		return nil
	}
	srv, err := bench.StartRedisServer()
	if err != nil {
		r.redisInfo = "not run: " + err.Error()
		r.logf("redis: %v", err)
		return nil
	}
	defer srv.Close()
	r.redisInfo = fmt.Sprintf("%s, `--save \"\" --appendonly no`, pid %d at %s", srv.Version, srv.Pid(), srv.Addr)
	r.logf("redis: %s", r.redisInfo)
	env, err := bench.NewRedisEnv(srv.Addr)
	if err != nil {
		return err
	}
	defer env.Close()
	env.ServerPid = srv.Pid()
	r.cases = append(r.cases, produce...)
	r.cases = append(r.cases, consume...)
	for _, tc := range append(produce, consume...) {
		measure := func(p bench.RedisPeer, sc bench.Scenario) (bench.Sample, error) {
			if tc.Section == "redis-produce" {
				return bench.RedisProduce(env, p, sc)
			}
			return bench.RedisConsume(env, p, sc)
		}
		for rep := 1; rep <= r.o.reps; rep++ {
			for _, p := range bench.RedisPeers() {
				if !r.selected(tc.Section, tc.ID, p.Name) || r.skip(tc, p.Name) {
					continue
				}
				s, err := measure(p, tc.Sc)
				r.record(tc, p.Name, rep, s, err)
			}
		}
		r.logMedians(tc, bench.PeerBusRedis, redisPeerNames())
		r.profileMisses(tc, func(name string, sc bench.Scenario) error {
			p, ok := bench.RedisPeerByName(name)
			if !ok {
				return fmt.Errorf("no peer %q", name)
			}
			_, err := measure(p, sc)
			return err
		})
	}
	return nil
}

func redisGoals() []goal {
	prefix := func(section, p string) func(tc testCase) bool {
		return func(tc testCase) bool { return tc.Section == section && strings.HasPrefix(tc.ID, p) }
	}
	return []goal{
		{
			ID: "D1", Section: "redis-produce", Text: "Redis 64-way Emit ≥ 0.8× go-redis pipelined XADD", Cases: prefix("redis-produce", "par64-"),
			Ours: bench.PeerBusRedis, Theirs: bench.PeerGoRedis, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
		{
			ID: "D2", Section: "redis-produce", Text: "Redis 64-way Emit ≥ 5× Watermill-redisstream", Cases: prefix("redis-produce", "par64-"),
			Ours: bench.PeerBusRedis, Theirs: bench.PeerWatermillRedis, Cmp: ">=", Limit: 5, Unit: "×",
		},
		{
			ID: "D3", Section: "redis-consume", Text: "Redis consumption through the bus ≥ 0.8× go-redis XREADGROUP + batched XACK", Cases: prefix("redis-consume", "group1-"),
			Ours: bench.PeerBusRedis, Theirs: bench.PeerGoRedis, Cmp: ">=", Limit: 0.8, Unit: "×",
		},
	}
}

// redisSection writes the Redis tables.
func (r *runner) redisSection(b *strings.Builder) {
	if r.redisInfo == "" {
		return
	}
	fmt.Fprintf(b, "## Redis Streams\n\nServer: %s, the same server for every peer; each measurement uses a new stream. Peers:\n\n", r.redisInfo)
	for _, p := range bench.RedisPeers() {
		fmt.Fprintf(b, "- **%s**: %s\n", p.Name, p.Config)
	}
	b.WriteString("\n### Produce\n\n")
	r.caseTables(b, "redis-produce", redisPeerNames(), bench.PeerBusRedis, false)
	b.WriteString("### Consumption\n\n")
	r.caseTables(b, "redis-consume", redisPeerNames(), bench.PeerBusRedis, true)
}
