package bench

import (
	"testing"

	"github.com/eventstream-go/eventstream/internal/brokertest"
)

var redisScenarios = []struct {
	name    string
	produce bool
	sc      Scenario
}{
	{"Produce/Seq", true, Scenario{Groups: 1, Concurrency: 1, Producers: 1}},
	{"Produce/Par64", true, Scenario{Groups: 1, Concurrency: 1, Producers: 64}},
	{"Consume/Group1", false, Scenario{Groups: 1, Concurrency: 1, Producers: 1}},
	{"Consume/Conc8", false, Scenario{Groups: 1, Concurrency: 8, Producers: 1}},
}

// BenchmarkRedis: events/s of publishing (each XADD answered) and of
// draining a preloaded stream, per peer, 100-byte payload, on a private
// redis-server (brokertest.Redis) for the whole benchmark.
func BenchmarkRedis(b *testing.B) {
	br := brokertest.Redis(b)
	env, err := NewRedisEnv(br.Addr())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Close() })
	for _, s := range redisScenarios {
		for _, p := range RedisPeers() {
			b.Run(s.name+"/"+peerName(p.Name), func(b *testing.B) {
				sc := s.sc
				sc.Payload = 100
				sc.Events = max(b.N, 100)
				var res Sample
				var err error
				if s.produce {
					res, err = RedisProduce(env, p, sc)
				} else {
					res, err = RedisConsume(env, p, sc)
				}
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
