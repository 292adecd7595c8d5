package eventstream

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
	"testing"
)

// TestDecodedEventData: the Data of a decoded event behaves like any
// interface holding that []byte (assertion, type switch, reflect, fmt,
// reassignment), shares the bytes, survives collections, and costs one
// allocation with the Event.
func TestDecodedEventData(t *testing.T) {
	src := []byte("payload")
	evs := make([]*Event, 100)
	for i := range evs {
		evs[i] = newDecodedEvent(src[:len(src)-i%3])
	}
	runtime.GC()
	runtime.GC()
	for i, e := range evs {
		want := src[:len(src)-i%3]
		b, ok := e.Data.([]byte)
		if !ok || !bytes.Equal(b, want) || &b[0] != &src[0] || cap(b) != cap(want) {
			t.Fatalf("event %d: Data %#v, want %q sharing the source", i, e.Data, want)
		}
		switch d := e.Data.(type) {
		case []byte:
			if string(d) != string(want) {
				t.Fatalf("type switch: %q", d)
			}
		default:
			t.Fatalf("type switch: %T", d)
		}
		if v := reflect.ValueOf(e.Data); v.Kind() != reflect.Slice || !bytes.Equal(v.Bytes(), want) {
			t.Fatalf("reflect: %v", v)
		}
		if s := fmt.Sprintf("%s", e.Data); s != string(want) {
			t.Fatalf("fmt: %q", s)
		}
	}
	e := newDecodedEvent(nil)
	if b, ok := e.Data.([]byte); !ok || b != nil {
		t.Fatalf("nil data: %#v", e.Data)
	}
	e.Data = 7
	if e.Data != 7 {
		t.Fatalf("reassigned Data: %#v", e.Data)
	}
	if n := testing.AllocsPerRun(100, func() { _ = newDecodedEvent(src) }); n != 1 {
		t.Fatalf("newDecodedEvent: %v allocations, want 1", n)
	}
}
