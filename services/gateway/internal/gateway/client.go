package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
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

// client is one WebSocket connection. Its reader goroutine lives as long
// as the connection and handles what the client sends; a writer goroutine
// runs only while there is something to write (frames, a close), so that
// an idle connection costs one parked goroutine. The HTTP handler returns
// after the upgrade: net/http's goroutine and its stack are not kept.
type client struct {
	g      *Gateway
	hub    *hub
	conn   *websocket.Conn
	out    *corkWriter // under conn's write buffer
	p      Principal
	remote string
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc

	mu        sync.Mutex
	queue     []*frame // frames for the writer, at most SendBuffer: full means too slow
	initial   int      // frames of the connection's start (snapshot or resumed deltas) still at the queue's head
	spare     []*frame // the writer's last batch, emptied, for reuse
	started   bool     // the first messages are queued: a writer may run
	writing   bool     // a writer goroutine runs (or the connection is over)
	update    bool     // a requestUpdate waits
	cutCode   websocket.StatusCode
	cutReason string
	closing   atomic.Bool // set under mu by cut: nothing more is queued

	version uint64 // the writer's: last view version the client holds

	// Coarse clock readings (see Gateway.clock) for the sweeper: when the
	// write in progress began (0: none), and when the last one ended.
	writingSince atomic.Int64
	lastWrite    atomic.Int64
	pinging      atomic.Bool

	subsMu sync.Mutex
	subs   map[string]*logSub
}

// Buffers of an upgraded connection: clients send little, so a small read
// buffer; the write buffer is small too, as the writer gathers its
// messages in a pooled buffer (see corkWriter) only while it writes.
const (
	readBufferSize  = 512
	writeBufferSize = 512
)

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
	up := &upgrader{ResponseWriter: w}
	conn, err := websocket.Accept(up, r, &websocket.AcceptOptions{
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
	c := &client{g: g, hub: h, conn: conn, out: up.out, p: p, remote: r.RemoteAddr, ctx: ctx, cancel: cancel}
	c.lastWrite.Store(g.clock.Load())
	initial, err := h.attach(ctx, c, since)
	if err != nil {
		g.log.Warn("client start failed", "tenant", p.Tenant, "err", err)
		h.detach(c)
		g.hubs.release(h)
		cancel()
		conn.Close(websocket.StatusTryAgainLater, "views unavailable")
		return
	}
	g.wg.Add(1)
	if g.closing.Load() {
		// Shutdown listed the clients before this one registered (an
		// upgrade that outlived the HTTP server's shutdown): it would wait
		// for this connection and never close it.
		h.detach(c)
		g.hubs.release(h)
		cancel()
		g.wg.Done()
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	g.metrics.connections.Inc()
	c.mu.Lock()
	// The first messages go before the deltas queued since attach.
	c.queue = append(initial, c.queue...)
	// The start may hold up to WS_RESUME_MAX deltas: they do not count
	// against the send buffer, or a resuming client would be cut as too
	// slow before it could read anything.
	c.initial = len(initial)
	c.started = true
	c.wakeLocked()
	c.mu.Unlock()
	go c.readLoop()
}

// upgrader hands coder/websocket the hijacked connection with buffers of
// our sizes (net/http's 4 KiB ones would be kept for the connection's
// life), writing through a corkWriter.
type upgrader struct {
	http.ResponseWriter
	out *corkWriter
}

func (u *upgrader) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func (u *upgrader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	// What the client sent after its request is already in net/http's
	// buffer: move it into ours, where Accept looks for it.
	var rd io.Reader = conn
	size, n := readBufferSize, brw.Reader.Buffered()
	if n > 0 {
		b, _ := brw.Reader.Peek(n)
		rd, size = io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), max(size, n)
	}
	br := bufio.NewReaderSize(rd, size)
	if n > 0 {
		_, _ = br.Peek(n)
	}
	u.out = &corkWriter{Conn: conn}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(u.out, writeBufferSize)), nil
}

// corkWriter is what a client's write buffer flushes to, and where the
// writer puts its messages. While the writer corks it, what arrives is
// gathered in a pooled buffer and uncork sends it in one write: a client
// with several messages queued costs one system call, and an idle one
// holds no buffer.
//
// The writer frames its messages itself (writeMessage) instead of going
// through websocket.Conn.Write, whose locking and buffering took a quarter
// of the gateway's CPU under load; the connection's own writes are then
// only control frames (ping, pong, close), which coder/websocket builds in
// its write buffer and flushes here whole, so frames never interleave.
type corkWriter struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	closed bool // a close frame went out: no message may follow it
	buf    *[]byte
}

// corkMax is the most gathered before it is written out anyway.
const corkMax = 64 << 10

var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Write takes what coder/websocket flushes: whole control frames.
func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) > 0 && p[0] == 0x88 { // FIN, close
		w.closed = true
		if w.corked {
			// coder/websocket closes the connection right after its close
			// frame: send what was gathered and the frame now, not at uncork.
			bufs := net.Buffers{*w.buf, p}
			*w.buf = (*w.buf)[:0]
			if _, err := bufs.WriteTo(w.Conn); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	if err := w.put(nil, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeMessage writes p as one unfragmented, unmasked text message (RFC
// 6455 section 5.2).
func (w *corkWriter) writeMessage(p []byte) error {
	var h [10]byte
	h[0] = 0x81 // FIN, text
	n := 2
	switch {
	case len(p) <= 125:
		h[1] = byte(len(p))
	case len(p) <= 0xffff:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(len(p)))
		n = 4
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(len(p)))
		n = 10
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return net.ErrClosed
	}
	return w.put(h[:n], p)
}

// put sends head and p, or gathers them while corked. The caller holds mu.
func (w *corkWriter) put(head, p []byte) error {
	if !w.corked {
		if head == nil {
			_, err := w.Conn.Write(p)
			return err
		}
		bufs := net.Buffers{head, p}
		_, err := bufs.WriteTo(w.Conn)
		return err
	}
	b := *w.buf
	if len(b)+len(head)+len(p) > corkMax {
		bufs := net.Buffers{b, head, p}
		_, err := bufs.WriteTo(w.Conn)
		*w.buf = b[:0]
		return err
	}
	b = append(b, head...)
	*w.buf = append(b, p...)
	return nil
}

func (w *corkWriter) cork() {
	w.mu.Lock()
	w.corked = true
	w.buf = corkBuffers.Get().(*[]byte)
	w.mu.Unlock()
}

// uncork writes what was gathered.
func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if b := *w.buf; len(b) > 0 {
		_, err = w.Conn.Write(b)
	}
	w.corked = false
	if cap(*w.buf) <= 2*corkMax {
		*w.buf = (*w.buf)[:0]
		corkBuffers.Put(w.buf)
	}
	w.buf = nil
	return err
}

// push queues f for the client without ever blocking: a client whose queue
// is full is cut off rather than allowed to slow the others; it
// reconnects and resumes. It is false when f will not be sent.
func (c *client) push(f *frame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return false
	}
	if len(c.queue)-c.initial >= c.g.cfg.SendBuffer {
		c.cutLocked(websocket.StatusTryAgainLater, "too slow", cutTooSlow)
		return false
	}
	c.queue = append(c.queue, f)
	c.wakeLocked()
	return true
}

// wakeLocked starts a writer unless one runs. The caller holds c.mu.
func (c *client) wakeLocked() {
	if c.started && !c.writing {
		c.writing = true
		c.g.wg.Add(1)
		go c.writeLoop()
	}
}

// cut makes the writer close the connection with code and reason once it
// has finished the write in progress (the sweeper ends a write that takes
// too long); what is still queued is dropped.
func (c *client) cut(code websocket.StatusCode, reason, label string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cutLocked(code, reason, label)
}

func (c *client) cutLocked(code websocket.StatusCode, reason, label string) {
	if c.closing.Load() {
		return
	}
	c.cutCode, c.cutReason = code, reason
	c.closing.Store(true)
	c.queue, c.initial = nil, 0
	c.g.metrics.cuts.WithLabelValues(label).Inc()
	c.g.log.Debug("closing client", "tenant", c.p.Tenant, "remote", c.remote, "reason", reason)
	c.wakeLocked()
}

// kill ends the connection at once, a write in progress included.
func (c *client) kill(reason, label string) {
	c.cut(websocket.StatusGoingAway, reason, label)
	c.cancel()
	_ = c.conn.CloseNow()
}

// writeLoop writes what is queued, then exits; push starts it again.
func (c *client) writeLoop() {
	defer c.g.wg.Done()
	for {
		c.mu.Lock()
		switch {
		case c.closing.Load():
			c.mu.Unlock()
			if c.cutCode != 0 {
				_ = c.conn.Close(c.cutCode, c.cutReason)
			}
			return // writing stays true: no writer starts again
		case c.update:
			c.update = false
			c.mu.Unlock()
			if !c.sendSnapshot() {
				c.broken()
				return
			}
			continue
		case len(c.queue) == 0:
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue, c.spare = c.spare, nil
		c.initial = 0
		c.mu.Unlock()
		c.writingSince.Store(c.g.clock.Load())
		c.out.cork()
		ok := true
		for _, f := range batch {
			if c.closing.Load() {
				break // a cut wins over queued frames
			}
			if ok = c.deliver(f); !ok {
				break
			}
		}
		if err := c.out.uncork(); err != nil {
			ok = false
		}
		c.writingSince.Store(0)
		c.lastWrite.Store(c.g.clock.Load())
		if !ok {
			c.broken()
			return
		}
		clear(batch)
		c.mu.Lock()
		if cap(batch) <= 16 {
			c.spare = batch[:0]
		}
		c.mu.Unlock()
	}
}

// broken ends a connection whose write failed.
func (c *client) broken() {
	c.mu.Lock()
	c.closing.Store(true)
	c.queue, c.initial = nil, 0
	c.mu.Unlock()
	c.cancel()
	_ = c.conn.CloseNow()
}

// sendSnapshot answers a requestUpdate; false when the connection failed.
func (c *client) sendSnapshot() bool {
	s, err := c.hub.loadSnapshot(c.ctx, c.version)
	switch {
	case err != nil:
		if c.ctx.Err() != nil {
			return false
		}
		c.g.log.Warn("snapshot for requestUpdate", "tenant", c.p.Tenant, "err", err)
		c.push(errorFrame("internal", "snapshot unavailable, retry later", ""))
	case s.version < c.version:
		// Postgres behind what the client holds: the database was
		// replaced under us.
		c.cut(websocket.StatusInternalError, "view version went back", cutInternal)
	default:
		c.version = s.version
		c.writingSince.Store(c.g.clock.Load())
		ok := c.write(s)
		c.writingSince.Store(0)
		c.lastWrite.Store(c.g.clock.Load())
		return ok
	}
	return true
}

// deliver writes f unless it is stale; false when the connection failed.
func (c *client) deliver(f *frame) bool {
	switch f.kind {
	case kindSnapshot, kindResumed:
		c.version = f.version // what the deltas after it continue
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

// write writes f through the cork (see writeLoop) or to the connection.
// A stuck write is ended by kill (CloseNow): no timer per write.
func (c *client) write(f *frame) bool {
	if err := c.out.writeMessage(f.data); err != nil {
		return false
	}
	c.g.metrics.sent[f.kind].Inc()
	return true
}

// end releases what the connection held, once its reader stopped.
func (c *client) end() {
	c.cancel()
	c.mu.Lock()
	c.closing.Store(true)
	c.queue, c.initial = nil, 0
	c.mu.Unlock()
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

// readLoop reads client messages until the connection ends. Malformed ones
// get an error message; beyond the rate limit messages are refused with an
// error, and a client that keeps on is closed (1008).
func (c *client) readLoop() {
	defer c.end()
	cfg := &c.g.cfg
	lim := rate.NewLimiter(rate.Limit(cfg.MessageRate), cfg.MessageBurst)
	refused := 0
	for {
		typ, data, err := c.conn.Read(c.ctx)
		if err != nil {
			return
		}
		if c.closing.Load() {
			continue // only the close handshake matters now
		}
		if !lim.Allow() {
			c.g.metrics.received.WithLabelValues("limited").Inc()
			if refused++; refused >= cfg.MessageBurst {
				c.cut(websocket.StatusPolicyViolation, "rate limit", cutRateLimited)
				continue
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
		c.mu.Lock()
		c.update = true // one pending answers them all
		c.wakeLocked()
		c.mu.Unlock()
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
