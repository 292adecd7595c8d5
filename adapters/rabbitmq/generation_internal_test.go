package rabbitmq

import (
	"log/slog"
	"testing"
)

// TestGenerationBoundedWhileOneMessageWaits: while one handed-out message
// stays unhandled, the others are acknowledged one by one and the
// generation's bookkeeping stays within the prefetch window instead of
// growing with every message handled behind the waiting one.
func TestGenerationBoundedWhileOneMessageWaits(t *testing.T) {
	const prefetch = 8
	g := newGeneration(nil, prefetch, slog.New(slog.DiscardHandler))
	g.dead.Store(true) // no channel: flush settles without sending
	defer g.stop()

	g.handedOut(1) // never handled
	for tag := uint64(2); tag < 20000; tag++ {
		g.handedOut(tag)
		g.ack(tag)
		if tag%4 == 0 {
			_ = g.flush()
		}
	}
	_ = g.flush()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.order) > prefetch || len(g.done) > prefetch || len(g.pending) > prefetch {
		t.Fatalf("bookkeeping grew while tag 1 waited: order %d, done %d, pending %d (prefetch %d)",
			len(g.order), len(g.done), len(g.pending), prefetch)
	}
	if len(g.order) == 0 || g.order[0] != 1 {
		t.Fatalf("order %v: the unhandled tag 1 must stay first", g.order[:min(len(g.order), 5)])
	}
	if g.out != 1+len(g.pending) {
		t.Fatalf("out = %d, want the waiting message plus %d pending", g.out, len(g.pending))
	}
}
