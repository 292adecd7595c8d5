package eventstream

import (
	"context"
	"testing"
)

func recurse(n int, f func() bool) bool {
	if n == 0 {
		return f()
	}
	return recurse(n-1, f)
}

// TestInHandler: the handler frame is found however deep the handler calls
// Off from, and not found outside handlers.
func TestInHandler(t *testing.T) {
	if inHandler() {
		t.Fatal("the test goroutine is not a handler")
	}
	for _, depth := range []int{0, 10, 200} {
		var got bool
		_ = callHandler(context.Background(), func(context.Context, *Event) error {
			got = recurse(depth, inHandler)
			return nil
		}, nil)
		if !got {
			t.Fatalf("inHandler() false %d frames below a handler", depth)
		}
	}
}
