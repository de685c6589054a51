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
// 1-3 s and talk for 5-20 s; some are busy or unanswered, go to Echo, the
// Stasis app or the support queue, are put on hold, or are transferred
// (blind or attended). Calls still up when ctx ends are hung up before
// RunDemo returns.
func (s *Server) RunDemo(ctx context.Context) {
	var (
		mu   sync.Mutex
		busy = map[string]bool{}
		wg   sync.WaitGroup
	)
	defer wg.Wait()
	exts := s.demoPhones()
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
		var p []string
		switch {
		case r < 25:
			p = claim(1)
		case r >= 55 && r < 68:
			p = claim(3) // transfers need a third phone
		default:
			p = claim(2)
		}
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release(p...)
			s.demoCall(ctx, r, p, between)
		}()
	}
}

// demoCall plays one random call scenario between the claimed phones p;
// r picks the scenario, pace the waits (between in the demo). Every
// call is over when it returns.
func (s *Server) demoCall(ctx context.Context, r int, p []string, pace func(lo, hi time.Duration) time.Duration) {
	talk := func() time.Duration { return pace(5*time.Second, 20*time.Second) }
	var c *Call
	defer func() {
		if c != nil {
			c.Hangup() // no-op if already ended
		}
	}()
	switch {
	case r < 15: // Echo or the Stasis app
		exten := "600"
		if rand.IntN(4) == 0 {
			exten = "700"
		}
		c = s.CallApp(p[0], exten)
		sleepCtx(ctx, talk())
	case r < 25: // the support queue: answered by a member, or abandoned
		c = s.CallQueue(p[0])
		if !sleepCtx(ctx, pace(time.Second, 4*time.Second)) {
			return
		}
		if rand.IntN(5) > 0 {
			c.Answer()
			sleepCtx(ctx, talk())
		}
	case r < 35:
		c = s.Dial(p[0], p[1])
		if sleepCtx(ctx, pace(200*time.Millisecond, time.Second)) {
			c.Busy()
		}
	case r < 42:
		c = s.Dial(p[0], p[1])
		if sleepCtx(ctx, pace(6*time.Second, 10*time.Second)) {
			c.NoAnswer()
		}
	case r < 55: // answered, put on hold for a while, a digit or two
		c = s.Dial(p[0], p[1])
		if !sleepCtx(ctx, pace(time.Second, 3*time.Second)) {
			return
		}
		c.Answer()
		if !sleepCtx(ctx, talk()/2) {
			return
		}
		c.Hold(p[1])
		sleepCtx(ctx, pace(2*time.Second, 6*time.Second))
		c.Unhold(p[1])
		c.SendDTMF(p[0], "1")
		sleepCtx(ctx, talk()/2)
	case r < 62: // blind transfer to the third phone
		c = s.Dial(p[0], p[1])
		if !sleepCtx(ctx, pace(time.Second, 3*time.Second)) {
			return
		}
		c.Answer()
		if !sleepCtx(ctx, talk()/2) {
			return
		}
		if nc := c.BlindTransfer(p[1], p[2]); nc != nil {
			c = nc
			if !sleepCtx(ctx, pace(time.Second, 3*time.Second)) {
				return
			}
			c.Answer()
			sleepCtx(ctx, talk())
		}
	case r < 68: // attended transfer to the third phone
		c = s.Dial(p[0], p[1])
		if !sleepCtx(ctx, pace(time.Second, 3*time.Second)) {
			return
		}
		c.Answer()
		if !sleepCtx(ctx, talk()/2) {
			return
		}
		tr := c.StartAttendedTransfer(p[1], p[2])
		if tr == nil {
			return
		}
		defer tr.Consult().Hangup()
		if !sleepCtx(ctx, pace(time.Second, 3*time.Second)) {
			return
		}
		tr.Consult().Answer()
		if !sleepCtx(ctx, pace(2*time.Second, 5*time.Second)) {
			return
		}
		if nc := tr.Complete(); nc != nil {
			c = nc
			sleepCtx(ctx, talk())
		}
	default:
		c = s.Dial(p[0], p[1])
		if sleepCtx(ctx, pace(time.Second, 3*time.Second)) {
			c.Answer()
			sleepCtx(ctx, talk())
		}
	}
}

// demoPhones are the phones the demo uses: the first 50 endpoints.
func (s *Server) demoPhones() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.order[:min(len(s.order), 50)] {
		out = append(out, e.name)
	}
	return out
}
