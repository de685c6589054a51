// Command collector connects to the AMI of one or many Asterisk PBXs and
// publishes what they report as pbxpulse events on NATS JetStream.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logging"
	"github.com/pbxpulse/pbxpulse/services/collector/internal/collector"
)

func main() {
	var cfg collector.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(2)
	}
	log := logging.New("collector", cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := collector.Run(ctx, cfg, log); err != nil {
		log.Error("collector stopped", "err", err)
		os.Exit(1)
	}
}
