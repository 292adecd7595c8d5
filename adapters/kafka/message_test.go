package kafka

import (
	"maps"
	"testing"
)

// TestHeaderCache: records with the same headers share one map, any
// difference (a value, a key, a count, a repeated key) gets a map of its own
// with the last value of a repeated key.
func TestHeaderCache(t *testing.T) {
	f := &fetcher{topic: "t"}
	hs := func(kv ...string) []rawHeader {
		var out []rawHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, rawHeader{key: []byte(kv[i]), value: []byte(kv[i+1])})
		}
		return out
	}
	headers := func(h []rawHeader) map[string]string {
		return f.message(&fetchedRecord{value: []byte("v"), hdrs: h}).Headers()
	}
	if m := headers(nil); m != nil {
		t.Fatalf("no headers: %v, want nil", m)
	}
	a := headers(hs("content-type", "x"))
	b := headers(hs("content-type", "x"))
	if !maps.Equal(a, map[string]string{"content-type": "x"}) {
		t.Fatalf("headers = %v", a)
	}
	b["probe"] = "" // the same map when reused
	if _, ok := a["probe"]; !ok {
		t.Fatal("equal headers did not share the map")
	}
	delete(a, "probe")
	for _, tc := range []struct {
		in   []rawHeader
		want map[string]string
	}{
		{hs("content-type", "y"), map[string]string{"content-type": "y"}},
		{hs("other", "y"), map[string]string{"other": "y"}},
		{hs("other", "y", "k", "v"), map[string]string{"other": "y", "k": "v"}},
		{hs("k", "1", "k", "2"), map[string]string{"k": "2"}},
		{hs("k", "1", "k", "2"), map[string]string{"k": "2"}},
		{[]rawHeader{{key: []byte("n")}}, map[string]string{"n": ""}},
	} {
		if got := headers(tc.in); !maps.Equal(got, tc.want) {
			t.Fatalf("headers(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
