package kafka

import (
	"maps"
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

// TestHeaderCache: records with the same headers share one map, any
// difference (a value, a key, a count, a repeated key) gets a map of its own
// with the last value of a repeated key.
func TestHeaderCache(t *testing.T) {
	var c headerCache
	hs := func(kv ...string) []kafkago.Header {
		var out []kafkago.Header
		for i := 0; i < len(kv); i += 2 {
			out = append(out, kafkago.Header{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return out
	}
	if m := c.headers(nil); m != nil {
		t.Fatalf("no headers: %v, want nil", m)
	}
	a := c.headers(hs("content-type", "x"))
	b := c.headers(hs("content-type", "x"))
	if !maps.Equal(a, map[string]string{"content-type": "x"}) {
		t.Fatalf("headers = %v", a)
	}
	b["probe"] = "" // the same map when reused
	if _, ok := a["probe"]; !ok {
		t.Fatal("equal headers did not share the map")
	}
	delete(a, "probe")
	for _, tc := range []struct {
		in   []kafkago.Header
		want map[string]string
	}{
		{hs("content-type", "y"), map[string]string{"content-type": "y"}},
		{hs("other", "y"), map[string]string{"other": "y"}},
		{hs("other", "y", "k", "v"), map[string]string{"other": "y", "k": "v"}},
		{hs("k", "1", "k", "2"), map[string]string{"k": "2"}},
		{hs("k", "1", "k", "2"), map[string]string{"k": "2"}},
	} {
		if got := c.headers(tc.in); !maps.Equal(got, tc.want) {
			t.Fatalf("headers(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
