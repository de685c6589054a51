package pbxsim

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ariHub is the set of connected /ari/events websockets. Guarded by
// Server.mu: events are queued to every client while the model is
// locked, so all clients see the model's order.
type ariHub struct {
	clients map[*ariClient]struct{}
	seq     int
}

type ariClient struct {
	id           string
	seq          int
	remote, user string
	apps         []string
	all          bool // subscribeAll=true
	q            outq
	faults       faults      // guarded by Server.mu
	frozen       atomic.Bool // mirrors faults.frozen for the websocket reader
}

func (h *ariHub) init() { h.clients = map[*ariClient]struct{}{} }

func (h *ariHub) ordered() []*ariClient {
	out := make([]*ariClient, 0, len(h.clients))
	for c := range h.clients {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *ariClient) int { return a.seq - b.seq })
	return out
}

// apps lists the registered Stasis applications, first registered first.
func (h *ariHub) apps() []string {
	var out []string
	for _, c := range h.ordered() {
		for _, a := range c.apps {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

func (h *ariHub) closeAll() {
	for c := range h.clients {
		delete(h.clients, c)
		c.q.finish()
	}
}

// broadcast queues e to every client and application it concerns. Like
// Asterisk, a websocket registering several applications receives an
// event once per application (with that "application" value).
func (h *ariHub) broadcast(e *ariEvent) {
	for c := range h.clients {
		for _, app := range c.apps {
			if e.onlyApp != "" && e.onlyApp != app {
				continue
			}
			if !c.all && !e.toAll && e.onlyApp != app && !e.about(app) {
				continue
			}
			for _, b := range c.faults.filter(e.encode(app)) {
				c.q.push(b)
			}
		}
	}
}

// about reports whether e concerns a channel in Stasis application app,
// the only events an application without subscribeAll is subscribed to.
func (e *ariEvent) about(app string) bool {
	for _, c := range e.chans {
		if c != nil && c.stasis == app {
			return true
		}
	}
	return false
}

// appJSON is stasis_app_to_json: an application with subscribeAll is
// subscribed to the "all" topics, otherwise to its Stasis channels.
func (s *Server) appJSON(app string) obj {
	all := false
	for c := range s.hub.clients {
		if c.all && slices.Contains(c.apps, app) {
			all = true
		}
	}
	chans, bridges, eps, devs := []string{}, []string{}, []string{}, []string{}
	if all {
		chans = []string{"__AST_CHANNEL_ALL_TOPIC"}
		bridges = []string{"__AST_BRIDGE_ALL_TOPIC"}
		eps = []string{"__AST_ENDPOINT_ALL_TOPIC"}
		devs = []string{"__AST_DEVICE_STATE_ALL_TOPIC"}
	} else {
		for _, c := range s.chans {
			if c.stasis == app {
				chans = append(chans, c.uniqueid)
			}
		}
	}
	return obj{{"name", app}, {"channel_ids", chans}, {"bridge_ids", bridges}, {"endpoint_ids", eps},
		{"device_names", devs}, {"events_allowed", []obj{}}, {"events_disallowed", []obj{}}}
}

// serveEvents is GET /ari/events?app=a,b[&subscribeAll=true].
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	var apps []string
	for _, v := range q["app"] {
		for _, a := range strings.Split(v, ",") {
			if a != "" && !slices.Contains(apps, a) {
				apps = append(apps, a)
			}
		}
	}
	if len(apps) == 0 {
		// ast_http_error(ser, 400, "Bad Request", "Missing param 'app'");
		// Asterisk wraps the text in its HTML error page, not modelled.
		http.Error(w, "Missing param 'app'", http.StatusBadRequest)
		return
	}
	c := &ariClient{apps: apps, all: astTrue(q.Get("subscribeAll")), remote: r.RemoteAddr, user: user}
	c.q.cond.L = &c.q.mu
	// The application is registered before the handshake completes (as
	// in Asterisk's websocket_attempted callback), so a client sees every
	// event from the moment its upgrade succeeds; they wait in c.q.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.hub.seq++
	c.seq = s.hub.seq
	c.id = "ari-" + itoa(c.seq)
	s.hub.clients[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	unregister := func() {
		s.mu.Lock()
		delete(s.hub.clients, c)
		s.mu.Unlock()
		c.q.kill()
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		// A frozen link must look dead to a pinging client too.
		OnPingReceived: func(context.Context, []byte) bool { return !c.frozen.Load() },
	})
	if err != nil {
		unregister()
		return
	}
	conn.SetReadLimit(1 << 20)
	s.log.Debug("ari websocket opened", "remote", c.remote, "apps", apps, "subscribeAll", c.all)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			// Clients send nothing but control frames; Read answers pings.
			if _, _, err := conn.Read(context.Background()); err != nil {
				break
			}
		}
		unregister()
	}()
	for {
		bufs, last := c.q.take()
		failed := false
		for _, b := range bufs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := conn.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				failed = true
				break
			}
		}
		if failed || last {
			break
		}
	}
	// Asterisk drops the TCP connection on shutdown without a close frame
	// (see the shutdown phase of the capture).
	conn.CloseNow()
	<-readDone
}
