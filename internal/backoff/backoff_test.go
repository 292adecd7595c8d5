package backoff

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	exp := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Exponential: true}
	for _, c := range []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"zero policy", Policy{}, 3, 0},
		{"before first retry", exp, 0, 0},
		{"fixed", Policy{Initial: time.Second}, 5, time.Second},
		{"exponential first", exp, 1, 100 * time.Millisecond},
		{"exponential third", exp, 3, 400 * time.Millisecond},
		{"exponential capped", exp, 10, time.Second},
		{"saturates without cap", Policy{Initial: time.Hour, Exponential: true}, 1000, math.MaxInt64},
		{"multiplier", Policy{Initial: time.Millisecond, Exponential: true, Multiplier: 10}, 3, 100 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Delay(c.n); got != c.want {
				t.Fatalf("Delay(%d) = %v, want %v", c.n, got, c.want)
			}
		})
	}
}

func TestJitterStaysInRange(t *testing.T) {
	p := Policy{Initial: time.Second, Jitter: 0.2}
	for range 1000 {
		if d := p.Jittered(1); d < 800*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("jittered delay %v outside ±20%% of 1s", d)
		}
	}
}

func TestSleepZeroDelayNoticesStop(t *testing.T) {
	stop := make(chan struct{})
	if !Sleep(context.Background(), stop, 0) {
		t.Fatal("zero delay with open stop reported interrupted")
	}
	close(stop)
	if Sleep(context.Background(), stop, 0) {
		t.Fatal("zero delay with closed stop reported a full wait")
	}
	if Sleep(context.Background(), stop, time.Hour) {
		t.Fatal("an hour's delay with closed stop reported a full wait")
	}
}
