package gateway

import (
	"context"
	"sync"
	"time"
)

// hubs holds one hub per tenant with connected clients: created on the
// tenant's first connection, stopped HubIdle after its last one left.
type hubs struct {
	g    *Gateway
	base context.Context // the gateway's lifetime

	mu sync.Mutex
	m  map[string]*hubEntry
}

type hubEntry struct {
	ready chan struct{} // closed once h or err is set
	h     *hub
	err   error
	refs  int         // connections using the hub
	idle  *time.Timer // pending stop after the last connection left
}

func newHubs(base context.Context, g *Gateway) *hubs {
	return &hubs{g: g, base: base, m: map[string]*hubEntry{}}
}

// acquire returns the tenant's hub, starting it if needed; every acquire
// is paired with a release.
func (r *hubs) acquire(ctx context.Context, tenant string) (*hub, error) {
	r.mu.Lock()
	e := r.m[tenant]
	if e == nil {
		e = &hubEntry{ready: make(chan struct{})}
		r.m[tenant] = e
		e.refs++
		r.mu.Unlock()
		// Started outside the lock: other tenants' connections do not wait
		// for this one's Postgres read; this tenant's wait on ready.
		h, err := startHub(r.base, r.g, tenant)
		r.mu.Lock()
		e.h, e.err = h, err
		if err != nil {
			delete(r.m, tenant)
		}
		close(e.ready)
		r.mu.Unlock()
		return h, err
	}
	e.refs++
	if e.idle != nil {
		e.idle.Stop()
		e.idle = nil
	}
	r.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		r.releaseEntry(tenant, e)
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.h, nil
}

// release gives back a hub acquire returned.
func (r *hubs) release(h *hub) {
	r.mu.Lock()
	e := r.m[h.tenant]
	r.mu.Unlock()
	if e != nil && e.h == h {
		r.releaseEntry(h.tenant, e)
	}
}

func (r *hubs) releaseEntry(tenant string, e *hubEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.refs--; e.refs > 0 || r.m[tenant] != e {
		return
	}
	e.idle = time.AfterFunc(r.g.cfg.HubIdle, func() {
		r.mu.Lock()
		if e.refs > 0 || r.m[tenant] != e {
			r.mu.Unlock()
			return
		}
		delete(r.m, tenant)
		r.mu.Unlock()
		<-e.ready
		if e.h != nil {
			e.h.stop()
			r.g.log.Debug("hub stopped", "tenant", tenant)
		}
	})
}

// all returns the running hubs.
func (r *hubs) all() []*hub {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*hub, 0, len(r.m))
	for _, e := range r.m {
		if e.h != nil {
			out = append(out, e.h)
		}
	}
	return out
}
