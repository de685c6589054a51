package wsload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// SwarmConfig describes a swarm of WebSocket clients.
type SwarmConfig struct {
	// Clients is how many connections to open; client i belongs to group
	// i % Groups (a tenant of the gateway, a group of the baseline).
	Clients int
	Groups  int
	// Target returns the URL and handshake headers (its token) of a client
	// of group g.
	Target func(g int) (url string, h http.Header)
	// Tenant, when set, names group g's tenant (asked once per client): a
	// snapshot or delta of another tenant is counted as foreign and not
	// applied.
	Tenant func(g int) string
	// SourceIPs spreads connections over the source addresses 127.0.0.1 ..
	// 127.0.0.<SourceIPs>, each with its own ephemeral ports (default 16).
	SourceIPs int
	// DialConcurrency is how many handshakes are in flight (default 32).
	DialConcurrency int
}

// Swarm is a set of connected clients that check and time what they receive.
// Each client is a lean WebSocket reader (wsConn, on gobwas/ws) served
// with the others by a few epoll loops (readers): no goroutine or read
// buffer per connection, one reused message buffer, nothing per message
// but the frame's bytes, so that the load generator takes as little as it
// can of the cores the server under test shares with it.
type Swarm struct {
	cfg     SwarmConfig
	clients []*client
	closing atomic.Bool
	readers *readers

	// Latency holds receipt time - committed_at of every delta received.
	Latency   *Histogram
	received  atomic.Int64 // deltas applied
	bytes     atomic.Int64
	firstAt   atomic.Int64 // unix ns of the first delta received
	lastAt    atomic.Int64 // unix ns of the latest delta received
	dropped   atomic.Int64 // connections the server closed or lost
	malformed atomic.Int64
	resyncs   atomic.Int64 // snapshots received after the first
	foreign   atomic.Int64 // messages of another tenant
	closeMu   sync.Mutex
	closes    map[string]int // why connections ended, by close status or error
}

type client struct {
	group  int
	tenant string // cfg.Tenant(group), if set
	conn   *wsConn
	base   uint64        // version of the first snapshot
	last   atomic.Uint64 // version of the last delta or snapshot applied
	n      atomic.Int64  // deltas applied
	gaps   atomic.Int64  // versions skipped
	dups   atomic.Int64  // versions received again or out of order
	done   atomic.Bool   // connection ended
}

// Dial connects cfg.Clients clients and waits for each one's first
// snapshot. It fails if any client cannot connect after a few attempts.
func Dial(ctx context.Context, cfg SwarmConfig) (*Swarm, error) {
	if cfg.Groups <= 0 || cfg.Clients < cfg.Groups {
		return nil, fmt.Errorf("want at least one client per group (%d clients, %d groups)", cfg.Clients, cfg.Groups)
	}
	if cfg.SourceIPs <= 0 {
		cfg.SourceIPs = 16
	}
	if cfg.DialConcurrency <= 0 {
		cfg.DialConcurrency = 32
	}
	s := &Swarm{cfg: cfg, clients: make([]*client, cfg.Clients), Latency: &Histogram{}, closes: map[string]int{}}
	var next atomic.Int64
	netDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		ip := net.IPv4(127, 0, 0, byte(1+next.Add(1)%int64(cfg.SourceIPs)))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		return d.DialContext(ctx, network, addr)
	}
	jobs := make(chan int)
	errs := make(chan error, cfg.DialConcurrency)
	var wg sync.WaitGroup
	for range cfg.DialConcurrency {
		wg.Go(func() {
			for i := range jobs {
				c, err := s.dial(ctx, netDial, i%cfg.Groups)
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", i, err)
					return
				}
				s.clients[i] = c
			}
		})
	}
	var err error
feed:
	for i := range cfg.Clients {
		select {
		case jobs <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.readers, err = newReaders(s); err != nil {
		s.Close()
		return nil, err
	}
	for i, c := range s.clients {
		if err := s.readers.add(i, c); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.readers.start()
	return s, nil
}

// dial connects one client and reads its snapshot, retrying a refused or
// reset handshake (a full accept queue) or a connection that ends before
// its snapshot a few times; a refused handshake (an HTTP status) or a
// first message that breaks the protocol is not retried.
func (s *Swarm) dial(ctx context.Context, netDial func(context.Context, string, string) (net.Conn, error), g int) (*client, error) {
	url, h := s.cfg.Target(g)
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var conn *wsConn
		conn, err = dialWS(ctx, url, h, netDial)
		if err != nil {
			if errors.As(err, new(errHandshake)) {
				return nil, err // not worth retrying
			}
			continue
		}
		c := &client{group: g, conn: conn}
		if s.cfg.Tenant != nil {
			c.tenant = s.cfg.Tenant(g)
		}
		if err = conn.nextCtx(ctx); err != nil {
			conn.Close()
			if errors.As(err, new(ws.ProtocolError)) {
				return nil, fmt.Errorf("first message: %w", err)
			}
			continue
		}
		f, tenant, err := parseFrame(conn.msg)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("first message: %w", err)
		}
		if f.Type != "snapshot" {
			conn.Close()
			return nil, fmt.Errorf("first message is %q, want a snapshot", f.Type)
		}
		if s.isForeign(c, f, tenant) {
			conn.Close()
			return nil, fmt.Errorf("a client of group %d got the snapshot of tenant %q", g, tenant)
		}
		c.base = f.Version
		c.last.Store(f.Version)
		if cap(conn.msg) > keepBuffer {
			conn.msg = nil // deltas need far less than a snapshot
		}
		return c, nil
	}
	return nil, fmt.Errorf("dial %s: %w", url, err)
}

// consume handles bytes read from c at now: every message they complete
// is checked (handle). A frame that breaks the protocol counts as
// malformed and ends the connection; consume then reports false.
func (s *Swarm) consume(c *client, p []byte, now time.Time) bool {
	for len(p) > 0 {
		rest, done, err := c.conn.parse(p)
		if err != nil {
			s.end(c, err)
			return false
		}
		if done {
			s.handle(c, c.conn.msg, now)
			if cap(c.conn.msg) > keepBuffer {
				c.conn.msg = nil // deltas need far less than a snapshot
			}
		}
		p = rest
	}
	return true
}

// end records why c ended, unless the swarm is closing, and closes it.
func (s *Swarm) end(c *client, err error) {
	if !s.closing.Load() {
		var ce *closeError
		switch {
		case errors.As(err, &ce):
			s.ended(fmt.Sprintf("closed %d %s", ce.code, ce.reason))
		case errors.As(err, new(ws.ProtocolError)):
			s.malformed.Add(1)
			s.ended("error: " + err.Error())
		default:
			s.ended("error: " + err.Error())
		}
	}
	_ = c.conn.Close()
	c.conn.msg = nil // a dead connection keeps no buffer
	c.done.Store(true)
}

// handle checks a message of c received at now. Messages are read into
// the connection's buffer, which it reuses: a fresh slice per message
// would make the clients' garbage collector, not the server, the
// bottleneck.
func (s *Swarm) handle(c *client, msg []byte, now time.Time) {
	f, tenant, err := parseFrame(msg)
	if err != nil {
		s.malformed.Add(1)
		return
	}
	s.bytes.Add(int64(len(msg)))
	if s.isForeign(c, f, tenant) {
		s.foreign.Add(1)
		return
	}
	switch f.Type {
	case "delta":
		last := c.last.Load()
		if f.Version <= last {
			c.dups.Add(1)
			return
		}
		if f.Version > last+1 {
			c.gaps.Add(int64(f.Version - last - 1))
		}
		c.last.Store(f.Version)
		c.n.Add(1)
		s.received.Add(1)
		ns := now.UnixNano()
		s.firstAt.CompareAndSwap(0, ns)
		s.lastAt.Store(ns)
		s.Latency.Add(now.Sub(f.CommittedAt))
	case "snapshot":
		// Unasked: the server made this client start over.
		s.resyncs.Add(1)
		c.last.Store(f.Version)
	}
}

// isForeign reports whether f, of the given tenant, is a snapshot or delta
// of another tenant than c's.
func (s *Swarm) isForeign(c *client, f Frame, tenant []byte) bool {
	return s.cfg.Tenant != nil && (f.Type == "delta" || f.Type == "snapshot") && string(tenant) != c.tenant
}

func (s *Swarm) ended(why string) {
	s.dropped.Add(1)
	s.closeMu.Lock()
	s.closes[why]++
	s.closeMu.Unlock()
}

// Delivered is how many deltas all clients have received so far.
func (s *Swarm) Delivered() int64 { return s.received.Load() }

// WaitCaughtUp waits until every client still connected holds version
// final(g) of its group, ctx ends, or nothing has arrived for stall (the
// rest is then counted as missing). It returns the time of the last delta
// received.
func (s *Swarm) WaitCaughtUp(ctx context.Context, final func(g int) uint64, stall time.Duration) time.Time {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	seen, since := s.received.Load(), time.Now()
	for {
		behind := false
		for _, c := range s.clients {
			if !c.done.Load() && c.last.Load() < final(c.group) {
				behind = true
				break
			}
		}
		if !behind {
			break
		}
		select {
		case <-ctx.Done():
			return time.Unix(0, s.lastAt.Load())
		case <-tick.C:
		}
		if n := s.received.Load(); n != seen {
			seen, since = n, time.Now()
		} else if time.Since(since) > stall {
			break
		}
	}
	return time.Unix(0, s.lastAt.Load())
}

// Result sums up what the clients received.
type Result struct {
	Clients   int
	Delivered int64 // deltas received in order or after a gap
	Expected  int64 // deltas each client should have received, summed
	Missing   int64 // Expected - Delivered
	Gaps      int64 // versions a client skipped
	Dups      int64 // versions received twice or out of order
	Dropped   int64 // connections that ended before the swarm closed them
	Resyncs   int64 // unasked snapshots
	Malformed int64
	Foreign   int64 // snapshots or deltas of another tenant
	Bytes     int64
	Closes    map[string]int // why dropped connections ended
	First     time.Time      // first delta received
	Last      time.Time      // last delta received
}

// Result reports what the clients received, given each group's last version.
func (s *Swarm) Result(final func(g int) uint64) Result {
	r := Result{Clients: len(s.clients), Dropped: s.dropped.Load(), Resyncs: s.resyncs.Load(),
		Malformed: s.malformed.Load(), Foreign: s.foreign.Load(), Bytes: s.bytes.Load(), Closes: map[string]int{},
		First: time.Unix(0, s.firstAt.Load()), Last: time.Unix(0, s.lastAt.Load())}
	for _, c := range s.clients {
		r.Delivered += c.n.Load()
		r.Expected += int64(final(c.group) - c.base)
		r.Gaps += c.gaps.Load()
		r.Dups += c.dups.Load()
	}
	r.Missing = r.Expected - r.Delivered
	s.closeMu.Lock()
	for k, v := range s.closes {
		r.Closes[k] = v
	}
	s.closeMu.Unlock()
	return r
}

// Close stops the readers and disconnects every client.
func (s *Swarm) Close() {
	s.closing.Store(true)
	if s.readers != nil {
		s.readers.halt()
	}
	for _, c := range s.clients {
		if c != nil {
			_ = c.conn.Close()
			c.done.Store(true)
		}
	}
	if s.readers != nil {
		s.readers.wait()
	}
}
