package bench

import (
	"sync"
	"testing"

	"github.com/eventstream-go/eventstream/internal/brokertest"
)

var (
	rabbitOnce   sync.Once
	rabbitEnvV   *RabbitEnv
	rabbitErr    error
	rabbitShared brokertest.Shared
)

// rabbitEnv returns the RabbitMQ broker of the benchmarks: $RABBITMQ_URL
// when set, otherwise a private node (brokertest.RabbitMQ) for the whole
// test binary.
func rabbitEnv(b *testing.B) *RabbitEnv {
	b.Helper()
	br := rabbitShared.Get(b, "rabbitmq", brokertest.RabbitMQ)
	rabbitOnce.Do(func() {
		rabbitEnvV, rabbitErr = NewRabbitEnv(br.URL())
	})
	if rabbitErr != nil {
		b.Fatal(rabbitErr)
	}
	return rabbitEnvV
}

var rabbitScenarios = []struct {
	name string
	sc   Scenario
}{
	{"Produce/Seq", Scenario{Groups: 1, Concurrency: 1, Producers: 1}},
	{"Produce/Par64", Scenario{Groups: 1, Concurrency: 1, Producers: 64}},
	{"Consume/Group1", Scenario{Groups: 1, Concurrency: 1, Producers: 1}},
	{"Consume/Conc8", Scenario{Groups: 1, Concurrency: 8, Producers: 1}},
}

// BenchmarkRabbitMQ: events/s of publishing (each publish confirmed) and of
// draining a preloaded queue, per peer, 100-byte payload.
func BenchmarkRabbitMQ(b *testing.B) {
	for _, s := range rabbitScenarios {
		for _, p := range RabbitPeers() {
			b.Run(s.name+"/"+peerName(p.Name), func(b *testing.B) {
				env := rabbitEnv(b)
				sc := s.sc
				sc.Payload = 100
				sc.Events = max(b.N, 100)
				var res Sample
				var err error
				if s.sc.Producers > 1 || s.name[:7] == "Produce" {
					res, err = RabbitProduce(env, p, sc)
				} else {
					res, err = RabbitConsume(env, p, sc)
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
