// Command pbxpulse-dev runs the whole system on one machine for `make run`:
// embedded NATS JetStream, a throwaway Postgres (unless DATABASE_URL is
// set), the PBX simulator playing a live demo, and every service; then it
// prints the panel's URL and runs until interrupted.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pbxpulse/pbxpulse/test/stack"
)

func main() {
	dir := flag.String("dir", ".dev", "working directory for NATS, Postgres and service state")
	bin := flag.String("bin", "bin", "directory holding the service binaries (make build)")
	httpAddr := flag.String("http", envOr("HTTP_ADDR", "127.0.0.1:8080"), "panel listen address")
	amiAddr := flag.String("ami", "127.0.0.1:5038", "simulator AMI listen address")
	natsPort := flag.Int("nats-port", 4222, "embedded NATS port")
	tenant := flag.String("tenant", envOr("TENANT", "demo"), "tenant of the simulated PBX")
	verbose := flag.Bool("v", false, "show the services' logs")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	// The throwaway Postgres runs as the postgres user when we are root,
	// so its directory is fresh each run.
	_ = os.RemoveAll(filepath.Join(abs, "pg"))
	binAbs, _ := filepath.Abs(*bin)
	opt := stack.Options{
		Dir: abs, BinDir: binAbs, Tenant: *tenant,
		NATSPort: portOrFree(*natsPort), AMIAddr: addrOrFree(*amiAddr), HTTPAddr: addrOrFree(*httpAddr),
		DatabaseURL: os.Getenv("DATABASE_URL"),
	}
	if *verbose {
		opt.Output = os.Stderr
	} else {
		f, err := os.Create(filepath.Join(mkdir(abs), "services.log"))
		if err != nil {
			fail(err)
		}
		defer f.Close()
		opt.Output = f
	}
	fmt.Println("pbxpulse: starting NATS JetStream, Postgres, the PBX simulator and the services ...")
	s, err := stack.Start(ctx, opt)
	if err != nil {
		fail(err)
	}
	defer s.Stop()
	go s.Sim.RunDemo(ctx)
	go feedDemoLog(ctx, filepath.Join(abs, "asterisk", "full"))

	fmt.Printf("\n  Panel:      %s\n  NATS:       %s\n  Postgres:   %s\n  AMI (sim):  %s\n  Logs:       %s\n\nCtrl-C stops everything.\n",
		s.PanelURL(), s.NATSURL(), redactDSN(s.DatabaseURL), s.SimAddr, filepath.Join(abs, "services.log"))
	<-ctx.Done()
	fmt.Println("\npbxpulse: stopping ...")
}

// feedDemoLog appends the captured Asterisk log, line by line, to the file
// the log tailer follows, so the demo has live log lines.
func feedDemoLog(ctx context.Context, path string) {
	root, err := stack.RepoRoot()
	if err != nil {
		return
	}
	src, err := os.Open(filepath.Join(root, "testdata/asterisk/22.10.1/logs/full"))
	if err != nil {
		return
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer dst.Close()
	sc := bufio.NewScanner(src)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if _, err := dst.Write(append(sc.Bytes(), '\n')); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func addrOrFree(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		fmt.Fprintf(os.Stderr, "pbxpulse: %s is busy, using a free port\n", addr)
		return net.JoinHostPort(host, "0")
	}
	l.Close()
	return addr
}

func portOrFree(port int) int {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return -1
	}
	l.Close()
	return port
}

func redactDSN(dsn string) string {
	if u, err := urlParse(dsn); err == nil {
		return u
	}
	return "(set)"
}

func mkdir(d string) string {
	_ = os.MkdirAll(d, 0o755)
	return d
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pbxpulse:", err)
	os.Exit(1)
}
