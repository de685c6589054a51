package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// client is one WebSocket connection.
type client struct {
	conn   *websocket.Conn
	send   chan frame
	kicked chan string
	once   sync.Once
}

func (c *client) kick(reason string) {
	c.once.Do(func() { c.kicked <- reason; close(c.kicked) })
}

// clientMessage is what a browser may send.
type clientMessage struct {
	Type string `json:"type"`
}

func (g *Gateway) serveClient(ctx context.Context, conn *websocket.Conn, log *slog.Logger) {
	c := &client{conn: conn, send: make(chan frame, g.cfg.SendBuffer), kicked: make(chan string, 1)}
	g.hub.register(c)
	defer g.hub.unregister(c)
	g.metrics.clients.Add(1)
	defer g.metrics.clients.Add(-1)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	requests := make(chan string, 4)
	go g.readLoop(ctx, cancel, c, requests, log)

	snap, err := g.hub.snapshot(ctx)
	if err != nil {
		log.Warn("snapshot failed", "err", err)
		conn.Close(websocket.StatusTryAgainLater, "snapshot unavailable")
		return
	}
	if err := g.write(ctx, c, snap.data); err != nil {
		return
	}
	version := snap.version
	ping := time.NewTicker(g.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.Close(websocket.StatusGoingAway, "")
			return
		case reason := <-c.kicked:
			g.metrics.kicked.Add(1)
			conn.Close(websocket.StatusTryAgainLater, reason)
			return
		case f := <-c.send:
			if f.version <= version {
				continue // already in the snapshot
			}
			if f.version != version+1 {
				// Cannot happen while the hub keeps its invariant; never
				// let a client apply out of order if it does.
				conn.Close(websocket.StatusInternalError, "delta gap")
				return
			}
			version = f.version
			if err := g.write(ctx, c, f.data); err != nil {
				return
			}
			g.metrics.sent.Add(1)
		case req := <-requests:
			if req == "requestUpdate" {
				snap, err := g.hub.snapshot(ctx)
				if err != nil {
					conn.Close(websocket.StatusTryAgainLater, "snapshot unavailable")
					return
				}
				if snap.version >= version {
					if err := g.write(ctx, c, snap.data); err != nil {
						return
					}
					version = snap.version
				}
			}
		case <-ping.C:
			pctx, pcancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				return
			}
		}
	}
}

func (g *Gateway) write(ctx context.Context, c *client, data []byte) error {
	wctx, cancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
	defer cancel()
	return c.conn.Write(wctx, websocket.MessageText, data)
}

// readLoop reads client messages; malformed ones get an error message, a
// flood of them closes the connection.
func (g *Gateway) readLoop(ctx context.Context, cancel context.CancelFunc, c *client, requests chan<- string, log *slog.Logger) {
	defer cancel()
	c.conn.SetReadLimit(4096)
	var window time.Time
	n := 0
	for {
		typ, data, err := c.conn.Read(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) && websocket.CloseStatus(err) == -1 {
				log.Debug("client read", "err", err)
			}
			return
		}
		if time.Since(window) > time.Second {
			window, n = time.Now(), 0
		}
		if n++; n > 20 {
			c.conn.Close(websocket.StatusPolicyViolation, "rate limit")
			return
		}
		var m clientMessage
		if typ != websocket.MessageText || json.Unmarshal(data, &m) != nil || m.Type == "" {
			g.writeError(ctx, c, "malformed message: want a JSON object with a type")
			continue
		}
		switch m.Type {
		case "requestUpdate":
			select {
			case requests <- m.Type:
			default:
			}
		case "ping":
		default:
			g.writeError(ctx, c, "unknown message type")
		}
	}
}

func (g *Gateway) writeError(ctx context.Context, c *client, msg string) {
	b, _ := json.Marshal(map[string]string{"type": "error", "message": msg})
	_ = g.write(ctx, c, b)
}
