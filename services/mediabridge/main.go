// Command mediabridge runs a media bridge worker (see internal/mediabridge).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logging"
	"github.com/pbxpulse/pbxpulse/services/mediabridge/internal/mediabridge"
)

func main() {
	var cfg mediabridge.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mediabridge:", err)
		os.Exit(2)
	}
	log := logging.New("mediabridge", cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mediabridge.Run(ctx, cfg, log); err != nil {
		log.Error("mediabridge stopped", "err", err)
		os.Exit(1)
	}
}
