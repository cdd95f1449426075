package link

import (
	"time"
)

// backoff is a capped exponential delay: min, 2*min, ... max. Not safe for
// concurrent use; each retry loop owns one.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

// next returns the delay before the next attempt and doubles it.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

// reset forgets past failures.
func (b *backoff) reset() { b.cur = 0 }
