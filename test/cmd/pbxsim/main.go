// Command pbxsim runs the Asterisk AMI simulator standalone, for local
// development and live demos of pbxpulse without a real PBX.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/pbxpulse/pbxpulse/test/pbxsim"
)

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	listen := flag.String("listen", env("PBXSIM_LISTEN", "127.0.0.1:5038"), "AMI listen address (env PBXSIM_LISTEN)")
	user := flag.String("user", env("PBXSIM_USER", "monitor"), "AMI username (env PBXSIM_USER)")
	secret := flag.String("secret", env("PBXSIM_SECRET", "monitor-secret"), "AMI secret (env PBXSIM_SECRET)")
	exts := flag.String("endpoints", env("PBXSIM_ENDPOINTS", ""), "comma-separated extensions (default 1001..1005; env PBXSIM_ENDPOINTS)")
	demo := flag.Bool("demo", env("PBXSIM_DEMO", "") != "", "run a scripted endless demo of registrations and calls (env PBXSIM_DEMO)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := pbxsim.Config{User: *user, Secret: *secret, Logger: log}
	if *exts != "" {
		cfg.Endpoints = strings.Split(*exts, ",")
	}
	srv := pbxsim.New(cfg)
	if _, err := srv.Listen(*listen); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	demoDone := make(chan struct{})
	go func() {
		defer close(demoDone)
		if *demo {
			srv.RunDemo(ctx) // hangs up its calls when ctx ends
		}
	}()
	<-ctx.Done()
	<-demoDone
	log.Info("shutting down")
	srv.Close()
}
