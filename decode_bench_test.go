package eventstream

import (
	"testing"
	"time"
)

type fakeMsg struct{ v []byte }

func (m fakeMsg) Topic() string        { return "t" }
func (m fakeMsg) Value() []byte        { return m.v }
func (m fakeMsg) Timestamp() time.Time { return time.Time{} }
func (m fakeMsg) Key() []byte          { return nil }

func BenchmarkDecodeEnvelope(b *testing.B) {
	for _, ser := range []Serializer{JSONSerializer{}, RawSerializer{}} {
		b.Run(ser.ContentType(), func(b *testing.B) {
			c := &core{cfg: DefaultDistributedConfig(), ids: newIDGen(), ser: ser}
			bus := &distributedBus{core: c}
			var payload any = make([]byte, 100)
			if _, ok := ser.(JSONSerializer); ok {
				payload = map[string]string{"a": "0123456789012345678901234567890123456789", "b": "01234567890123456789012345678901234567890123456789"}
			}
			e, _ := c.buildEvent("t", payload, nil, ser)
			data, _ := ser.Marshal(payload)
			env, _ := appendEnvelope(nil, e, ser.ContentType(), data, false)
			m := fakeMsg{env}
			b.ReportAllocs()
			for range b.N {
				if _, err := bus.decode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type fakeHeaderMsg struct {
	fakeMsg
	h map[string]string
}

func (m fakeHeaderMsg) Headers() map[string]string { return m.h }

func BenchmarkDecodeBinary(b *testing.B) {
	ser := RawSerializer{}
	c := &core{cfg: DefaultDistributedConfig(), ids: newIDGen(), ser: ser}
	bus := &distributedBus{core: c}
	e, _ := c.buildEvent("t", make([]byte, 100), nil, ser)
	r, _ := binaryRecord(e, ser.ContentType(), make([]byte, 100))
	m := fakeHeaderMsg{fakeMsg{r.Value}, r.Headers}
	b.ReportAllocs()
	for range b.N {
		if _, err := bus.decode(m); err != nil {
			b.Fatal(err)
		}
	}
}
