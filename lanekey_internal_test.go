package eventstream

import (
	"context"
	"testing"
	"time"
)

type keyedMsg struct {
	key, value []byte
	headers    map[string]string
}

func (m *keyedMsg) Topic() string              { return "t" }
func (m *keyedMsg) Value() []byte              { return m.value }
func (m *keyedMsg) Key() []byte                { return m.key }
func (m *keyedMsg) Timestamp() time.Time       { return time.Time{} }
func (m *keyedMsg) Headers() map[string]string { return m.headers }

// TestBrokerKeyIsEventKey: when the reader takes a message's broker key as
// its lane key without decoding it, that is the key its event decodes to
// (else the per-key order would follow the wrong key), and the messages the
// bus itself writes with a key are recognised.
func TestBrokerKeyIsEventKey(t *testing.T) {
	var pub []Record
	rec := recordFunc(func(r Record) { pub = append(pub, r) })
	for _, binary := range []bool{false, true} {
		tr := &mqTransport{ser: JSONSerializer{}, binary: binary, rp: rec}
		e := &Event{Topic: "t", ID: "1", Source: "s", Type: "t", Time: time.Unix(1, 0), Key: "k-1", Data: map[string]any{"n": 1}}
		if err := tr.publish(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range pub {
		m := &keyedMsg{key: r.Key, value: r.Value, headers: r.Headers}
		if !brokerKeyIsEventKey(m) {
			t.Errorf("the bus's own record %q (headers %v) is not recognised", r.Value, r.Headers)
		}
	}
	env := func(ext string) []byte {
		return []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t"` + ext + `,"datacontenttype":"application/json","data":{"n":1}}`)
	}
	cases := []*keyedMsg{
		{key: []byte("a"), value: env(`,"partitionkey":"a"`)},
		{key: []byte("a"), value: env(`,"partitionkey":"ab"`)},
		{key: []byte("a"), value: env(`,"partitionkey":"b"`)},
		{key: []byte("a"), value: env(`,"partitionkey":"\u0062"`)},
		{key: []byte("a"), value: env(``)},
		{key: []byte("a"), value: env(`,"x":"partitionkey","partitionkey":"a"`)},
		{key: []byte("a"), value: []byte(`{"n":1}`)},
		{key: []byte("a"), value: []byte(`garbage`)},
		{key: []byte("a"), value: []byte(`{"n":1}`), headers: map[string]string{"ce_specversion": "1.0", "ce_id": "1", "ce_source": "s", "ce_type": "t", "ce_partitionkey": "a"}},
		{key: []byte("a"), value: []byte(`{"n":1}`), headers: map[string]string{"ce_specversion": "1.0", "ce_id": "1", "ce_source": "s", "ce_type": "t", "ce_partitionkey": "b"}},
		{key: nil, value: env(`,"partitionkey":"a"`)},
		{key: []byte(`a","x`), value: env(`,"partitionkey":"a","x":"y"`)}, // a broker key that is not JSON-escaped
		{key: []byte(`a\`), value: env(`,"partitionkey":"a\"b"`)},
	}
	tr := &mqTransport{ser: JSONSerializer{}}
	for i, m := range cases {
		if !brokerKeyIsEventKey(m) {
			continue
		}
		d := tr.decode(m)
		if d.ev != nil && d.ev.Key != string(m.key) {
			t.Errorf("case %d: lane key %q, but the event decodes with key %q", i, m.key, d.ev.Key)
		}
	}
	if brokerKeyIsEventKey(cases[2]) || brokerKeyIsEventKey(cases[9]) || !brokerKeyIsEventKey(cases[0]) || !brokerKeyIsEventKey(cases[4]) {
		t.Error("a plain case is judged wrongly")
	}
}

type recordFunc func(Record)

func (f recordFunc) Publish(context.Context, string, []byte) error { return nil }
func (f recordFunc) PublishRecord(_ context.Context, _ string, r Record) error {
	f(r)
	return nil
}

// TestQueueByBrokerKey: a delivery routed by its broker key (undecoded)
// goes to the same lane as one routed by the decoded key, so events of one
// key stay in one worker's order whichever way the reader routed them.
func TestQueueByBrokerKey(t *testing.T) {
	p := newPool(nil, 8, 256)
	for i := range 200 {
		k := "key-" + string(rune('a'+i%26)) + string(rune('0'+i%10))
		if got, want := p.queue("", []byte(k)), p.queue(k, nil); got != want || got == p.shared {
			t.Fatalf("key %q: lane by bytes differs from lane by string (or is the shared queue)", k)
		}
	}
	if p.queue("", nil) != p.shared {
		t.Error("a keyless delivery is not on the shared queue")
	}
}

// TestKeyless: a message judged keyless (routed to the shared queue
// without decoding) decodes to an event with no key.
func TestKeyless(t *testing.T) {
	env := func(ext string) []byte {
		return []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t"` + ext + `,"datacontenttype":"application/json","data":{"n":1}}`)
	}
	cases := []struct {
		m       *keyedMsg
		keyless bool
	}{
		{&keyedMsg{value: env(``)}, true},
		{&keyedMsg{value: env(`,"x":"a partitionkey b"`)}, true}, // the text, not a member name
		{&keyedMsg{value: env(`,"partitionkey":"a"`)}, false},
		{&keyedMsg{value: env(`,"partitionkey" : "a"`)}, false},
		{&keyedMsg{value: env(`,"partition\u006bey":"a"`)}, false},
		{&keyedMsg{value: env(`,"\u0070artitionkey":"a"`)}, false},
		{&keyedMsg{value: env(`,"x":"partitionkey"`)}, false}, // conservative: decoded to find out
		{&keyedMsg{value: []byte(`{"n":1}`)}, true},
		{&keyedMsg{value: []byte(`garbage`)}, true},
		{&keyedMsg{key: []byte("a"), value: env(``)}, false},
		{&keyedMsg{value: []byte(`{"n":1}`), headers: map[string]string{"ce_specversion": "1.0", "ce_id": "1", "ce_source": "s", "ce_type": "t", "ce_partitionkey": "a"}}, false},
	}
	tr := &mqTransport{ser: JSONSerializer{}}
	for i, c := range cases {
		got := keyless(c.m)
		if got != c.keyless {
			t.Errorf("case %d (%s): keyless = %v, want %v", i, c.m.value, got, c.keyless)
		}
		if d := tr.decode(c.m); got && d.ev != nil && d.ev.Key != "" {
			t.Errorf("case %d: judged keyless, but the event decodes with key %q", i, d.ev.Key)
		}
	}
}

// BenchmarkKeyless is the reader's routing check on a keyless 1 KiB
// envelope (text data, as in bench/).
func BenchmarkKeyless(b *testing.B) {
	data := make([]byte, 1024)
	for i := range data {
		data[i] = byte('a' + i%26)
	}
	m := &keyedMsg{value: []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"` + string(data) + `"}`)}
	for b.Loop() {
		if !keyless(m) {
			b.Fatal("not keyless")
		}
	}
}
