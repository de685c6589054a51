package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/lease"
)

// Run watches every configured PBX until ctx ends. One PBX failing never
// disturbs another: each has its own lease, connection, outbox and loop.
// Only the replica holding a PBX's lease connects to it, so two replicas
// (a rollout) never publish the same PBX twice.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	pbxs, _ := cfg.PBXs()
	// The live heap is small and the allocation rate high (every AMI
	// message becomes an event): GOGC=200 halves the GC's share of the CPU,
	// and the limit keeps a resync of 10,000 endpoints from inflating RSS.
	service.TuneGC(log, 200, 26<<20)
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-collector", cfg.Tenant, log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	m := newMetrics()
	if cfg.HealthAddr != "" {
		stop, err := serveHTTP(cfg.HealthAddr, nc, m, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	elector, err := lease.New(ctx, js, lease.Config{
		Bucket: cfg.LeaseBucket, TTL: cfg.LeaseTTL, Logger: log,
		OnChange: func(key string, held bool) {
			v := 0.0
			if held {
				v = 1
			}
			m.leader.WithLabelValues(key).Set(v)
		},
	})
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	var trunkRe, extRe *regexp.Regexp
	if cfg.TrunkPattern != "" {
		trunkRe = regexp.MustCompile(cfg.TrunkPattern)
	}
	if cfg.ExtensionPattern != "" {
		extRe = regexp.MustCompile(cfg.ExtensionPattern)
	}
	// One lease, outbox and pair of sessions per PBX id: AMI, ARI or both.
	type watched struct {
		ami *session
		ari *ariSession
	}
	byID := map[string]*watched{}
	var order []string
	get := func(id string) *watched {
		if w, ok := byID[id]; ok {
			return w
		}
		w := &watched{}
		byID[id] = w
		order = append(order, id)
		return w
	}
	for _, p := range pbxs {
		get(p.ID).ami = &session{
			pbx: p, tenant: cfg.Tenant, keepalive: cfg.Keepalive, reconcile: cfg.ReconcileInterval,
			maxBackoff: cfg.MaxBackoff, log: log.With("pbx", p.ID, "addr", p.Addr), metrics: m, trunkRe: trunkRe, extRe: extRe,
			audits: make(chan *pb.Event, 64),
			env:    envelope{tenant: cfg.Tenant, pbx: p.ID, source: pb.Source_SOURCE_AMI},
		}
		if cfg.Commands {
			byID[p.ID].ami.nc = nc
		}
	}
	aris, _ := cfg.ARIPBXs()
	for _, p := range aris {
		w := get(p.ID)
		w.ari = &ariSession{
			pbx: p.ID, cfg: p.Conf, withAMI: w.ami != nil, maxBackoff: cfg.MaxBackoff,
			log: log.With("pbx", p.ID, "ari", p.Conf.URL), metrics: m, trunkRe: trunkRe, extRe: extRe,
			env: envelope{tenant: cfg.Tenant, pbx: p.ID, source: pb.Source_SOURCE_ARI},
		}
	}
	var wg sync.WaitGroup
	for _, id := range order {
		w := byID[id]
		plog := log.With("pbx", id)
		out, err := bus.NewOutbox(nc, bus.OutboxConfig{Capacity: cfg.OutboxCapacity}, plog)
		if err != nil {
			return err
		}
		if w.ami != nil {
			w.ami.out = out
		}
		if w.ari != nil {
			w.ari.out = out
		}
		// The outbox outlives connections and leadership: what was read
		// from the PBX is published even after the link or the lease is
		// lost (ids make a new leader's resync harmless).
		octx, ocancel := context.WithCancel(context.Background())
		wg.Add(2)
		go func() {
			defer wg.Done()
			out.Run(octx)
		}()
		go func() {
			defer wg.Done()
			defer ocancel()
			err := elector.Run(ctx, lease.Key(cfg.Tenant, id), func(lctx context.Context) {
				var sw sync.WaitGroup
				if w.ami != nil {
					sw.Go(func() { w.ami.run(lctx) })
				}
				if w.ari != nil {
					sw.Go(func() { w.ari.run(lctx) })
				}
				sw.Wait()
				// Publish what this leader read before the lease is released,
				// so that a successor's events come after it in the stream.
				// The lease stands for TTL/4 after leadership is given up:
				// stay within it.
				fctx, cancel := context.WithTimeout(context.Background(), cfg.LeaseTTL/5)
				defer cancel()
				if err := out.Flush(fctx); err != nil {
					plog.Warn("leadership ends with events unpublished", "err", err)
				}
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				plog.Error("leader election stopped", "err", err)
			}
			// Give the last events (the DISCONNECTED above all) a moment to
			// leave before the process exits.
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := out.Flush(fctx); err != nil {
				plog.Warn("events left unpublished at shutdown", "err", err)
			}
		}()
	}
	log.Info("collector started", "tenant", cfg.Tenant, "pbxs", len(order), "replica", elector.ID())
	wg.Wait()
	return nil
}

// serveHTTP serves health and metrics on their own listener.
func serveHTTP(addr string, nc *nats.Conn, m *metrics, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HEALTH_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "nats not connected", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registerer, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	log.Info("health and metrics", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}
