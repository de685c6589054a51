package pbxsim

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func between(lo, hi time.Duration) time.Duration {
	return lo + rand.N(hi-lo+1)
}

// RunDemo drives endless plausible PBX activity until ctx is done:
// extensions register, then random calls between idle extensions ring for
// 1-3 s and talk for 5-20 s; some are busy, unanswered or go to Echo.
// Calls still up when ctx ends are hung up before RunDemo returns.
func (s *Server) RunDemo(ctx context.Context) {
	var (
		mu   sync.Mutex
		busy = map[string]bool{}
		wg   sync.WaitGroup
	)
	defer wg.Wait()
	exts := s.cfg.Endpoints
	for _, e := range exts {
		s.Register(e)
		if !sleepCtx(ctx, between(200*time.Millisecond, 600*time.Millisecond)) {
			return
		}
	}
	s.RegisterTrunk()
	lastRefresh := time.Now()

	// claim picks n distinct idle extensions, or nil.
	claim := func(n int) []string {
		mu.Lock()
		defer mu.Unlock()
		var idle []string
		for _, e := range exts {
			if !busy[e] {
				idle = append(idle, e)
			}
		}
		if len(idle) < n {
			return nil
		}
		rand.Shuffle(len(idle), func(i, j int) { idle[i], idle[j] = idle[j], idle[i] })
		for _, e := range idle[:n] {
			busy[e] = true
		}
		return idle[:n]
	}
	release := func(es ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range es {
			delete(busy, e)
		}
	}

	for sleepCtx(ctx, between(time.Second, 4*time.Second)) {
		// Contacts expire after 300 s; refresh like real phones do.
		if time.Since(lastRefresh) > 120*time.Second {
			for _, e := range exts {
				s.Register(e)
			}
			lastRefresh = time.Now()
		}
		r := rand.IntN(100)
		if r < 20 {
			p := claim(1)
			if p == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer release(p...)
				exten := "600"
				if rand.IntN(4) == 0 {
					exten = "700"
				}
				c := s.CallApp(p[0], exten)
				sleepCtx(ctx, between(5*time.Second, 20*time.Second))
				c.Hangup()
			}()
			continue
		}
		p := claim(2)
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release(p...)
			c := s.Dial(p[0], p[1])
			switch {
			case r < 35:
				if sleepCtx(ctx, between(200*time.Millisecond, time.Second)) {
					c.Busy()
				}
			case r < 45:
				if sleepCtx(ctx, between(6*time.Second, 10*time.Second)) {
					c.NoAnswer()
				}
			default:
				if sleepCtx(ctx, between(time.Second, 3*time.Second)) {
					c.Answer()
					sleepCtx(ctx, between(5*time.Second, 20*time.Second))
				}
			}
			c.Hangup() // no-op if already ended
		}()
	}
}
