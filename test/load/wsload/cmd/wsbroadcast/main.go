// Command wsbroadcast runs the load test's baseline, a bare coder/websocket
// broadcast server (wsload.Broadcaster), as its own process, as the gateway
// runs: the clients stay in the benchmark's process for both. With -raw
// it is the floor the benchmark also measures. It prints
// "listening <addr>" once it accepts connections.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pbxpulse/pbxpulse/test/load/wsload"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	groups := flag.Int("groups", 100, "groups (tenants)")
	rate := flag.Int("rate", 20, "deltas per group per second")
	raw := flag.Bool("raw", false, "be the floor: one write(2) per message from a goroutine per core (see wsload.Broadcaster)")
	flag.Parse()
	if err := run(*addr, wsload.BroadcastConfig{Groups: *groups, Rate: *rate, Raw: *raw}); err != nil {
		slog.Error("wsbroadcast", "err", err)
		os.Exit(1)
	}
}

func run(addr string, cfg wsload.BroadcastConfig) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: wsload.NewBroadcaster(cfg).Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Println("listening", ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
