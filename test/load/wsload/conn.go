package wsload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Sizes and limits of a client connection.
const (
	// readBufferSize is the bufio.Reader of a connection's handshake and
	// first message (a poller reads it after that, into a buffer its
	// connections share).
	readBufferSize = 4 << 10
	// readLimit bounds a message, all its frames together (snapshots).
	readLimit = 16 << 20
	// keepBuffer is the largest message buffer kept for the next message:
	// a snapshot's is dropped, deltas need far less.
	keepBuffer = 16 << 10
	// handshakeTimeout only keeps a server that never answers from
	// hanging the swarm.
	handshakeTimeout = 30 * time.Second
	// controlWriteTimeout bounds writing a pong or a close, as
	// coder/websocket does.
	controlWriteTimeout = 5 * time.Second
)

// wsConn is the client end of a WebSocket (RFC 6455, no extensions), as
// lean as a load generator's should be. Until its first message (the
// snapshot) it is read with next, through the bufio.Reader the handshake
// left; the swarm then hands it to a poller (poll_linux.go), which owns
// its socket, reads it into a buffer the poller's connections share and
// feeds the bytes to parse: no goroutine, timer, context or read buffer
// per connection, and one read syscall per readiness. Only the reader
// (next, or the poller) parses; write may be called from any goroutine.
type wsConn struct {
	conn net.Conn // until handed to a poller, which may close it
	br   *bufio.Reader
	hdr  [ws.MaxHeaderSize]byte // scratch for ws.ReadHeaderBuffer
	msg  []byte                 // the last message read, or the one being read
	wmu  sync.Mutex             // guards w
	w    socket                 // conn, or what the poller made of it

	// What parse keeps between reads.
	state ws.State // ws.StateFragmented inside a fragmented message
	need  int64    // payload bytes of the current data frame still to come
	fin   bool     // the current data frame ends its message
	// pend holds the start of a header, or of a control frame (header and
	// at most 125 bytes of payload), a read split; pr reads it.
	pend  [ws.MaxHeaderSize + 125]byte
	npend int
	pr    bytes.Reader
}

// socket is what wsConn writes to and closes: the net.Conn, or the
// poller's own descriptor of its socket.
type socket interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
	Close() error
}

// closeError is a close frame the server sent.
type closeError struct {
	code   ws.StatusCode
	reason string
}

func (e *closeError) Error() string { return fmt.Sprintf("closed %d %s", e.code, e.reason) }

// errHandshake is a handshake the server refused: not worth retrying.
type errHandshake struct{ status int }

func (e errHandshake) Error() string {
	return fmt.Sprintf("handshake: %d %s", e.status, http.StatusText(e.status))
}

// dialWS connects to url with the handshake headers h, dialling TCP with
// netDial. Sec-WebSocket-Protocol values in h (a token may travel as the
// subprotocol "bearer.<token>") are offered as subprotocols, so the one
// the server selects is checked against them.
func dialWS(ctx context.Context, url string, h http.Header, netDial func(context.Context, string, string) (net.Conn, error)) (*wsConn, error) {
	var protocols []string
	var rest http.Header
	for k, vs := range h {
		if !strings.EqualFold(k, "Sec-WebSocket-Protocol") {
			if rest == nil {
				rest = http.Header{}
			}
			rest[k] = vs
			continue
		}
		for _, v := range vs {
			for p := range strings.SplitSeq(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					protocols = append(protocols, p)
				}
			}
		}
	}
	d := ws.Dialer{
		ReadBufferSize: readBufferSize,
		Timeout:        handshakeTimeout,
		Protocols:      protocols,
		NetDial:        netDial,
	}
	if rest != nil {
		d.Header = ws.HandshakeHeaderHTTP(rest)
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		if se := ws.StatusError(0); errors.As(err, &se) {
			return nil, errHandshake{status: int(se)}
		}
		return nil, err
	}
	// Frames the server sent right behind its handshake answer are in br
	// (a reader of readBufferSize bytes); it then stays the connection's.
	if br == nil {
		br = bufio.NewReaderSize(conn, readBufferSize)
	}
	return &wsConn{conn: conn, br: br, w: conn}, nil
}

// nextCtx is next, given up when ctx ends (for the first message: the
// reader loop needs no context).
func (c *wsConn) nextCtx(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Unix(1, 0)) })
	err := c.next()
	if !stop() {
		// The deadline is set, or about to be: the connection is spent.
		return ctx.Err()
	}
	return err
}

// next reads the next data message, whole, into c.msg (which it reuses):
// its frames are joined and pings answered on the way. It fails with a
// *closeError on a close frame (answered), with a ws.ProtocolError on a
// frame a server must not send (a masked frame, reserved bits or opcodes,
// a continuation out of place, a bad close frame: the connection is then
// failed with 1002), and with any read error.
func (c *wsConn) next() error {
	if cap(c.msg) > keepBuffer {
		c.msg = nil
	}
	c.msg = c.msg[:0]
	state := ws.StateClientSide
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.hdr[:])
		if err != nil {
			return fmt.Errorf("read frame header: %w", err)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return c.fail(ws.StatusProtocolError, err)
		}
		if h.OpCode.IsControl() {
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.br, p); err != nil {
				return fmt.Errorf("read control frame payload: %w", err)
			}
			if err := c.control(h.OpCode, p); err != nil {
				return err
			}
			continue
		}
		n := len(c.msg)
		if h.Length > readLimit-int64(n) {
			return c.fail(ws.StatusMessageTooBig, fmt.Errorf("message of more than %d bytes (read limit)", readLimit))
		}
		c.msg = slices.Grow(c.msg, int(h.Length))[:n+int(h.Length)]
		if _, err := io.ReadFull(c.br, c.msg[n:]); err != nil {
			return fmt.Errorf("read frame payload: %w", err)
		}
		if h.Fin {
			return nil
		}
		state |= ws.StateFragmented
	}
}

// control handles a ping, pong or close frame whose payload is p
// (CheckHeader has bounded it to 125 bytes).
func (c *wsConn) control(op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpPing:
		if err := c.write(ws.OpPong, p); err != nil {
			return fmt.Errorf("write pong: %w", err)
		}
		return nil
	case ws.OpPong:
		return nil // unasked: nothing to do
	}
	// Close: no payload means no status (1005, never sent on the wire).
	ce := &closeError{code: ws.StatusNoStatusRcvd}
	var reply []byte
	switch {
	case len(p) == 1:
		return c.fail(ws.StatusProtocolError, ws.ProtocolError("close frame payload of 1 byte"))
	case len(p) >= 2:
		ce.code, ce.reason = ws.ParseCloseFrameData(p)
		if !validCloseCode(ce.code) {
			return c.fail(ws.StatusProtocolError, ws.ProtocolError(fmt.Sprintf("close status %d is not valid on the wire", ce.code)))
		}
		reply = ws.NewCloseFrameBody(ce.code, "")
	}
	_ = c.write(ws.OpClose, reply) // the server may be gone already
	_ = c.Close()
	return ce
}

// validCloseCode is coder/websocket's check of a received close status
// (gobwas/ws's CheckCloseFrameData predates 1012-1014, and the gateway
// closes a slow client with 1013).
func validCloseCode(code ws.StatusCode) bool {
	switch code {
	case 1004, ws.StatusNoStatusRcvd, ws.StatusAbnormalClosure, ws.StatusTLSHandshake:
		return false
	}
	return code >= 1000 && code <= 1014 || code >= 3000 && code <= 4999
}

// fail closes the connection with code, err as the reason, and returns err.
func (c *wsConn) fail(code ws.StatusCode, err error) error {
	_ = c.write(ws.OpClose, ws.NewCloseFrameBody(code, err.Error())) // cropped to fit
	_ = c.Close()
	return err
}

// write sends p as one masked frame of type op (a client's frames must be
// masked), in one write.
func (c *wsConn) write(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(p))}
	var b bytes.Buffer
	b.Grow(ws.HeaderSize(h) + len(p))
	if err := ws.WriteHeader(&b, h); err != nil {
		return err
	}
	n := b.Len()
	b.Write(p)
	frame := b.Bytes()
	ws.Cipher(frame[n:], h.Mask, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.w.SetWriteDeadline(time.Now().Add(controlWriteTimeout)); err != nil {
		return err
	}
	_, err := c.w.Write(frame)
	return err
}

// Close closes the connection at once, without a close handshake; it may
// be called again.
func (c *wsConn) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.w.Close()
}

// parse takes bytes read from the connection once it is handed to a
// poller. It reports whether they complete a message, then c.msg (valid
// until the next call), and returns the bytes after it (parse them next);
// otherwise it consumes them all, keeping what is incomplete for the next
// read. Its checks and errors are next's: frames are checked with
// ws.CheckHeader, fragments joined, pings answered, a close answered.
func (c *wsConn) parse(p []byte) (rest []byte, done bool, err error) {
	for {
		if c.need > 0 {
			n := int(min(c.need, int64(len(p))))
			c.msg = append(c.msg, p[:n]...)
			p, c.need = p[n:], c.need-int64(n)
			if c.need > 0 {
				return nil, false, nil
			}
			if c.fin {
				c.state = ws.StateClientSide
				return p, true, nil
			}
			continue
		}
		if len(p) == 0 {
			return nil, false, nil
		}
		// A header, or a whole control frame, is parsed in place, or in
		// pend when a read split it.
		b, held := p, c.npend
		if held > 0 {
			n := copy(c.pend[held:], p)
			b = c.pend[:held+n]
		}
		h, size, ok, err := c.frameHead(b)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			if held == 0 {
				c.npend = copy(c.pend[:], p)
			} else {
				c.npend = len(b)
			}
			return nil, false, nil
		}
		p, c.npend = p[size-held:], 0
		if h.OpCode.IsControl() {
			if err := c.control(h.OpCode, b[size-int(h.Length):size]); err != nil {
				return nil, false, err
			}
			continue
		}
		if c.state&ws.StateFragmented == 0 { // a new message
			if cap(c.msg) > keepBuffer {
				c.msg = nil
			}
			c.msg = c.msg[:0]
		}
		n := len(c.msg)
		if h.Length > readLimit-int64(n) {
			return nil, false, c.fail(ws.StatusMessageTooBig, fmt.Errorf("message of more than %d bytes (read limit)", readLimit))
		}
		c.msg = slices.Grow(c.msg, int(h.Length))
		c.need, c.fin = h.Length, h.Fin
		if h.Fin {
			if h.Length == 0 {
				c.state = ws.StateClientSide
				return p, true, nil
			}
		} else {
			c.state |= ws.StateFragmented
		}
	}
}

// frameHead parses the frame header at the start of b with gobwas/ws and
// checks it; for a control frame it also wants the payload. It returns
// the header and the bytes it and such a payload take, or !ok if b holds
// less.
func (c *wsConn) frameHead(b []byte) (h ws.Header, size int, ok bool, err error) {
	c.pr.Reset(b)
	h, err = ws.ReadHeaderBuffer(&c.pr, c.hdr[:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return h, 0, false, nil
	}
	if err != nil {
		return h, 0, false, fmt.Errorf("read frame header: %w", err)
	}
	if err := ws.CheckHeader(h, c.state|ws.StateClientSide); err != nil {
		return h, 0, false, c.fail(ws.StatusProtocolError, err)
	}
	size = len(b) - c.pr.Len()
	if h.OpCode.IsControl() {
		if int64(c.pr.Len()) < h.Length {
			return h, 0, false, nil
		}
		size += int(h.Length)
	}
	return h, size, true, nil
}

// readError is the error of a read after parse got what it did, as next
// would report it (io.EOF for the end of the connection).
func (c *wsConn) readError(err error) error {
	if err == io.EOF && (c.need > 0 || c.npend > 0) {
		err = io.ErrUnexpectedEOF
	}
	switch {
	case c.need > 0:
		return fmt.Errorf("read frame payload: %w", err)
	case c.npend > 0:
		c.pr.Reset(c.pend[:c.npend])
		if h, herr := ws.ReadHeaderBuffer(&c.pr, c.hdr[:]); herr == nil && h.OpCode.IsControl() {
			return fmt.Errorf("read control frame payload: %w", err)
		}
	}
	return fmt.Errorf("read frame header: %w", err)
}
