// Command pbxsim runs the Asterisk simulator standalone (AMI, and ARI's
// HTTP/websocket interface), for local development and live demos of
// pbxpulse without a real PBX.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
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

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return n
	}
	return def
}

func main() {
	listen := flag.String("listen", env("PBXSIM_LISTEN", "127.0.0.1:5038"), "AMI listen address (env PBXSIM_LISTEN)")
	user := flag.String("user", env("PBXSIM_USER", "monitor"), "AMI username (env PBXSIM_USER)")
	secret := flag.String("secret", env("PBXSIM_SECRET", "monitor-secret"), "AMI secret (env PBXSIM_SECRET)")
	exts := flag.String("endpoints", env("PBXSIM_ENDPOINTS", ""), "comma-separated extensions (default 1001..1005; env PBXSIM_ENDPOINTS)")
	ari := flag.String("ari", env("PBXSIM_ARI", "127.0.0.1:8088"), `ARI (HTTP) listen address, "off" to disable (env PBXSIM_ARI)`)
	ariUser := flag.String("ari-user", env("PBXSIM_ARI_USER", "ari"), "ARI username (env PBXSIM_ARI_USER)")
	ariSecret := flag.String("ari-secret", env("PBXSIM_ARI_SECRET", "ari-secret"), "ARI password (env PBXSIM_ARI_SECRET)")
	generate := flag.Int("generate", envInt("PBXSIM_GENERATE", 0), "add N generated endpoints 10001.. (env PBXSIM_GENERATE)")
	demo := flag.Bool("demo", env("PBXSIM_DEMO", "") != "", "run a scripted endless demo of registrations and calls (env PBXSIM_DEMO)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := pbxsim.Config{User: *user, Secret: *secret, Logger: log, ARIUser: *ariUser, ARISecret: *ariSecret,
		GenerateEndpoints: *generate}
	if *exts != "" {
		cfg.Endpoints = strings.Split(*exts, ",")
	}
	srv := pbxsim.New(cfg)
	if _, err := srv.Listen(*listen); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	if *ari != "" && *ari != "off" {
		if _, err := srv.ListenARI(*ari); err != nil {
			log.Error("listen ARI", "err", err)
			srv.Close()
			os.Exit(1)
		}
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
