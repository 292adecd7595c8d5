package eventstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeEnvelope checks that no input makes the decoder panic, that
// everything it accepts is valid JSON, and that envelopes written by
// appendEnvelope decode to the same event.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"a":[1,"}"]}}`), "k", "v", []byte(`{"x":1}`))
	f.Add([]byte(`{"specversion":"1.0","id":"\u0041","source":"s","type":"t","data_base64":"AAE="}`), "", "", []byte{0xff})
	f.Add([]byte(`{"a":{"specversion":"1.0"}}`), "k\"", "\\", []byte(`"s"`))
	f.Add([]byte(`{"specversion" : "1.0" , "id":"1","source":"s","type":"t","ext":true}`), "", "x", []byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte, key, hval string, payload []byte) {
		e, isEnv, err := decodeEnvelope(raw)
		if isEnv && !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		if err == nil && isEnv && e == nil {
			t.Fatal("envelope without event")
		}

		ct := "application/json"
		if !json.Valid(payload) {
			ct = "application/octet-stream"
		}
		in := &Event{ID: "id-" + key, Source: "src", Type: "type", Key: key, Time: time.Unix(1700000000, 123).UTC()}
		if hval != "" {
			in.Headers = map[string]string{"ext": hval}
		}
		env, err := appendEnvelope(nil, in, ct, payload, false)
		if !utf8.ValidString(key) || !utf8.ValidString(hval) {
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("invalid UTF-8 accepted: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		out, isEnv, err := decodeEnvelope(env)
		if err != nil || !isEnv {
			t.Fatalf("own envelope %s: isEnvelope %v, %v", env, isEnv, err)
		}
		data, _ := out.Data.([]byte)
		if ct == "application/json" {
			payload = bytes.TrimSpace(payload) // insignificant JSON whitespace
		}
		if out.ID != in.ID || out.Key != in.Key || !out.Time.Equal(in.Time) || out.ContentType != ct ||
			out.Headers["ext"] != hval || !bytes.Equal(data, payload) && !(len(data) == 0 && len(payload) == 0) {
			t.Fatalf("round trip of %s: got %+v", env, out)
		}
	})
}
