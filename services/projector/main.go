// Command projector applies a tenant's PBX events from NATS JetStream to the
// live views in Postgres and announces every committed change.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logging"
	"github.com/pbxpulse/pbxpulse/services/projector/internal/projector"
)

func main() {
	var cfg projector.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "projector:", err)
		os.Exit(2)
	}
	log := logging.New("projector", cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := projector.Run(ctx, cfg, log); err != nil {
		log.Error("projector stopped", "err", err)
		os.Exit(1)
	}
}
