package wire

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestParseTimeIsTimeParse: parseTime returns what time.Parse returns, for
// the times the package writes and for text the fast path must leave to
// time.Parse.
func TestParseTimeIsTimeParse(t *testing.T) {
	in := []string{
		"2026-12-03T16:18:04Z", "2026-12-03T16:18:04.1Z", "2026-12-03T16:18:04.123456789Z",
		"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-31T23:59:59.999Z",
		"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z",
		"2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z",
		"2026-01-01T00:00:00,5Z", "2026-01-01t00:00:00Z", "2026-01-01T00:00:00z", "2026-01-01T00:00:00+01:00",
		"2026-01-01T00:00:00.5-07:30", "2026-1-01T00:00:00Z", "+026-01-01T00:00:00Z", "2026-01-01T00:00:0aZ",
		"2026-01-01T00:00:00.1a3Z", "2026-01-01 00:00:00Z", "", "Z", "0000-01-01T00:00:00Z", "1900-02-29T00:00:00Z",
		"2000-02-29T00:00:00Z",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		tm := time.Unix(r.Int64N(1<<35)-1<<34, r.Int64N(1e9)).UTC()
		if r.IntN(4) == 0 {
			tm = tm.Truncate(time.Second)
		}
		in = append(in, tm.Format(time.RFC3339Nano))
	}
	for _, s := range in {
		got, gotErr := parseTime(s)
		want, wantErr := time.Parse(time.RFC3339Nano, s)
		_, fast := parseUTC(s)
		if (gotErr == nil) != (wantErr == nil) || !got.Equal(want) || fast && got != want {
			t.Errorf("parseTime(%q) = %v, %v; time.Parse: %v, %v", s, got, gotErr, want, wantErr)
		}
	}
}

func BenchmarkParseTime(b *testing.B) {
	s := time.Date(2026, 12, 3, 16, 18, 4, 123456000, time.UTC).Format(time.RFC3339Nano)
	b.Run("fast", func(b *testing.B) {
		for range b.N {
			_, _ = parseTime(s)
		}
	})
	b.Run("time.Parse", func(b *testing.B) {
		for range b.N {
			_, _ = time.Parse(time.RFC3339Nano, s)
		}
	})
}
