// Package service is the one main every pbxpulse binary shares: load the
// configuration from the environment, build the logger, run until SIGINT or
// SIGTERM, and exit non-zero with the reason when the service fails.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // served only on PPROF_ADDR
	"os"
	"os/signal"
	"syscall"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logging"
)

// Config is a service configuration that embeds config.Logging.
type Config interface {
	LogSettings() config.Logging
}

// Main loads a C from the environment and runs run with it. It does not
// return. With PPROF_ADDR set it also serves net/http/pprof there.
func Main[C Config](name string, run func(context.Context, C, *slog.Logger) error) {
	var cfg C
	if err := config.Load(&cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ls := cfg.LogSettings()
	log := logging.New(name, ls.LogFormat, ls.LogLevel)
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		// Profiling on demand, on its own listener (keep it on loopback):
		// go tool pprof http://$PPROF_ADDR/debug/pprof/profile
		go func() { log.Warn("pprof stopped", "err", http.ListenAndServe(addr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error(name+" stopped", "err", err)
		os.Exit(1)
	}
}
