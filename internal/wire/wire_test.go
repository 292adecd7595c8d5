package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeEnvelope checks that no input makes the decoder panic, that
// everything it accepts as a structured envelope is valid JSON but for the
// payload in "data" (which the decoder leaves to whoever unmarshals it),
// and that events written by AppendStructured and BinaryHeaders decode to
// the same event.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":[1,"}"]}}`), "k", "v", []byte(`{"x":1}`))
	f.Add([]byte(`{"specversion":"1.0","id":"\u0041","source":"s","type":"t","data_base64":"AAE="}`), "", "", []byte{0xff})
	f.Add([]byte(`{"a":{"specversion":"1.0"}}`), "k\"", "\\", []byte(`"s"`))
	f.Add([]byte(`{"specversion" : "1.0" , "id":"1","source":"s","type":"t","ext":true}`), "", "x", []byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte, key, hval string, payload []byte) {
		e, isEnv, err := Decode(nil, raw)
		if isEnv && !json.Valid(raw) && !validButData(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		if err == nil && isEnv && e == nil {
			t.Fatal("envelope without event")
		}
		if err != nil && !errors.Is(err, ErrDecode) {
			t.Fatalf("error %v does not wrap ErrDecode", err)
		}

		ct := "application/json"
		if !json.Valid(payload) {
			ct = "application/octet-stream"
		}
		in := &Event{ID: "id-" + key, Source: "src", Type: "type", Key: key, Time: time.Unix(1700000000, 123).UTC(),
			ContentType: ct, Data: payload, TraceParent: "00-" + hval}
		if hval != "" {
			in.Headers = map[string]string{"ext": hval}
		}
		if err := Validate(in.ID, in.Source, in.Type, in.Key, in.Headers); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate error %v does not wrap ErrInvalid", err)
			}
			return
		}
		env := AppendStructured(nil, in, false)
		out, isEnv, err := Decode(nil, env)
		if err != nil || !isEnv {
			t.Fatalf("own envelope %s: isEnvelope %v, %v", env, isEnv, err)
		}
		check(t, "structured", in, out, ct == "application/json")
		bin, isEnv, err := Decode(BinaryHeaders(in), in.Data)
		if err != nil || !isEnv {
			t.Fatalf("own binary event: isEnvelope %v, %v", isEnv, err)
		}
		check(t, "binary", in, bin, false)
	})
}

// validButData reports whether raw is valid JSON once every non-string
// value following a "data" name is replaced by null (a string containing
// "data": can only make it report false, which is the safe side here).
func validButData(raw []byte) bool {
	s := string(raw)
	var out strings.Builder
	last := 0
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], `"data"`)
		if j < 0 {
			break
		}
		k := skipSpace(s, i+j+len(`"data"`))
		if k < len(s) && s[k] == ':' {
			v := skipSpace(s, k+1)
			if e := endOfValue(s, v); e > v && s[v] != '"' {
				out.WriteString(s[last:v])
				out.WriteString("null")
				last, i = e, e
				continue
			}
		}
		i += j + 1
	}
	out.WriteString(s[last:])
	return json.Valid([]byte(out.String()))
}

func check(t *testing.T, mode string, in, out *Event, jsonData bool) {
	t.Helper()
	want := in.Data
	if jsonData {
		want = bytes.TrimSpace(want) // insignificant JSON whitespace
	}
	if out.ID != in.ID || out.Key != in.Key || !out.Time.Equal(in.Time) || out.ContentType != in.ContentType ||
		out.Headers["ext"] != in.Headers["ext"] || out.TraceParent != in.TraceParent ||
		!bytes.Equal(out.Data, want) && !(len(out.Data) == 0 && len(want) == 0) {
		t.Fatalf("%s round trip of %+v: got %+v", mode, in, out)
	}
	if _, ok := out.Headers[TraceParent]; ok {
		t.Fatalf("%s: traceparent leaked into Headers: %v", mode, out.Headers)
	}
}

func TestDecodeBarePayloads(t *testing.T) {
	for _, raw := range []string{``, `hello`, `[1,2]`, `{"a":1}`, `{"a":{"specversion":"1.0"}}`, `{"specversion":"1.0"`} {
		t.Run(raw, func(t *testing.T) {
			e, isEnv, err := Decode(nil, []byte(raw))
			if isEnv || err != nil || e != nil {
				t.Fatalf("Decode(%q) = %v, %v, %v; want a bare payload", raw, e, isEnv, err)
			}
		})
	}
}

func TestDecodeBrokenEnvelopes(t *testing.T) {
	for name, raw := range map[string]string{
		"specversion 2":  `{"specversion":"2.0","id":"1","source":"s","type":"t"}`,
		"no id":          `{"specversion":"1.0","source":"s","type":"t"}`,
		"bad time":       `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}`,
		"data and b64":   `{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}`,
		"bad base64":     `{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}`,
		"non-string src": `{"specversion":"1.0","id":"1","source":5,"type":"t"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, isEnv, err := Decode(nil, []byte(raw))
			if !isEnv || !errors.Is(err, ErrDecode) {
				t.Fatalf("Decode(%s) = isEnvelope %v, %v; want an ErrDecode", raw, isEnv, err)
			}
		})
	}
}

func TestBrokerTraceHeadersWin(t *testing.T) {
	in := &Event{ID: "1", Source: "s", Type: "t", ContentType: "application/json", Data: []byte(`1`), TraceParent: "from-envelope"}
	out, _, err := Decode(map[string]string{TraceParent: "from-broker", "x": "1"}, AppendStructured(nil, in, true))
	if err != nil {
		t.Fatal(err)
	}
	if out.TraceParent != "from-broker" || out.Headers["x"] != "1" || len(out.Headers) != 1 {
		t.Fatalf("got traceparent %q headers %v", out.TraceParent, out.Headers)
	}
}

func TestValidateRejects(t *testing.T) {
	for name, h := range map[string]map[string]string{
		"reserved":    {"id": "x"},
		"traceparent": {"traceparent": "x"},
		"upper case":  {"Trace": "x"},
		"empty":       {"": "x"},
		"bad value":   {"ok": "\xff"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := Validate("1", "s", "t", "", h); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%v) = %v, want ErrInvalid", h, err)
			}
		})
	}
}

// BenchmarkDecodeStructured compares the scanner with decoding the same
// envelope through encoding/json into a map of raw members, the obvious
// alternative.
func BenchmarkDecodeStructured(b *testing.B) {
	in := &Event{ID: "0190c3f0-0000-7000-8000-000000000001", Source: "eventstream", Type: "main.order",
		Time: time.Now(), Key: "customer-7", ContentType: "application/json",
		Data: []byte(`{"id":7,"customer":"c-7","items":["a","b","c"],"total":12.5,"note":"fragile"}`)}
	env := AppendStructured(nil, in, true)
	b.Run("scanner", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, _, err := Decode(nil, env); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, data := range map[string][]byte{
		"scanner-text":   bytes.Repeat([]byte("0123456789"), 10),  // what a bus with RawSerializer reads: "data" as a string
		"scanner-base64": bytes.Repeat([]byte("012345678\n"), 10), // not plain text: "data_base64"
	} {
		raw := &Event{ID: in.ID, Source: in.Source, Type: "[]uint8", Time: in.Time, ContentType: "application/octet-stream", Data: data}
		rawEnv := AppendStructured(nil, raw, false)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var e Event
			for range b.N {
				e = Event{}
				if _, err := DecodeInto(&e, nil, rawEnv); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(env, &m); err != nil {
				b.Fatal(err)
			}
			var id, src, typ, tm, ct, key string
			for k, p := range map[string]*string{"id": &id, "source": &src, "type": &typ, "time": &tm, "datacontenttype": &ct, "partitionkey": &key} {
				if err := json.Unmarshal(m[k], p); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// TestBaseMediaType: the shortcut for plain media types agrees with
// mime.ParseMediaType.
func TestBaseMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"application/json":                "application/json",
		"application/cloudevents+json":    "application/cloudevents+json",
		"Application/JSON":                "application/json",
		"application/json; charset=utf-8": "application/json",
		" text/plain ":                    "text/plain",
		"application/octet-stream":        "application/octet-stream",
		"/json":                           "/json",
		"":                                "",
	} {
		if got := BaseMediaType(in); got != want {
			t.Errorf("BaseMediaType(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDecodeLeavesDataToTheReader: a payload that is not valid JSON still
// makes an envelope (its reader's Unmarshal reports it), delimited with
// strings and brackets respected; broken JSON elsewhere does not.
func TestDecodeLeavesDataToTheReader(t *testing.T) {
	e, isEnv, err := Decode(nil, []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":,"}":[}],"x":"y"}`))
	if err != nil || !isEnv {
		t.Fatalf("isEnvelope %v, %v", isEnv, err)
	}
	if string(e.Data) != `{"a":,"}":[}]` || e.Headers["x"] != "y" {
		t.Fatalf("data %q headers %v", e.Data, e.Headers)
	}
	if _, isEnv, _ := Decode(nil, []byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","ext":{"a":}}`)); isEnv {
		t.Fatal("broken JSON outside data accepted")
	}
}

// TestRawPayloadForms: a payload of a non-JSON content type travels as a
// JSON string in "data" when it is plain text, else in "data_base64"; both
// decode to the same bytes, the string form without a copy.
func TestRawPayloadForms(t *testing.T) {
	for _, tc := range []struct {
		data   string
		member string
	}{
		{"hello, world <&> é ✓", `"data":"hello, world <&> é ✓"`},
		{"0123456789abcdefghij", `"data":"0123456789abcdefghij"`},
		{"line\n", `"data_base64":"bGluZQo="`},
		{`say "hi"`, `"data_base64":`},
		{`back\slash`, `"data_base64":`},
		{"\xff\xfe", `"data_base64":"//4="`},
		{"tab\there", `"data_base64":`},
	} {
		in := &Event{ID: "1", Source: "s", Type: "t", ContentType: "application/octet-stream", Data: []byte(tc.data)}
		env := AppendStructured(nil, in, false)
		if !json.Valid(env) {
			t.Fatalf("%q: invalid JSON %s", tc.data, env)
		}
		if !strings.Contains(string(env), tc.member) {
			t.Errorf("%q: envelope %s, want it to contain %s", tc.data, env, tc.member)
		}
		out, isEnv, err := Decode(nil, env)
		if err != nil || !isEnv || string(out.Data) != tc.data {
			t.Fatalf("%q: decoded %q, isEnvelope %v, %v", tc.data, out.Data, isEnv, err)
		}
		if strings.Contains(tc.member, `"data":`) && &out.Data[0] != &env[strings.Index(string(env), `"data":"`)+len(`"data":"`)] {
			t.Errorf("%q: the text was copied", tc.data)
		}
	}
	// Invalid JSON of a JSON content type is base64 even when it is plain text.
	env := AppendStructured(nil, &Event{ID: "1", Source: "s", Type: "t", ContentType: "application/json", Data: []byte("abc")}, false)
	if !strings.Contains(string(env), `"data_base64":"YWJj"`) {
		t.Errorf("invalid JSON payload: %s", env)
	}
}

// TestPlainRun: the word-at-a-time and vectorized search finds the first quote,
// backslash or control character at every position, as a byte loop does.
func TestPlainRun(t *testing.T) {
	for n := 0; n < 130; n++ { // past the 48 bytes tested by word first
		for pos := 0; pos <= n; pos++ {
			for _, c := range []byte{'"', '\\', 0x00, 0x1f, '\n'} {
				b := bytes.Repeat([]byte{'a'}, n)
				for i := range b {
					b[i] = byte(" ~\x7f\x80\xa0\xff!#[]"[i%10])
				}
				if pos < n {
					b[pos] = c
				}
				if got := plainRun(string(b), 0); got != pos {
					t.Fatalf("plainRun(%q) = %d, want %d", b, got, pos)
				}
			}
		}
	}
}

// BenchmarkAppendStructured is the envelope encoding of one Emit (~100 B
// JSON payload) into a reused buffer.
func BenchmarkAppendStructured(b *testing.B) {
	e := &Event{ID: "0190c3f0-0000-7000-8000-000000000001", Source: "eventstream", Type: "main.order",
		Time: time.Now(), Key: "customer-7", ContentType: "application/json",
		Data: []byte(`{"id":7,"customer":"c-7","items":["a","b","c"],"total":12.5,"note":"fragile"}`)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for range b.N {
		buf = AppendStructured(buf[:0], e, true)
	}
}

// TestAppendString checks that every string comes out as a JSON string that
// decodes to it (invalid UTF-8 as encoding/json replaces it), the escaped
// ones exactly as encoding/json writes them.
func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "0190c3f0-0000-7000-8000-000000000001", "main.order[x]",
		`q"uote`, `back\slash`, "tab\t", "nl\n", "\x00", "\x1f", "del\x7f", "<a&b>", "?@AZ[]^_`{|}~",
		"héllo", "日本", "bad\xff", "\xc3", "mixed é \"q\"", "\u2028", "é<"} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got := appendString([]byte("x"), s)[1:]
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, got, err)
		}
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("appendString(%q) = %s decodes to %q, want %q", s, got, back, wantBack)
		}
		if (strings.ContainsAny(s, "\"\\\x00\x1f\t\n<&") || !utf8.ValidString(s)) && string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}
