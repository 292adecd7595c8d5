package eventstream

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkNewEvent measures what an Emit pays for a new event: idGen (one
// allocation for the event and its ID, one clock read per event) against the
// obvious alternative, time.Now plus google/uuid's NewV7 formatted as a
// string. idGen stays because of this difference.
func BenchmarkNewEvent(b *testing.B) {
	b.Run("idGen", func(b *testing.B) {
		g := newIDGen()
		b.ReportAllocs()
		for range b.N {
			_ = g.newEvent("t", g.now())
		}
	})
	b.Run("uuid.NewV7", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			e := &Event{Topic: "t", Time: time.Now()}
			id, err := uuid.NewV7()
			if err != nil {
				b.Fatal(err)
			}
			e.ID = id.String()
		}
	})
}
