package wsload

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// BroadcastConfig sizes the baseline server.
type BroadcastConfig struct {
	Groups int
	// Rate is how many deltas each group gets per second.
	Rate int
	// SendBuffer is the gateway's default (WS_SEND_BUFFER), so that both
	// cut slow clients off alike.
	SendBuffer int
	// Raw makes the server the floor instead of the baseline: see
	// Broadcaster.
	Raw bool
}

// Broadcaster is the baseline the gateway is measured against: the least a
// coder/websocket server must do to fan the same deltas out to the same
// clients, written for speed. Each group is one tenant's delta sequence; a
// publisher in the process builds and encodes each delta once (the
// gateway's hub encodes each delta once too) and offers it to every client
// of the group through a buffered channel; one goroutine per client
// writes, without a deadline per write. No storage, no NATS, no
// authentication, no write timeouts.
//
// With Raw, it is the floor: the least any server must do, in any
// language, to deliver one message per delta to each client over its own
// TCP connection. The handshake is gobwas/ws's; then the connections are
// taken from Go's netpoller, and the publisher frames each delta once and
// writes it to each client's socket with one write(2), from a goroutine
// per core: no goroutine, queue or lock per client. What it costs is, in
// effect, the kernel's (loopback TCP, both directions of it, and waking
// the readers). A write the socket cannot take whole cuts the client off.
type Broadcaster struct {
	cfg        BroadcastConfig
	groups     []*group
	publishing atomic.Bool
}

type group struct {
	name    string
	mu      sync.Mutex
	version uint64
	clients map[*peer]struct{}
	raw     []*floorPeer // with Raw
}

type peer struct {
	send   chan []byte
	kicked chan struct{}
	once   sync.Once
}

func (p *peer) kick() { p.once.Do(func() { close(p.kicked) }) }

// NewBroadcaster returns a server with cfg.Groups empty groups.
func NewBroadcaster(cfg BroadcastConfig) *Broadcaster {
	if cfg.SendBuffer <= 0 {
		cfg.SendBuffer = 128
	}
	b := &Broadcaster{cfg: cfg}
	for g := range cfg.Groups {
		b.groups = append(b.groups, &group{name: GroupName(g), clients: map[*peer]struct{}{}})
	}
	return b
}

// GroupName names group g as the load test names tenant g.
func GroupName(g int) string { return fmt.Sprintf("t%03d", g) }

// Handler serves GET ws?group=N (the WebSocket), POST start?for=<duration>
// (publish for that long) and GET versions (each group's last version and
// whether publishing goes on, as JSON).
func (b *Broadcaster) Handler() http.Handler {
	mux := http.NewServeMux()
	if b.cfg.Raw {
		mux.HandleFunc("GET /ws", b.serveRaw)
	} else {
		mux.HandleFunc("GET /ws", b.serveWS)
	}
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("for"))
		if err != nil || d <= 0 {
			http.Error(w, "want for=<duration>", http.StatusBadRequest)
			return
		}
		if !b.publishing.CompareAndSwap(false, true) {
			http.Error(w, "already publishing", http.StatusConflict)
			return
		}
		go func() {
			defer b.publishing.Store(false)
			publish := b.publish
			if b.cfg.Raw {
				publish = b.publishRaw
			}
			_ = Pace(context.Background(), b.cfg.Groups, b.cfg.Rate, d, publish)
		}()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /versions", func(w http.ResponseWriter, _ *http.Request) {
		out := struct {
			Publishing bool     `json:"publishing"`
			Versions   []uint64 `json:"versions"`
		}{Publishing: b.publishing.Load()}
		for _, g := range b.groups {
			g.mu.Lock()
			out.Versions = append(out.Versions, g.version)
			g.mu.Unlock()
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	return mux
}

// publish sends the next delta of each group in due.
func (b *Broadcaster) publish(due []int, now time.Time) error {
	for _, gi := range due {
		g := b.groups[gi]
		g.mu.Lock()
		v := g.version + 1
		frame, err := DeltaFrame(&pb.Delta{Tenant: g.name, Version: v, Changes: []*pb.Change{CallChange(g.name, v)}, CommittedAt: timestamppb.New(now)})
		if err != nil {
			g.mu.Unlock()
			return err
		}
		g.version = v
		for p := range g.clients {
			select {
			case p.send <- frame:
			default:
				// Too slow, as the gateway decides it.
				delete(g.clients, p)
				p.kick()
			}
		}
		g.mu.Unlock()
	}
	return nil
}

// groupOf returns the group a WebSocket request names (?group=N), or
// answers 404.
func (b *Broadcaster) groupOf(w http.ResponseWriter, r *http.Request) (*group, bool) {
	gi, err := strconv.Atoi(r.URL.Query().Get("group"))
	if err != nil || gi < 0 || gi >= len(b.groups) {
		http.Error(w, "unknown group", http.StatusNotFound)
		return nil, false
	}
	return b.groups[gi], true
}

func (b *Broadcaster) serveWS(w http.ResponseWriter, r *http.Request) {
	g, ok := b.groupOf(w, r)
	if !ok {
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	p := &peer{send: make(chan []byte, b.cfg.SendBuffer), kicked: make(chan struct{})}
	g.mu.Lock()
	g.clients[p] = struct{}{}
	snap := Envelope("snapshot", fmt.Appendf(nil, `{"tenant":%q,"version":"%d"}`, g.name, g.version))
	g.mu.Unlock()
	// The handler returns: its goroutine and stack are not kept for the
	// connection's life. Reading (CloseRead) answers pings and the
	// client's close and ends ctx; one goroutine writes.
	ctx := conn.CloseRead(context.Background())
	go b.writeLoop(ctx, conn, g, p, snap)
}

// writeLoop writes the snapshot, then every delta queued for p, until the
// connection ends or p is cut off. Writes take no deadline of their own,
// which would cost a timer per message: a connection that stops reading
// fills its queue and is cut off by the publisher.
func (b *Broadcaster) writeLoop(ctx context.Context, conn *websocket.Conn, g *group, p *peer, snap []byte) {
	defer func() {
		g.mu.Lock()
		delete(g.clients, p)
		g.mu.Unlock()
		conn.CloseNow()
	}()
	if conn.Write(ctx, websocket.MessageText, snap) != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kicked:
			conn.Close(websocket.StatusTryAgainLater, "too slow")
			return
		case m := <-p.send:
			if conn.Write(context.Background(), websocket.MessageText, m) != nil {
				return
			}
		}
	}
}
