// Command gateway serves the pbxpulse live panel and its WebSocket/HTTP API.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logging"
	"github.com/pbxpulse/pbxpulse/services/gateway/internal/gateway"
)

func main() {
	var cfg gateway.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(2)
	}
	log := logging.New("gateway", cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gateway.Run(ctx, cfg, log); err != nil {
		log.Error("gateway stopped", "err", err)
		os.Exit(1)
	}
}
