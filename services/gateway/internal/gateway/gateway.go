package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
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
	hub     *hub
	authn   *authenticator
	metrics metrics
	reg     *prometheus.Registry
}

type metrics struct {
	clients, sent, kicked atomic.Int64
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
	g := &Gateway{cfg: cfg, log: log, pool: pool, nc: nc, hub: newHub(cfg.Tenant, pool, log), authn: authn}
	g.registerMetrics()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hubErr := make(chan error, 1)
	go func() { hubErr <- g.hub.run(ctx, nc) }()

	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	log.Info("gateway listening", "addr", ln.Addr().String(), "prefix", cfg.PathPrefix, "tenant", cfg.Tenant)
	select {
	case <-ctx.Done():
	case err = <-hubErr:
	case err = <-srvErr:
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Handler is the gateway's HTTP handler, rooted at the configured prefix.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	p := g.cfg.PathPrefix
	mux.Handle("GET "+p+"ws", g.authed(RoleViewer, http.HandlerFunc(g.handleWS)))
	mux.Handle("GET "+p+"api/v1/snapshot", g.authed(RoleViewer, http.HandlerFunc(g.handleSnapshot)))
	mux.Handle("GET "+p+"api/v1/history", g.authed(RoleViewer, http.HandlerFunc(g.handleHistory)))
	mux.Handle("GET "+p+"api/v1/trunks/health", g.authed(RoleViewer, http.HandlerFunc(g.handleTrunkHealth)))
	mux.Handle("GET "+p+"api/v1/logs/stats", g.authed(RoleViewer, http.HandlerFunc(g.handleLogStats)))
	mux.Handle("POST "+p+"api/v1/pbx/{pbx}/actions/{action}", g.authed(RoleViewer, http.HandlerFunc(g.handleAction))) // role checked per action
	mux.Handle("GET "+p+"api/v1/openapi.yaml", http.HandlerFunc(g.handleOpenAPI))
	mux.HandleFunc("GET "+p+"healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET "+p+"readyz", g.handleReady)
	mux.Handle("GET "+p+"metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}))
	mux.Handle("GET "+p, http.StripPrefix(strings.TrimSuffix(p, "/"), http.FileServerFS(web.Assets())))
	if p != "/" {
		// Relative asset and WebSocket URLs need the trailing slash.
		mux.Handle("GET "+strings.TrimSuffix(p, "/"), http.RedirectHandler(p, http.StatusMovedPermanently))
	}
	return securityHeaders(mux)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Inline scripts are never needed; data from the PBX cannot run.
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors *")
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) handleWS(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.origins()})
	if err != nil {
		return // Accept has answered the request
	}
	defer conn.CloseNow()
	g.serveClient(r.Context(), conn, g.log.With("remote", r.RemoteAddr))
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
	f, err := g.hub.snapshot(r.Context())
	if err != nil {
		g.log.Warn("snapshot", "err", err)
		http.Error(w, "snapshot unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(f.data)
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

func (g *Gateway) registerMetrics() {
	g.reg = prometheus.NewRegistry()
	g.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pbxpulse_gateway_connections", Help: "Open WebSocket connections."},
			func() float64 { return float64(g.metrics.clients.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pbxpulse_gateway_deltas_sent_total", Help: "Deltas written to clients."},
			func() float64 { return float64(g.metrics.sent.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pbxpulse_gateway_clients_cut_total", Help: "Clients disconnected for being too slow or behind a history gap."},
			func() float64 { return float64(g.metrics.kicked.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pbxpulse_gateway_view_version", Help: "Last view version fanned out."},
			func() float64 { return float64(g.hub.lastVersion()) }),
	)
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
