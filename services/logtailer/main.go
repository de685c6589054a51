// Command logtailer follows the log files of an Asterisk PBX and publishes
// every log entry as a pbxpulse event on NATS JetStream (stream PBX_LOGS).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logging"
	"github.com/pbxpulse/pbxpulse/services/logtailer/internal/logtailer"
)

func main() {
	var cfg logtailer.Config
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "logtailer:", err)
		os.Exit(2)
	}
	log := logging.New("logtailer", cfg.LogFormat, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := logtailer.Run(ctx, cfg, log); err != nil {
		log.Error("logtailer stopped", "err", err)
		os.Exit(1)
	}
}
