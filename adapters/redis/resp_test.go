package redis

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

// bulk is a RESP bulk string.
func bulk(s string) string { return "$" + itoa(len(s)) + "\r\n" + s + "\r\n" }

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func entry(id string, fields ...string) string {
	s := "*2\r\n" + bulk(id) + "*" + itoa(len(fields)) + "\r\n"
	for _, f := range fields {
		s += bulk(f)
	}
	return s
}

func TestParseReadGroup(t *testing.T) {
	entries := "*3\r\n" + entry("1700000000000-0", "v", "hello", "k", "key1") +
		entry("1700000000001-5", "v", "", "t", "42", "h:a", "b") +
		entry("1700000000002-0", "x", "1", "y", "2")
	for name, raw := range map[string]string{
		"RESP2": "*1\r\n*2\r\n" + bulk("es:t") + entries,
		"RESP3": "%1\r\n" + bulk("es:t") + entries,
	} {
		t.Run(name, func(t *testing.T) {
			var b batch
			msgs, err := b.parseReadGroup([]byte(raw), "t")
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 3 {
				t.Fatalf("%d messages, want 3", len(msgs))
			}
			m := &msgs[0]
			if m.ID() != "1700000000000-0" || string(m.Value()) != "hello" || string(m.Key()) != "key1" ||
				m.Timestamp().UnixMilli() != 1700000000000 || m.Topic() != "t" || m.Headers() != nil {
				t.Errorf("first: id %q value %q key %q ts %v headers %v", m.ID(), m.Value(), m.Key(), m.Timestamp(), m.Headers())
			}
			if cap(m.Value()) != len(m.Value()) {
				t.Errorf("value capacity %d beyond its length %d: an append would overwrite the reply", cap(m.Value()), len(m.Value()))
			}
			m = &msgs[1]
			if m.ID() != "1700000000001-5" || m.Value() == nil || len(m.Value()) != 0 || m.Key() != nil ||
				m.Timestamp().UnixMilli() != 42 || m.Headers()["a"] != "b" {
				t.Errorf("second: id %q value %q key %q ts %v headers %v", m.ID(), m.Value(), m.Key(), m.Timestamp(), m.Headers())
			}
			m = &msgs[2]
			if string(m.Value()) != `{"x":"1","y":"2"}` || m.Timestamp().UnixMilli() != 1700000000002 {
				t.Errorf("foreign: value %q ts %v", m.Value(), m.Timestamp())
			}
		})
	}
}

func TestParseReadGroupEmptyAndErrors(t *testing.T) {
	for _, raw := range []string{"*-1\r\n", "_\r\n", "*0\r\n", "%0\r\n"} {
		var b batch
		msgs, err := b.parseReadGroup([]byte(raw), "t")
		if err != nil || len(msgs) != 0 {
			t.Errorf("%q: %d messages, error %v; want none", raw, len(msgs), err)
		}
	}
	var b batch
	_, err := b.parseReadGroup([]byte("-NOGROUP No such key or consumer group\r\n"), "t")
	if !isNoGroup(err) {
		t.Errorf("error reply: %v, want NOGROUP", err)
	}
	full := "*1\r\n*2\r\n" + bulk("es:t") + "*1\r\n" + entry("1-1", "v", "hello")
	for i := 0; i < len(full); i++ {
		if _, err := b.parseReadGroup([]byte(full[:i]), "t"); !errors.Is(err, errProtocol) {
			t.Fatalf("reply truncated to %d bytes: error %v, want errProtocol", i, err)
		}
	}
	for _, bad := range []string{":1\r\n", "*1\r\n*3\r\n",
		"*1\r\n*2\r\n$1\r\nk\r\n*999999999999999999\r\n", // a count no reply of this size can hold
		"*1\r\n*2\r\n$1\r\nk\r\n%999999999\r\n", "*1\r\n*2\r\n" + bulk("k") + "*1\r\n*2\r\n" + bulk("1-1") + "*1\r\n" + bulk("v")} {
		if _, err := b.parseReadGroup([]byte(bad), "t"); !errors.Is(err, errProtocol) {
			t.Errorf("%q: error %v, want errProtocol", bad, err)
		}
	}
}

func TestParseAutoClaim(t *testing.T) {
	raw := "*3\r\n" + bulk("5-0") + "*2\r\n" + entry("1-0", "v", "a") + "*-1\r\n" + "*2\r\n" + bulk("2-0") + bulk("3-0")
	var b batch
	msgs, next, deleted, err := b.parseAutoClaim([]byte(raw), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID() != "1-0" || string(msgs[0].Value()) != "a" || next != "5-0" ||
		strings.Join(deleted, ",") != "2-0,3-0" {
		t.Errorf("got %d messages, next %q, deleted %v", len(msgs), next, deleted)
	}
	// Redis 6.2: no deleted IDs.
	msgs, next, deleted, err = b.parseAutoClaim([]byte("*2\r\n"+bulk("0-0")+"*0\r\n"), "t")
	if err != nil || len(msgs) != 0 || next != "0-0" || deleted != nil {
		t.Errorf("6.2 reply: %d messages, next %q, deleted %v, error %v", len(msgs), next, deleted, err)
	}
}

func TestReplyBufferReadFrom(t *testing.T) {
	var w replyBuffer
	src := strings.Repeat("x", 10000)
	if _, err := w.Write([]byte("$10000\r\n")); err != nil {
		t.Fatal(err)
	}
	n, err := w.ReadFrom(strings.NewReader(src))
	if err != nil || n != int64(len(src)) || string(w.b) != "$10000\r\n"+src {
		t.Fatalf("ReadFrom: %d bytes, error %v, buffer of %d bytes", n, err, len(w.b))
	}
}

func TestHeaderMapsShared(t *testing.T) {
	raw := "*1\r\n*2\r\n" + bulk("es:t") + "*4\r\n" +
		entry("1-0", "v", "a", "h:ct", "json") +
		entry("1-1", "v", "b", "h:ct", "json") +
		entry("1-2", "v", "c", "h:ct", "xml", "h:x", "1") +
		entry("1-3", "v", "d", "h:ct", "xml")
	var b batch
	msgs, err := b.parseReadGroup([]byte(raw), "t")
	if err != nil {
		t.Fatal(err)
	}
	h := func(i int) map[string]string { return msgs[i].Headers() }
	if h(0)["ct"] != "json" || len(h(0)) != 1 || h(2)["ct"] != "xml" || h(2)["x"] != "1" || len(h(2)) != 2 ||
		h(3)["ct"] != "xml" || len(h(3)) != 1 {
		t.Errorf("headers %v %v %v %v", h(0), h(1), h(2), h(3))
	}
	h(0)["probe"] = "1" // the test may; callers must not
	if h(1)["probe"] != "1" {
		t.Errorf("entries with the same headers do not share their map")
	}
	if h(2)["probe"] != "" || h(3)["probe"] != "" {
		t.Errorf("entries with other headers share a map")
	}
}

// TestHeaderValuesPastTheInternTable: once the table of shared strings is
// full, header values are views of the reply, and still the entries' own.
func TestHeaderValuesPastTheInternTable(t *testing.T) {
	var b batch
	n := maxInterned + 10
	raw := "*1\r\n*2\r\n" + bulk("es:t") + "*" + itoa(n) + "\r\n"
	for i := range n {
		raw += entry("1-"+itoa(i), "v", "x", "h:ce_id", "id-"+itoa(i), "h:"+strings.Repeat("l", maxInternedLen+1), strings.Repeat("v", maxInternedLen+1)+itoa(i))
	}
	msgs, err := b.parseReadGroup([]byte(raw), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n || len(b.intern) != maxInterned {
		t.Fatalf("%d messages, %d interned strings", len(msgs), len(b.intern))
	}
	for i, m := range msgs {
		h := m.Headers()
		if h["ce_id"] != "id-"+itoa(i) || h[strings.Repeat("l", maxInternedLen+1)] != strings.Repeat("v", maxInternedLen+1)+itoa(i) || len(h) != 2 {
			t.Fatalf("entry %d: headers %v", i, h)
		}
	}
}

// BenchmarkParseReadGroupBinary parses replies of 256 entries shaped like the
// bus's binary-mode events (six header fields, two of them unique per entry).
func BenchmarkParseReadGroupBinary(b *testing.B) {
	raw := "*1\r\n*2\r\n" + bulk("es:t") + "*256\r\n"
	for i := range 256 {
		raw += entry("1700000000000-"+itoa(i), "v", strings.Repeat("a", 100), "t", "1700000000000",
			"h:ce_specversion", "1.0", "h:ce_id", "0192d3c1-7f3a-7c4e-9b1d-"+strings.Repeat("0", 8)+itoa(1000+i),
			"h:ce_source", "order-service", "h:ce_type", "main.OrderCreated",
			"h:ce_time", "2026-12-03T16:18:04.12345"+itoa(1000+i)+"Z", "h:content-type", "application/octet-stream")
	}
	var bt batch
	b.ReportAllocs()
	for range b.N {
		if _, err := bt.parseReadGroup([]byte(raw), "t"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHeaderListMatchesMap: the header entries (HeaderLister) hold what
// Headers holds, a repeated name included (the last value wins), for
// entries that share a set and entries that do not.
func TestHeaderListMatchesMap(t *testing.T) {
	raw := "*1\r\n*2\r\n" + bulk("es:t") + "*4\r\n" +
		entry("1-0", "v", "a", "h:ct", "json") +
		entry("1-1", "v", "b", "h:ct", "json") +
		entry("1-2", "v", "c", "h:k", "1", "h:ct", "xml", "h:k", "2") +
		entry("1-3", "v", "d")
	var b batch
	msgs, err := b.parseReadGroup([]byte(raw), "t")
	if err != nil {
		t.Fatal(err)
	}
	wantN := []int{1, 1, 3, 0}
	for i := range msgs {
		m := &msgs[i]
		var listed map[string]string
		for j := range m.NumHeaders() {
			if listed == nil {
				listed = map[string]string{}
			}
			k, v := m.HeaderAt(j)
			listed[k] = v
		}
		if m.NumHeaders() != wantN[i] || !maps.Equal(listed, m.Headers()) || (listed == nil) != (m.Headers() == nil) {
			t.Errorf("entry %d: %d entries %v, Headers %v", i, m.NumHeaders(), listed, m.Headers())
		}
	}
	if msgs[2].Headers()["k"] != "2" {
		t.Errorf("repeated name: %v, want the last value", msgs[2].Headers())
	}
}
