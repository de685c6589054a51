package wsload

import (
	"context"
	"time"
)

// Slots is how many slices each group's period is cut into: group g
// publishes in slot g % Slots, so that 100 groups at 20 deltas/s become 10
// groups every 5 ms rather than 100 at once every 50 ms.
const Slots = 10

// Pace calls fn with the groups due, rate times a second per group, for
// d. When fn or the scheduler falls behind, the next call carries every
// group due since, once for each slot missed, so that each group gets
// exactly rate*d deltas, in order, however slow the machine. now is when
// fn was called: the commit time of what it publishes.
func Pace(ctx context.Context, groups, rate int, d time.Duration, fn func(due []int, now time.Time) error) error {
	interval := time.Second / time.Duration(rate*Slots)
	total := int(d / interval)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var due []int
	for k := 0; k < total; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		now := time.Now()
		upto := min(int(now.Sub(start)/interval)+1, total)
		due = due[:0]
		for ; k < upto; k++ {
			for g := k % Slots; g < groups; g += Slots {
				due = append(due, g)
			}
		}
		if len(due) > 0 {
			if err := fn(due, now); err != nil {
				return err
			}
		}
		timer.Reset(time.Until(start.Add(time.Duration(k) * interval)))
	}
	return nil
}

// Published is how many deltas Pace gives each group over d.
func Published(g, rate int, d time.Duration) uint64 {
	interval := time.Second / time.Duration(rate*Slots)
	total := int(d / interval)
	n := total / Slots
	if g%Slots < total%Slots {
		n++
	}
	return uint64(n)
}
