package headerset

import (
	"maps"
	"testing"
)

func TestSet(t *testing.T) {
	var none *Set
	if none.Len() != 0 || none.Map() != nil {
		t.Fatalf("nil set: Len %d, Map %v", none.Len(), none.Map())
	}
	s := &Set{List: []Header{{"a", "1"}, {"b", "2"}, {"a", "3"}}}
	if n, v := s.At(2); s.Len() != 3 || n != "a" || v != "3" {
		t.Fatalf("Len %d, At(2) = %q %q", s.Len(), n, v)
	}
	if want := map[string]string{"a": "3", "b": "2"}; !maps.Equal(s.Map(), want) {
		t.Fatalf("Map() = %v, want %v (last entry of a name wins)", s.Map(), want)
	}
	m := s.Map()
	m["x"] = "built once"
	if s.Map()["x"] != "built once" {
		t.Fatal("Map built a second map")
	}
}
