package wire

import (
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"
)

// pairs is a HeaderList.
type pairs [][2]string

func (p pairs) NumHeaders() int                 { return len(p) }
func (p pairs) HeaderAt(i int) (string, string) { return p[i][0], p[i][1] }

func listOf(m map[string]string) pairs {
	var p pairs
	for k, v := range m {
		p = append(p, [2]string{k, v})
	}
	sort.Slice(p, func(i, j int) bool { return p[i][0] < p[j][0] })
	return p
}

// TestDecodeListMatchesDecodeInto checks that reading the broker headers
// as a list gives the event (or the error) that reading them as a map
// gives, for structured, binary and bare messages with and without broker
// headers, and that a name in several entries takes the last value.
func TestDecodeListMatchesDecodeInto(t *testing.T) {
	ev := &Event{ID: "id-1", Source: "src", Type: "t", Time: time.Date(2026, 12, 3, 1, 2, 3, 4, time.UTC),
		Key: "k", Headers: map[string]string{"tenant": "a"}, ContentType: "application/json", Data: []byte(`{"n":1}`),
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "x=1"}
	env := AppendStructured(nil, ev, true)
	bin := BinaryHeaders(ev)
	badSpec := BinaryHeaders(ev)
	badSpec["ce_specversion"] = "0.3"
	noID := BinaryHeaders(ev)
	delete(noID, "ce_id")
	for i, tc := range []struct {
		native map[string]string
		value  []byte
	}{
		{nil, env},
		{map[string]string{"content-type": CloudEventsContentType}, env},
		{map[string]string{"content-type": CloudEventsContentType, "traceparent": "00-1-2-01", "eventstream-error": "boom"}, env},
		{map[string]string{"tenant": "broker", "other": "x"}, env},
		{bin, ev.Data},
		{badSpec, ev.Data},
		{noID, ev.Data},
		{map[string]string{"content-type": "text/plain", "x": "y"}, []byte("bare")},
		{nil, []byte(`{"specversion":"1.0","id":"1"}`)},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var want, got Event
			wantEnv, wantErr := DecodeInto(&want, tc.native, tc.value)
			gotEnv, gotErr := DecodeList(&got, listOf(tc.native), tc.value)
			if wantEnv != gotEnv || (wantErr == nil) != (gotErr == nil) ||
				(wantErr != nil && wantErr.Error() != gotErr.Error()) {
				t.Fatalf("DecodeList = %v, %v; DecodeInto = %v, %v", gotEnv, gotErr, wantEnv, wantErr)
			}
			if wantErr == nil && wantEnv && !reflect.DeepEqual(want, got) {
				t.Fatalf("DecodeList event\n%+v\nDecodeInto event\n%+v", got, want)
			}
		})
	}

	// The last entry of a name wins, as in the map the entries stand for.
	dup := append(listOf(bin), [2]string{"ce_type", "last"}, [2]string{"ce_tenant", "b"})
	var e Event
	if _, err := DecodeList(&e, dup, ev.Data); err != nil || e.Type != "last" || e.Headers["tenant"] != "b" {
		t.Fatalf("duplicate entries: type %q headers %v err %v, want the last values", e.Type, e.Headers, err)
	}
	if m := ListMap(dup); m["ce_type"] != "last" || len(m) != len(bin) {
		t.Fatalf("ListMap = %v", m)
	}
}
