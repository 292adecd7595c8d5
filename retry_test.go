package eventstream_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/eventstream-go/eventstream"
)

func TestRetryPolicyDelay(t *testing.T) {
	exp := &eventstream.RetryPolicy{BackoffStrategy: eventstream.BackoffExponential, InitialDelay: time.Second, Multiplier: 10}
	assert.Equal(t, time.Duration(0), exp.Delay(0))
	assert.Equal(t, time.Second, exp.Delay(1))
	assert.Equal(t, 100*time.Second, exp.Delay(3))
	assert.Equal(t, time.Duration(math.MaxInt64), exp.Delay(1000), "no cap: saturates instead of overflowing")
	assert.Equal(t, time.Duration(math.MaxInt64), exp.Delay(math.MaxInt))
	capped := *exp
	capped.MaxDelay = time.Minute
	assert.Equal(t, time.Minute, capped.Delay(50))
	zeroMult := &eventstream.RetryPolicy{BackoffStrategy: eventstream.BackoffExponential, InitialDelay: time.Millisecond}
	assert.Equal(t, 4*time.Millisecond, zeroMult.Delay(3), "Multiplier 0 means 2")
	fixed := &eventstream.RetryPolicy{InitialDelay: 5 * time.Millisecond, MaxDelay: 0}
	assert.Equal(t, 5*time.Millisecond, fixed.Delay(9), "MaxDelay 0 is no cap, not zero delay")
}

func TestRetryPolicyValidate(t *testing.T) {
	require.NoError(t, eventstream.DefaultRetryPolicy().Validate())
	bad := []eventstream.RetryPolicy{
		{MaxRetries: -1},
		{InitialDelay: -1},
		{MaxDelay: -1},
		{InitialDelay: time.Second, MaxDelay: time.Millisecond},
		{BackoffStrategy: eventstream.BackoffExponential, Multiplier: 0.5},
		{BackoffStrategy: eventstream.BackoffExponential, Multiplier: math.NaN()},
		{BackoffStrategy: eventstream.BackoffExponential, Multiplier: math.Inf(1)},
		{BackoffStrategy: 9},
		{Jitter: 2},
	}
	for _, p := range bad {
		err := p.Validate()
		require.ErrorIs(t, err, eventstream.ErrInvalidRetryPolicy, "%+v", p)
	}
	var nilPolicy *eventstream.RetryPolicy
	require.ErrorIs(t, nilPolicy.Validate(), eventstream.ErrInvalidRetryPolicy)
}

func TestPermanent(t *testing.T) {
	base := errors.New("x")
	assert.Nil(t, eventstream.Permanent(nil))
	assert.True(t, eventstream.IsPermanent(eventstream.Permanent(base)))
	assert.ErrorIs(t, eventstream.Permanent(base), base)
	assert.False(t, eventstream.IsPermanent(base))
	assert.True(t, eventstream.IsPermanent(eventstream.ErrDecode))
}
