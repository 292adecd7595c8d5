package eventstream_test

import (
	"context"
	"strings"
	"testing"

	"github.com/eventstream-go/eventstream"
)

// discardAdapter is an MQAdapter whose publishes return at once: it measures
// what the distributed bus itself costs per Emit. It keeps nothing.
type discardAdapter struct{}

func (discardAdapter) Publish(context.Context, string, []byte) error { return nil }
func (discardAdapter) Subscribe(context.Context, string, string) (<-chan eventstream.Message, func(), error) {
	return nil, nil, eventstream.ErrAdapterClosed
}
func (discardAdapter) Ack(context.Context, string, eventstream.Message) error { return nil }
func (discardAdapter) Close() error                                           { return nil }

// recordAdapter adds RecordPublisher to discardAdapter.
type recordAdapter struct{ discardAdapter }

func (recordAdapter) PublishRecord(context.Context, string, eventstream.Record) error { return nil }

type emitPayload struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

// BenchmarkDistributedEmit is the distributed bus's per-Emit cost over an
// adapter that returns at once (allocs/op is the figure to watch): a ~100 B
// JSON payload, structured and binary mode, with and without a key.
func BenchmarkDistributedEmit(b *testing.B) {
	p := emitPayload{Name: strings.Repeat("x", 80), N: 7}
	cases := []struct {
		name   string
		ad     eventstream.MQAdapter
		binary bool
		opts   []eventstream.EmitOption
	}{
		{"structured/record", recordAdapter{}, false, nil},
		{"structured/record/key", recordAdapter{}, false, []eventstream.EmitOption{eventstream.WithKey("order-7")}},
		{"structured/publish", discardAdapter{}, false, nil},
		{"binary/record", recordAdapter{}, true, nil},
		{"binary/record/key", recordAdapter{}, true, []eventstream.EmitOption{eventstream.WithKey("order-7")}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			cfg := eventstream.DefaultDistributedConfig()
			cfg.Distributed.MQAdapter = c.ad
			cfg.Distributed.BinaryMode = c.binary
			bus, err := eventstream.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer bus.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := bus.Emit(ctx, "orders", p, c.opts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
