package collector

import (
	"context"
	"log/slog"
	"regexp"
	"sync"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
)

// Run watches every configured PBX until ctx ends. One PBX failing never
// disturbs another: each has its own session loop.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	pbxs, _ := cfg.PBXs()
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-collector", log)
	if err != nil {
		return err
	}
	defer nc.Drain()
	pub := bus.NewPublisher(js)
	var trunkRe, extRe *regexp.Regexp
	if cfg.TrunkPattern != "" {
		trunkRe = regexp.MustCompile(cfg.TrunkPattern)
	}
	if cfg.ExtensionPattern != "" {
		extRe = regexp.MustCompile(cfg.ExtensionPattern)
	}
	var wg sync.WaitGroup
	for _, p := range pbxs {
		s := &session{
			pbx: p, tenant: cfg.Tenant, pub: pub, keepalive: cfg.Keepalive, maxBackoff: cfg.MaxBackoff,
			log: log.With("pbx", p.ID, "addr", p.Addr), trunkRe: trunkRe, extRe: extRe,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx)
		}()
	}
	log.Info("collector started", "tenant", cfg.Tenant, "pbxs", len(pbxs))
	wg.Wait()
	return nil
}
