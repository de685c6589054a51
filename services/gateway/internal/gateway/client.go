package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// maxClientMessage is the largest message a client may send; a bigger one
// closes the connection (1009).
const maxClientMessage = 8 << 10

// client is one WebSocket connection. It lives in two goroutines: the
// writer, the only one that writes messages, takes frames from send in
// order; the reader handles what the client sends. The HTTP handler
// returns after the upgrade, so that net/http's goroutine and its stack
// are not kept for the connection's life.
type client struct {
	g      *Gateway
	hub    *hub
	conn   *websocket.Conn
	p      Principal
	remote string

	send   chan *frame   // frames for the writer; full means too slow
	update chan struct{} // a requestUpdate is pending
	quit   chan struct{} // closed by cut: the writer closes the connection
	ctx    context.Context
	cancel context.CancelFunc // ends the connection at once

	cutOnce   sync.Once
	cutCode   websocket.StatusCode
	cutReason string

	// Coarse clock readings (see Gateway.clock) for the sweeper: when the
	// write in progress began (0: none), and when the last one ended.
	writingSince atomic.Int64
	lastWrite    atomic.Int64
	pinging      atomic.Bool

	version uint64 // the writer's: last view version the client holds

	subsMu sync.Mutex
	subs   map[string]*logSub
}

// handleWS upgrades to a WebSocket (GET ws[?since=N]) and serves the
// principal's tenant on it.
func (g *Gateway) handleWS(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	var since *uint64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			badRequest(w, "since: want a view version (a non-negative integer)")
			return
		}
		since = &v
	}
	h, err := g.hubs.acquire(r.Context(), p.Tenant)
	if err != nil {
		g.log.Warn("tenant hub unavailable", "tenant", p.Tenant, "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "views unavailable, retry later")
		return
	}
	// The offered "bearer.<token>" is never selected: only pbxpulse.v1 is,
	// so the token is not echoed back.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{wsProtocol},
		OriginPatterns:  g.origins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		g.hubs.release(h)
		return // Accept has answered the request
	}
	conn.SetReadLimit(maxClientMessage)
	ctx, cancel := context.WithCancel(g.base)
	c := &client{g: g, hub: h, conn: conn, p: p, remote: r.RemoteAddr,
		send: make(chan *frame, g.cfg.SendBuffer), update: make(chan struct{}, 1), quit: make(chan struct{}),
		ctx: ctx, cancel: cancel}
	now := g.clock.Load()
	c.lastWrite.Store(now)
	initial, version, err := h.attach(ctx, c, since)
	if err != nil {
		g.log.Warn("client start failed", "tenant", p.Tenant, "err", err)
		h.detach(c)
		g.hubs.release(h)
		cancel()
		conn.Close(websocket.StatusTryAgainLater, "views unavailable")
		return
	}
	c.version = version
	g.metrics.connections.Inc()
	g.wg.Add(1)
	go c.readLoop()
	go c.writeLoop(initial)
}

// push queues f for the client without ever blocking: a client whose queue
// is full is cut off rather than allowed to slow the others; it
// reconnects and resumes.
func (c *client) push(f *frame) bool {
	select {
	case c.send <- f:
		return true
	default:
		c.cut(websocket.StatusTryAgainLater, "too slow", cutTooSlow)
		return false
	}
}

// cut makes the writer close the connection with code and reason once it
// has finished the write in progress (the sweeper ends a write that takes
// too long).
func (c *client) cut(code websocket.StatusCode, reason, label string) {
	c.cutOnce.Do(func() {
		c.cutCode, c.cutReason = code, reason
		c.g.metrics.cuts.WithLabelValues(label).Inc()
		c.g.log.Debug("closing client", "tenant", c.p.Tenant, "remote", c.remote, "reason", reason)
		close(c.quit)
	})
}

// kill ends the connection at once, a write in progress included.
func (c *client) kill(reason, label string) {
	c.cut(websocket.StatusGoingAway, reason, label)
	c.cancel()
	_ = c.conn.CloseNow()
}

func (c *client) writeLoop(initial []*frame) {
	defer c.finish()
	for _, f := range initial {
		if !c.write(f) {
			return
		}
	}
	for {
		// A cut wins over queued frames.
		select {
		case <-c.quit:
			_ = c.conn.Close(c.cutCode, c.cutReason)
			return
		default:
		}
		select {
		case <-c.quit:
			_ = c.conn.Close(c.cutCode, c.cutReason)
			return
		case <-c.ctx.Done():
			return
		case f := <-c.send:
			if !c.deliver(f) {
				return
			}
		case <-c.update:
			s, err := c.hub.loadSnapshot(c.ctx, c.version)
			switch {
			case err != nil:
				if c.ctx.Err() != nil {
					return
				}
				c.g.log.Warn("snapshot for requestUpdate", "tenant", c.p.Tenant, "err", err)
				c.push(errorFrame("internal", "snapshot unavailable, retry later", ""))
			case s.version < c.version:
				// Postgres behind what the client holds: the database
				// was replaced under us.
				c.cut(websocket.StatusInternalError, "view version went back", cutInternal)
			default:
				c.version = s.version
				if !c.write(s) {
					return
				}
			}
		}
	}
}

// deliver writes f unless it is stale; false when the connection failed.
func (c *client) deliver(f *frame) bool {
	switch f.kind {
	case kindDelta:
		if f.version <= c.version {
			return true // already in the snapshot or the resumed deltas
		}
		if f.version != c.version+1 {
			// Cannot happen while the hub keeps its invariant; never let a
			// client apply out of order if it does.
			c.cut(websocket.StatusInternalError, "delta gap", cutInternal)
			return true
		}
		c.version = f.version
	case kindLogs, kindLogsSubscribed:
		if f.sub != nil && f.sub.ended.Load() {
			return true
		}
	case kindClose:
		label := cutHistoryGap
		if f.reason == "projection rebuilt" {
			label = cutRebuilt
		}
		c.cut(f.code, f.reason, label)
		return true
	}
	return c.write(f)
}

func (c *client) write(f *frame) bool {
	c.writingSince.Store(c.g.clock.Load())
	// No per-write context: a stuck write is ended by kill (CloseNow),
	// which spares every write a timer.
	err := c.conn.Write(context.Background(), websocket.MessageText, f.data)
	c.writingSince.Store(0)
	c.lastWrite.Store(c.g.clock.Load())
	if err != nil {
		return false
	}
	c.g.metrics.sent[f.kind].Inc()
	return true
}

// finish releases what the connection held.
func (c *client) finish() {
	c.cancel()
	_ = c.conn.CloseNow()
	c.stopLogs()
	c.hub.detach(c)
	c.g.hubs.release(c.hub)
	c.g.metrics.connections.Dec()
	c.g.wg.Done()
}

// ping checks an idle connection (see Gateway.sweep).
func (c *client) ping(timeout context.Context) {
	err := c.conn.Ping(timeout)
	c.lastWrite.Store(c.g.clock.Load())
	c.pinging.Store(false)
	if err != nil && c.ctx.Err() == nil {
		c.kill("ping timeout", cutPing)
	}
}

// clientMessage is what a client may send.
type clientMessage struct {
	Type    string        `json:"type"`
	ID      string        `json:"id"`
	Filter  logFilterSpec `json:"filter"`
	Backlog *int          `json:"backlog"`
}

// clientTypes are the message types a client may send, and the labels of
// received messages that were not handled.
var clientTypes = []string{"requestUpdate", "ping", "subscribeLogs", "unsubscribeLogs", "invalid", "limited"}

var pongFrame = &frame{kind: kindPong, data: []byte(`{"type":"pong"}`)}

// readLoop reads client messages. Malformed ones get an error message;
// beyond the rate limit messages are refused with an error, and a client
// that keeps on is closed (1008).
func (c *client) readLoop() {
	defer func() {
		select {
		case <-c.quit: // the writer is closing it
		default:
			c.cancel() // the client left, or the connection broke
		}
	}()
	cfg := &c.g.cfg
	lim := rate.NewLimiter(rate.Limit(cfg.MessageRate), cfg.MessageBurst)
	refused := 0
	for {
		typ, data, err := c.conn.Read(c.ctx)
		if err != nil {
			return
		}
		if !lim.Allow() {
			c.g.metrics.received.WithLabelValues("limited").Inc()
			if refused++; refused >= cfg.MessageBurst {
				c.cut(websocket.StatusPolicyViolation, "rate limit", cutRateLimited)
				return
			}
			c.push(errorFrame("rate_limited", "too many messages: at most "+strconv.FormatFloat(cfg.MessageRate, 'f', -1, 64)+" a second", ""))
			continue
		}
		c.handle(typ, data)
	}
}

func (c *client) handle(typ websocket.MessageType, data []byte) {
	var m clientMessage
	if typ != websocket.MessageText || json.Unmarshal(data, &m) != nil || m.Type == "" {
		c.g.metrics.received.WithLabelValues("invalid").Inc()
		c.push(errorFrame("invalid", "malformed message: want a JSON object with a type", ""))
		return
	}
	switch m.Type {
	case "requestUpdate":
		select {
		case c.update <- struct{}{}:
		default: // one is pending already
		}
	case "ping":
		c.push(pongFrame)
	case "subscribeLogs":
		c.subscribeLogs(m)
	case "unsubscribeLogs":
		c.unsubscribeLogs(m.ID)
	default:
		c.g.metrics.received.WithLabelValues("invalid").Inc()
		c.push(errorFrame("invalid", "unknown message type", ""))
		return
	}
	c.g.metrics.received.WithLabelValues(m.Type).Inc()
}

// errorFrame encodes an error message; id names the subscription it
// concerns, if any.
func errorFrame(code, msg, id string) *frame {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
		ID      string `json:"id,omitempty"`
	}{"error", code, msg, id})
	return &frame{kind: kindError, data: b}
}

var subIDRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
