package wsload

import (
	"sync/atomic"
	"time"
)

// Histogram counts latencies: 10 µs buckets up to 1 s, 1 ms buckets up to
// 100 s, and one bucket beyond. Clients on every core add to it at once,
// so its counters are atomic and it never allocates.
type Histogram struct {
	fine   [100_000]atomic.Int64 // [0, 1 s) by 10 µs
	coarse [99_000]atomic.Int64  // [1 s, 100 s) by 1 ms
	over   atomic.Int64
	max    atomic.Int64 // ns
}

// Add counts one latency; a negative one (clock steps) counts as zero.
func (h *Histogram) Add(d time.Duration) {
	d = max(d, 0)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
	switch {
	case d < time.Second:
		h.fine[d/(10*time.Microsecond)].Add(1)
	case d < 100*time.Second:
		h.coarse[(d-time.Second)/time.Millisecond].Add(1)
	default:
		h.over.Add(1)
	}
}

// Count is how many latencies were added.
func (h *Histogram) Count() int64 {
	n := h.over.Load()
	for i := range h.fine {
		n += h.fine[i].Load()
	}
	for i := range h.coarse {
		n += h.coarse[i].Load()
	}
	return n
}

// Max is the largest latency added.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the upper edge of the bucket holding quantile q (0..1),
// so it errs on the slow side by at most one bucket.
func (h *Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total-1)) + 1
	var n int64
	for i := range h.fine {
		if n += h.fine[i].Load(); n >= rank {
			return time.Duration(i+1) * 10 * time.Microsecond
		}
	}
	for i := range h.coarse {
		if n += h.coarse[i].Load(); n >= rank {
			return time.Second + time.Duration(i+1)*time.Millisecond
		}
	}
	return h.Max()
}
