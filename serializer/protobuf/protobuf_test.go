package protobuf_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/eventstream-go/eventstream"
	"github.com/eventstream-go/eventstream/serializer/protobuf"
)

func TestRoundTrip(t *testing.T) {
	var s protobuf.Serializer
	b, err := s.Marshal(wrapperspb.String("hello"))
	if err != nil {
		t.Fatal(err)
	}
	var got wrapperspb.StringValue
	if err := s.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.GetValue() != "hello" {
		t.Fatalf("got %q, want hello", got.GetValue())
	}
}

func TestRejectsNonProto(t *testing.T) {
	var s protobuf.Serializer
	if _, err := s.Marshal(42); err == nil {
		t.Fatal("Marshal(42) succeeded")
	}
	var n int
	if err := s.Unmarshal([]byte{1}, &n); !errors.Is(err, eventstream.ErrDecode) {
		t.Fatalf("Unmarshal into *int = %v, want ErrDecode", err)
	}
	var v wrapperspb.StringValue
	if err := s.Unmarshal([]byte{0xff, 0xff}, &v); !errors.Is(err, eventstream.ErrDecode) {
		t.Fatalf("Unmarshal of garbage = %v, want ErrDecode", err)
	}
}
