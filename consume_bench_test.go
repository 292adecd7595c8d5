package eventstream_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream"
)

// The consume benchmarks measure what the distributed bus adds per message
// on top of an adapter: a replaying adapter hands the bus the records a bus
// wrote (captured through PublishRecord, headers included, like a Kafka
// adapter delivers them) as fast as the bus takes them, and Ack only counts.
// Run with -benchmem: allocs/op is the bus's own allocations per message.

// replayMsg is a record as an adapter delivers it.
type replayMsg struct {
	topic   string
	value   []byte
	key     []byte
	headers map[string]string
	ts      time.Time
	off     int64
}

func (m *replayMsg) Topic() string                 { return m.topic }
func (m *replayMsg) Value() []byte                 { return m.value }
func (m *replayMsg) Key() []byte                   { return m.key }
func (m *replayMsg) Timestamp() time.Time          { return m.ts }
func (m *replayMsg) Headers() map[string]string    { return m.headers }
func (m *replayMsg) Partition() int                { return 0 }
func (m *replayMsg) Offset() int64                 { return m.off }
func (m *replayMsg) clone() *replayMsg             { c := *m; return &c }
func (m *replayMsg) withOffset(o int64) *replayMsg { c := m.clone(); c.off = o; return c }

// replayAdapter captures what the bus publishes and replays it n times to
// the one subscription.
type replayAdapter struct {
	mu       sync.Mutex
	recs     []*replayMsg
	msgs     []eventstream.Message
	acked    atomic.Int64
	stop     chan struct{}
	feedDone chan struct{}
}

func (a *replayAdapter) Publish(_ context.Context, topic string, v []byte) error {
	return a.PublishRecord(context.Background(), topic, eventstream.Record{Value: v})
}

func (a *replayAdapter) PublishRecord(_ context.Context, topic string, r eventstream.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, &replayMsg{topic: topic, value: append([]byte(nil), r.Value...),
		key: r.Key, headers: r.Headers, ts: r.Time})
	return nil
}

func (a *replayAdapter) Subscribe(_ context.Context, _, _ string) (<-chan eventstream.Message, func(), error) {
	ch := make(chan eventstream.Message, 128)
	a.stop, a.feedDone = make(chan struct{}), make(chan struct{})
	msgs := a.msgs
	go func() {
		defer close(a.feedDone)
		defer close(ch)
		for _, m := range msgs {
			select {
			case ch <- m:
			case <-a.stop:
				return
			}
		}
		<-a.stop
	}()
	var once sync.Once
	return ch, func() { once.Do(func() { close(a.stop) }); <-a.feedDone }, nil
}

func (a *replayAdapter) Ack(context.Context, string, eventstream.Message) error {
	a.acked.Add(1)
	return nil
}

func (a *replayAdapter) Close() error { return nil }

type consumePayload struct {
	Seq  int64  `json:"seq"`
	Name string `json:"name"`
	Data string `json:"data"`
}

// benchConsume publishes 64 events with keys through a capturing bus, then
// times a second bus draining b.N of them.
func benchConsume(b *testing.B, ser eventstream.Serializer, binary bool, size, concurrency int) {
	ad := &replayAdapter{}
	mk := func() eventstream.Bus {
		cfg := eventstream.DefaultDistributedConfig()
		cfg.Distributed.MQAdapter = ad
		cfg.Distributed.Serializer = ser
		cfg.Distributed.BinaryMode = binary
		cfg.Logger = quiet
		bus, err := eventstream.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return bus
	}
	pub := mk()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	for i := range 64 {
		var p any = data
		if _, raw := ser.(eventstream.RawSerializer); !raw {
			p = consumePayload{Seq: int64(i), Name: "customer", Data: string(data)}
		}
		if err := pub.Emit(context.Background(), "t", p, eventstream.WithKey("k"+string(rune('a'+i%26)))); err != nil {
			b.Fatal(err)
		}
	}
	_ = pub.Close()
	// The messages are made before the timer starts; the feeder only
	// sends them.
	ad.msgs = make([]eventstream.Message, b.N)
	for i := range ad.msgs {
		ad.msgs[i] = ad.recs[i%len(ad.recs)].withOffset(int64(i))
	}
	bus := mk()
	defer bus.Close()
	var handled atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	h := func(_ context.Context, e *eventstream.Event) error {
		if _, raw := ser.(eventstream.RawSerializer); raw {
			_ = e.Data.([]byte)
		} else {
			var p consumePayload
			if err := e.Unmarshal(&p); err != nil {
				return err
			}
		}
		if handled.Add(1) == want {
			close(done)
		}
		return nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := bus.On("t", h, eventstream.WithConsumerGroup("g"), eventstream.WithConcurrency(concurrency)); err != nil {
		b.Fatal(err)
	}
	<-done
	b.StopTimer()
}

func BenchmarkConsumeRaw100B(b *testing.B) {
	benchConsume(b, eventstream.RawSerializer{}, false, 100, 1)
}
func BenchmarkConsumeRaw100BConc8(b *testing.B) {
	benchConsume(b, eventstream.RawSerializer{}, false, 100, 8)
}
func BenchmarkConsumeRaw1KiB(b *testing.B) {
	benchConsume(b, eventstream.RawSerializer{}, false, 1024, 1)
}
func BenchmarkConsumeBinary100B(b *testing.B) {
	benchConsume(b, eventstream.RawSerializer{}, true, 100, 1)
}
func BenchmarkConsumeBinary100BConc8(b *testing.B) {
	benchConsume(b, eventstream.RawSerializer{}, true, 100, 8)
}
func BenchmarkConsumeJSON100B(b *testing.B) {
	benchConsume(b, eventstream.JSONSerializer{}, false, 100, 1)
}
