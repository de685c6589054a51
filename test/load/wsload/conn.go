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
	// readBufferSize is each connection's one bufio.Reader: a read syscall
	// picks up every frame already queued (deltas are about 1 KB) while
	// 10,000 of them stay at 40 MB.
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
// lean as a load generator's should be: the reader owns the connection and
// reads frames straight from one bufio.Reader into a buffer it reuses, with
// no goroutine, timer or context per message (coder/websocket's
// Conn.Reader wakes a timeout goroutine per message and reads through
// small buffers, which cost the measuring process more than a core at
// 200,000 messages a second). Only next reads; write may be called from
// any goroutine.
type wsConn struct {
	conn net.Conn
	br   *bufio.Reader
	hdr  [ws.MaxHeaderSize]byte // scratch for ws.ReadHeaderBuffer
	msg  []byte                 // the last message read
	wmu  sync.Mutex
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
	return &wsConn{conn: conn, br: br}, nil
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
			if err := c.control(h); err != nil {
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

// control handles a ping, pong or close frame (CheckHeader has bounded its
// payload to 125 bytes).
func (c *wsConn) control(h ws.Header) error {
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return fmt.Errorf("read control frame payload: %w", err)
	}
	switch h.OpCode {
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
	_ = c.conn.Close()
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
	_ = c.conn.Close()
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
	if err := c.conn.SetWriteDeadline(time.Now().Add(controlWriteTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(frame)
	return err
}

// Close closes the TCP connection at once, without a close handshake.
func (c *wsConn) Close() error { return c.conn.Close() }
