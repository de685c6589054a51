// Package mediabridge will bridge SIP phones' RTP and WebRTC in the browser.
// This first version is the worker's skeleton that later media work plugs
// into: it joins the tenant's worker pool on NATS (so that workers scale
// horizontally and can be discovered) and reports its health. It bridges no
// media yet; the panel does not offer browser calling until it does.
package mediabridge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/config"
)

// Config is the media bridge worker's configuration.
type Config struct {
	// NATSURL is the NATS server or cluster.
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// Tenant whose calls this worker may bridge.
	Tenant string `env:"TENANT" envDefault:"default"`
	// WorkerID names this worker; the host name by default.
	WorkerID string `env:"WORKER_ID"`
	// HealthAddr serves /healthz.
	HealthAddr string `env:"HEALTH_ADDR" envDefault:":8091"`
	config.Logging
}

// WorkerInfo is a worker's answer on the discovery subject.
type WorkerInfo struct {
	WorkerID    string    `json:"worker_id"`
	Tenant      string    `json:"tenant"`
	ActiveCalls int       `json:"active_calls"`
	Started     time.Time `json:"started"`
}

// DiscoverySubject is where workers of a tenant answer "who is there?".
func DiscoverySubject(tenant string) string { return "bridge." + tenant + ".workers" }

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := config.CheckToken("TENANT", cfg.Tenant); err != nil {
		return err
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID, _ = os.Hostname()
	}
	nc, err := bus.Connect(cfg.NATSURL, "pbxpulse-mediabridge", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	info := WorkerInfo{WorkerID: cfg.WorkerID, Tenant: cfg.Tenant, Started: time.Now().UTC()}
	// A queue-less subscription: every worker answers, so a requester
	// gathering replies sees the whole pool.
	sub, err := nc.Subscribe(DiscoverySubject(cfg.Tenant), func(m *nats.Msg) {
		b, _ := json.Marshal(info)
		_ = m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", DiscoverySubject(cfg.Tenant), err)
	}
	defer sub.Unsubscribe()

	ln, err := net.Listen("tcp", cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HealthAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "nats unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("media bridge worker ready", "worker", cfg.WorkerID, "tenant", cfg.Tenant, "health", ln.Addr().String())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
