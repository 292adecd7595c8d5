package eventstream

import (
	"bytes"
	"reflect"
	"runtime"
	"testing"
)

// TestDecodedEventData checks the decoded event: its Data is an ordinary
// []byte interface value (type, contents, length and capacity,
// the caller's memory), which survives collections and can be replaced.
func TestDecodedEventData(t *testing.T) {
	src := []byte("payload bytes")
	data := src[2:9:11]
	e := newDecodedEvent(data)
	got, ok := e.Data.([]byte)
	if !ok {
		t.Fatalf("Data is %T, want []byte", e.Data)
	}
	if reflect.TypeOf(e.Data) != reflect.TypeOf([]byte(nil)) {
		t.Fatalf("reflect.TypeOf(Data) = %v", reflect.TypeOf(e.Data))
	}
	if !bytes.Equal(got, []byte("yload b")) || len(got) != 7 || cap(got) != 9 || &got[0] != &src[2] {
		t.Fatalf("Data = %q len %d cap %d; want a view of the message's bytes", got, len(got), cap(got))
	}
	if n := newDecodedEvent(nil); n.Data == nil || n.Data.([]byte) != nil {
		t.Fatalf("nil data: Data = %#v, want a nil []byte in a non-nil interface", n.Data)
	}

	// Many events, nothing else referring to their boxes but the Data
	// interfaces, across collections.
	evs := make([]any, 1000)
	for i := range evs {
		evs[i] = newDecodedEvent([]byte{byte(i), byte(i >> 8)}).Data
	}
	runtime.GC()
	runtime.GC()
	for i, d := range evs {
		if b := d.([]byte); len(b) != 2 || b[0] != byte(i) || b[1] != byte(i>>8) {
			t.Fatalf("event %d after GC: Data = %v", i, b)
		}
	}

	e.Data = "replaced"
	if e.Data != "replaced" {
		t.Fatalf("Data = %v after assignment", e.Data)
	}
}

var sinkEvent *Event

// TestDecodedEventAllocs pins the cost of a decoded event: the Event and
// its Data's slice header.
func TestDecodedEventAllocs(t *testing.T) {
	data := []byte("x")
	if n := testing.AllocsPerRun(100, func() { sinkEvent = newDecodedEvent(data) }); n > 2 {
		t.Fatalf("newDecodedEvent: %v allocations, want 2", n)
	}
}
