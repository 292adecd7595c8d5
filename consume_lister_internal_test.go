package eventstream

import (
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/eventstream-go/eventstream/internal/wire"
)

// mapMsg is a message with a Headers map only.
type mapMsg struct {
	value, key []byte
	h          map[string]string
}

func (m *mapMsg) Topic() string              { return "t" }
func (m *mapMsg) Value() []byte              { return m.value }
func (m *mapMsg) Key() []byte                { return m.key }
func (m *mapMsg) Timestamp() time.Time       { return time.Unix(1, 0) }
func (m *mapMsg) Headers() map[string]string { return m.h }
func (m *mapMsg) Partition() int             { return 3 }
func (m *mapMsg) Offset() int64              { return 9 }

// listMsg is the same message listing its headers (HeaderLister); its
// Headers map must not be read on the decode path.
type listMsg struct {
	mapMsg
	list     [][2]string
	mapReads int
}

func (m *listMsg) Headers() map[string]string      { m.mapReads++; return m.h }
func (m *listMsg) NumHeaders() int                 { return len(m.list) }
func (m *listMsg) HeaderAt(i int) (string, string) { return m.list[i][0], m.list[i][1] }

func listed(m *mapMsg) *listMsg {
	l := &listMsg{mapMsg: *m}
	for k, v := range m.h {
		l.list = append(l.list, [2]string{k, v})
	}
	sort.Slice(l.list, func(i, j int) bool { return l.list[i][0] < l.list[j][0] })
	return l
}

// TestHeaderListerDecodesAsHeaderCarrier checks that the bus makes the same
// event (or error), and the same routing decisions, from a message that
// lists its headers as from one that has only the map, and that it reads
// the map of a listing message only for a bare payload.
func TestHeaderListerDecodesAsHeaderCarrier(t *testing.T) {
	we := &wire.Event{ID: "id-1", Source: "src", Type: "t", Time: time.Date(2026, 12, 3, 1, 2, 3, 4, time.UTC),
		Key: "k", Headers: map[string]string{"tenant": "a"}, ContentType: "application/octet-stream", Data: []byte("payload")}
	env := wire.AppendStructured(nil, we, false)
	tr := &mqTransport{ser: RawSerializer{}}
	for i, tc := range []struct {
		m       *mapMsg
		bareMap bool
	}{
		{m: &mapMsg{value: env}},
		{m: &mapMsg{value: env, key: []byte("k"), h: map[string]string{"content-type": CloudEventsContentType}}},
		{m: &mapMsg{value: env, h: map[string]string{"content-type": CloudEventsContentType,
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "eventstream-error": "boom"}}},
		{m: &mapMsg{value: we.Data, key: []byte("k"), h: wire.BinaryHeaders(we)}},
		{m: &mapMsg{value: we.Data, h: map[string]string{"ce_specversion": "2.0", "ce_id": "x"}}},
		{m: &mapMsg{value: []byte("bare"), key: []byte("bk"), h: map[string]string{"x": "y", "traceparent": "00-1-2-01"}}, bareMap: true},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			l := listed(tc.m)
			want, got := tr.decode(tc.m), tr.decode(l)
			if (want.ev == nil) != (got.ev == nil) || !reflect.DeepEqual(want.ev, got.ev) {
				t.Fatalf("listed: %+v\nmap: %+v", got.ev, want.ev)
			}
			if want.ev == nil && fmt.Sprint(want.msg.(*undecodable).err) != fmt.Sprint(got.msg.(*undecodable).err) {
				t.Fatalf("errors differ: %v / %v", got.msg.(*undecodable).err, want.msg.(*undecodable).err)
			}
			if (l.mapReads > 0) != tc.bareMap {
				t.Fatalf("Headers called %d times", l.mapReads)
			}
			if keyless(tc.m) != keyless(l) || brokerKeyIsEventKey(tc.m) != brokerKeyIsEventKey(l) {
				t.Fatalf("routing differs: keyless %v/%v brokerKey %v/%v", keyless(l), keyless(tc.m),
					brokerKeyIsEventKey(l), brokerKeyIsEventKey(tc.m))
			}
		})
	}
}
