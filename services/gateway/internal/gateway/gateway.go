package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/services/gateway/internal/web"
)

// Gateway is a running gateway.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream
	authn   *authenticator
	origins []string
	metrics *metrics
	reg     *prometheus.Registry

	base  context.Context // ends when the gateway stops; clients and hubs live in it
	hubs  *hubs
	wg    sync.WaitGroup // client connections
	clock atomic.Int64   // coarse wall clock (unix ns) for per-write bookkeeping, see sweep
	asOf  chan struct{}  // as-of reads running (see handleSnapshotAt)
	// closing is set when the gateway starts saying goodbye to its
	// clients: one that attaches later sends itself away (see handleWS).
	closing atomic.Bool
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	return Serve(ctx, cfg, log, ln)
}

// Serve is Run on an existing listener.
func Serve(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	authn, err := newAuthenticator(&cfg)
	if err != nil {
		return err
	}
	nc, err := bus.Connect(cfg.NATSURL, "pbxpulse-gateway", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// The projector owns the schema, but the gateway may start first; the
	// migration is idempotent and locked, so either may apply it.
	if err := migrateWithRetry(ctx, pool, log); err != nil {
		return err
	}
	base, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	g := &Gateway{cfg: cfg, log: log, pool: pool, nc: nc, js: js, authn: authn, origins: cfg.origins(), base: base, asOf: make(chan struct{}, asOfReads)}
	g.clock.Store(time.Now().UnixNano())
	g.hubs = newHubs(base, g)
	g.reg = prometheus.NewRegistry()
	g.metrics = newMetrics(g.reg, g)
	go g.sweep(base)

	srvErr := make(chan error, 2)
	var msrv *http.Server
	if cfg.MetricsAddr != metricsWithPanel {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", g.metricsHandler())
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { srvErr <- msrv.Serve(mln) }()
		log.Info("metrics listening", "addr", mln.Addr().String())
	}
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { srvErr <- srv.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String(), "prefix", cfg.PathPrefix)
	select {
	case <-ctx.Done():
	case err = <-srvErr:
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	if msrv != nil {
		_ = msrv.Shutdown(sctx)
	}
	g.closeClients(sctx)
	stop()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// closeClients says goodbye (1001) to every WebSocket client, and cuts
// those that do not take it before ctx ends. http.Server.Shutdown leaves
// upgraded connections alone.
func (g *Gateway) closeClients(ctx context.Context) {
	// Before the clients are listed: a client attaching now is either in
	// the list or sees the flag (handleWS checks it after registering).
	g.closing.Store(true)
	var cs []*client
	for _, h := range g.hubs.all() {
		cs = h.clientList(cs)
	}
	for _, c := range cs {
		c.cut(websocket.StatusGoingAway, "server shutting down", cutShutdown)
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	for _, c := range cs {
		c.kill("server shutting down", cutShutdown)
	}
	<-done
}

// sweep keeps the coarse clock and, every second, looks at every client:
// it cuts writes stuck longer than WS_WRITE_TIMEOUT and connections whose
// JWT expired, and pings connections idle for WS_PING_INTERVAL. One
// goroutine for all: no timer per connection or per write.
func (g *Gateway) sweep(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var cs []*client
	for n := 1; ; n++ {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-tick.C:
		}
		ns := now.UnixNano()
		g.clock.Store(ns)
		if n%4 != 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
		cs = cs[:0]
		for _, h := range g.hubs.all() {
			cs = h.clientList(cs)
		}
		for _, c := range cs {
			if ws := c.writingSince.Load(); ws != 0 && time.Duration(ns-ws) > g.cfg.WriteTimeout {
				// Not inline: CloseNow may wait for a close handshake in
				// progress, and this loop keeps every client's clock.
				go c.kill("write timeout", cutWriteTimeout)
				continue
			}
			if exp := c.p.Expires; !exp.IsZero() && now.After(exp) {
				c.cut(websocket.StatusPolicyViolation, "token expired", cutExpired)
				continue
			}
			if time.Duration(ns-c.lastWrite.Load()) >= g.cfg.PingInterval && c.pinging.CompareAndSwap(false, true) {
				go c.ping(pctx)
			}
		}
		clear(cs) // let finished clients go
		// The pings of this round share pctx; its timer ends with them.
		time.AfterFunc(g.cfg.WriteTimeout, cancel)
	}
}

// Handler is the gateway's HTTP handler, rooted at the configured prefix.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	p := g.cfg.PathPrefix
	mux.Handle("GET "+p+"ws", g.authed(RoleViewer, http.HandlerFunc(g.handleWS)))
	mux.Handle("GET "+p+"api/v1/whoami", g.authed(RoleViewer, http.HandlerFunc(g.handleWhoami)))
	mux.Handle("GET "+p+"api/v1/snapshot", g.authed(RoleViewer, http.HandlerFunc(g.handleSnapshot)))
	mux.Handle("GET "+p+"api/v1/history", g.authed(RoleViewer, http.HandlerFunc(g.handleHistory)))
	mux.Handle("GET "+p+"api/v1/trunks/health", g.authed(RoleViewer, http.HandlerFunc(g.handleTrunkHealth)))
	mux.Handle("GET "+p+"api/v1/logs/stats", g.authed(RoleViewer, http.HandlerFunc(g.handleLogStats)))
	mux.Handle("POST "+p+"api/v1/pbx/{pbx}/actions/{action}", g.authed(RoleViewer, http.HandlerFunc(g.handleAction))) // role checked per action
	mux.Handle("GET "+p+"api/v1/openapi.yaml", http.HandlerFunc(g.handleOpenAPI))
	mux.HandleFunc("GET "+p+"healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET "+p+"readyz", g.handleReady)
	if g.cfg.MetricsAddr == metricsWithPanel {
		mux.Handle("GET "+p+"metrics", g.metricsHandler())
	}
	mux.Handle("GET "+p, http.StripPrefix(strings.TrimSuffix(p, "/"), http.FileServerFS(web.Assets())))
	if p != "/" {
		// Relative asset and WebSocket URLs need the trailing slash.
		mux.Handle("GET "+strings.TrimSuffix(p, "/"), http.RedirectHandler(p, http.StatusMovedPermanently))
	}
	return securityHeaders(mux, g.cfg.FrameAncestors)
}

// securityHeaders sets the headers every answer carries; frameAncestors
// is FRAME_ANCESTORS, the sites that may frame the panel.
func securityHeaders(next http.Handler, frameAncestors string) http.Handler {
	// Inline scripts are never needed; data from the PBX cannot run.
	csp := "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors " + frameAncestors
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", csp)
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) handleWhoami(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"tenant": p.Tenant, "role": p.Role.String(), "subject": p.Subject})
}

func (g *Gateway) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	at, err := queryTime(r.URL.Query(), "at")
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if !at.IsZero() {
		g.handleSnapshotAt(w, r, at)
		return
	}
	p, _ := principalFrom(r.Context())
	f, err := readSnapshot(r.Context(), g.pool, p.Tenant)
	if err != nil {
		g.log.Warn("snapshot", "tenant", p.Tenant, "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "snapshot unavailable")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(f.body())
}

func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := g.pool.Ping(ctx); err != nil {
		http.Error(w, "postgres unavailable", http.StatusServiceUnavailable)
		return
	}
	if !g.nc.IsConnected() {
		http.Error(w, "nats unavailable", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func migrateWithRetry(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	for wait := 200 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		err := store.Migrate(ctx, pool)
		if err == nil {
			return nil
		}
		log.Warn("postgres not ready", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// metricsHandler serves the Prometheus metrics.
func (g *Gateway) metricsHandler() http.Handler {
	return promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{})
}
