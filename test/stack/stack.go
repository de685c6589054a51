// Package stack runs the whole pbxpulse system on one machine: an embedded
// NATS JetStream server, a throwaway PostgreSQL (unless a DATABASE_URL is
// given), the PBX simulator, and every service as its own process. It backs
// both `make run` and the end-to-end tests, so the demo and the tests run
// the same thing.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	"github.com/pbxpulse/pbxpulse/pkg/pgcluster"
	"github.com/pbxpulse/pbxpulse/test/pbxsim"
)

// Services are the service binaries, in start order.
var Services = []string{"collector", "projector", "gateway", "logtailer", "mediabridge"}

// RepoRoot finds the directory holding go.work, from the working directory up.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("stack: go.work not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles every service into binDir.
func Build(ctx context.Context, binDir string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	for _, s := range Services {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, s), "./services/"+s)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", s, err, out)
		}
	}
	return nil
}

// Options configure a stack.
type Options struct {
	// Dir holds the NATS store, the Postgres cluster and service state.
	Dir string
	// BinDir holds the service binaries (see Build).
	BinDir string
	// Tenant of the simulated PBX.
	Tenant string
	// NATSPort (-1: any free port), AMIAddr and HTTPAddr ("": any free port).
	NATSPort int
	AMIAddr  string
	HTTPAddr string
	// DatabaseURL, when set, is used instead of a throwaway cluster.
	DatabaseURL string
	// Output receives the services' logs (nil: discarded).
	Output io.Writer
	// Env is added to every service's environment.
	Env []string
}

// Stack is a running system.
type Stack struct {
	opt         Options
	NATS        *server.Server
	PG          *pgcluster.Cluster
	DatabaseURL string
	Sim         *pbxsim.Server
	SimAddr     string
	HTTPAddr    string

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	exits map[string]chan error
}

// Start brings up the infrastructure and every service.
func Start(ctx context.Context, opt Options) (*Stack, error) {
	s, err := StartInfra(ctx, opt)
	if err != nil {
		return nil, err
	}
	for _, name := range Services {
		if err := s.StartService(name); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if err := s.WaitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// StartInfra starts NATS, Postgres and the simulator, but no service.
func StartInfra(ctx context.Context, opt Options) (*Stack, error) {
	if opt.Tenant == "" {
		opt.Tenant = "demo"
	}
	if opt.NATSPort == 0 {
		opt.NATSPort = -1
	}
	s := &Stack{opt: opt, procs: map[string]*exec.Cmd{}, exits: map[string]chan error{}}
	ns, err := natsserver.Start("127.0.0.1", opt.NATSPort, filepath.Join(opt.Dir, "nats"))
	if err != nil {
		return nil, err
	}
	s.NATS = ns
	s.DatabaseURL = opt.DatabaseURL
	if s.DatabaseURL == "" {
		pg, err := pgcluster.Start(ctx, filepath.Join(opt.Dir, "pg"))
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.PG = pg
		if err := CreateDatabase(ctx, pg.DSN("postgres"), "pbxpulse"); err != nil {
			s.Stop()
			return nil, err
		}
		s.DatabaseURL = pg.DSN("pbxpulse")
	}
	s.Sim = pbxsim.New(pbxsim.Config{})
	amiAddr := opt.AMIAddr
	if amiAddr == "" {
		amiAddr = "127.0.0.1:0"
	}
	addr, err := s.Sim.Listen(amiAddr)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("simulator: %w", err)
	}
	s.SimAddr = addr.String()
	s.HTTPAddr = opt.HTTPAddr
	if s.HTTPAddr == "" || strings.HasSuffix(s.HTTPAddr, ":0") {
		s.HTTPAddr, err = freeAddr()
		if err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// CreateDatabase creates db on the server of adminDSN if it does not exist.
func CreateDatabase(ctx context.Context, adminDSN, db string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname=$1)`, db).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
	}
	return nil
}

// RestartNATS shuts the embedded NATS server down, waits for down, and
// starts it again on the same port with the same store, as a NATS restart
// in production would.
func (s *Stack) RestartNATS(down time.Duration) error {
	port := s.NATS.Addr().(*net.TCPAddr).Port
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
	time.Sleep(down)
	ns, err := natsserver.Start("127.0.0.1", port, filepath.Join(s.opt.Dir, "nats"))
	if err != nil {
		return err
	}
	s.NATS = ns
	return nil
}

// RestartPostgres crash-restarts the stack's throwaway Postgres
// (pg_ctl stop -m immediate, then start on the same port and data), as a
// database failover would: connections break, committed data stays. It
// fails when the stack runs on a server given in Options.DatabaseURL,
// which it does not own.
func (s *Stack) RestartPostgres(ctx context.Context) error {
	if s.PG == nil {
		return errors.New("stack: Postgres is not this stack's throwaway cluster (DATABASE_URL given); cannot restart it")
	}
	if err := s.PG.Restart(ctx); err != nil {
		return fmt.Errorf("stack: restart postgres: %w", err)
	}
	return nil
}

// NATSURL is the embedded server's client URL.
func (s *Stack) NATSURL() string { return s.NATS.ClientURL() }

// Tenant is the tenant of the simulated PBX.
func (s *Stack) Tenant() string { return s.opt.Tenant }

// PanelURL is the gateway's panel address (under its PATH_PREFIX).
func (s *Stack) PanelURL() string { return s.GatewayURL("") }

// PathPrefix is the gateway's PATH_PREFIX as given in Options.Env, with its
// slashes ("/" when unset).
func (s *Stack) PathPrefix() string {
	p := "/"
	for _, kv := range s.opt.Env {
		if v, ok := strings.CutPrefix(kv, "PATH_PREFIX="); ok && v != "" {
			p = "/" + strings.Trim(v, "/") + "/"
			p = strings.ReplaceAll(p, "//", "/")
		}
	}
	return p
}

// GatewayURL is the address of path (relative, e.g. "api/v1/whoami") on
// the gateway, under its PATH_PREFIX.
func (s *Stack) GatewayURL(path string) string {
	return "http://" + s.HTTPAddr + s.PathPrefix() + strings.TrimPrefix(path, "/")
}

// LogFile is the Asterisk log file the stack's log tailer follows: tests
// append lines to it.
func (s *Stack) LogFile() string { return filepath.Join(s.opt.Dir, "asterisk", "full") }

// Env is the environment every service of this stack gets.
func (s *Stack) Env() []string {
	env := []string{
		"NATS_URL=" + s.NATSURL(),
		"DATABASE_URL=" + s.DatabaseURL,
		"TENANT=" + s.opt.Tenant,
		"AMI_HOSTS=pbx1=" + s.SimAddr,
		"AMI_USER=monitor",
		"AMI_PASS=monitor-secret",
		"HTTP_ADDR=" + s.HTTPAddr,
		"PBX_ID=pbx1",
		"LOG_FILES=" + s.LogFile(),
		"STATE_DIR=" + filepath.Join(s.opt.Dir, "logtailer-state"),
		"HEALTH_ADDR=127.0.0.1:0",
		"METRICS_ADDR=127.0.0.1:0",
		"ENV_FILE=/nonexistent",
		// The dev stack listens on loopback only; its gateway is open.
		"GATEWAY_OPEN=true",
	}
	return append(env, s.opt.Env...)
}

// StartService starts one service binary with the stack's environment plus
// extra variables.
func (s *Stack) StartService(name string, extra ...string) error {
	return s.StartNamed(name, name, extra...)
}

// StartNamed starts binary bin as the process called name, so that two
// instances of one service can run side by side.
func (s *Stack) StartNamed(name, bin string, extra ...string) error {
	if err := os.MkdirAll(filepath.Join(s.opt.Dir, "asterisk"), 0o755); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.opt.BinDir, bin))
	cmd.Env = append(append(os.Environ(), s.Env()...), extra...)
	out := s.opt.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	exit := make(chan error, 1)
	go func() { exit <- cmd.Wait() }()
	s.mu.Lock()
	s.procs[name], s.exits[name] = cmd, exit
	s.mu.Unlock()
	return nil
}

// Kill ends a service with SIGKILL, as a crash would, and waits for it.
func (s *Stack) Kill(name string) { s.signal(name, syscall.SIGKILL) }

// StopService ends a service with SIGTERM and waits for it.
func (s *Stack) StopService(name string) { s.signal(name, syscall.SIGTERM) }

func (s *Stack) signal(name string, sig syscall.Signal) {
	s.mu.Lock()
	cmd, exit := s.procs[name], s.exits[name]
	delete(s.procs, name)
	delete(s.exits, name)
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
	}
}

// Exited reports whether a started service has ended by itself.
func (s *Stack) Exited(name string) (bool, error) {
	s.mu.Lock()
	exit := s.exits[name]
	s.mu.Unlock()
	if exit == nil {
		return true, nil
	}
	select {
	case err := <-exit:
		exit <- err
		return true, err
	default:
		return false, nil
	}
}

// WaitReady waits until the gateway answers /readyz.
func (s *Stack) WaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		resp, err := http.Get(s.GatewayURL("readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		for _, name := range []string{"collector", "projector", "gateway"} {
			if done, err := s.Exited(name); done && s.started(name) {
				return fmt.Errorf("%s exited during start-up: %v", name, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Stack) started(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.procs[name]
	return ok
}

// Stop ends every service and the infrastructure.
func (s *Stack) Stop() {
	s.mu.Lock()
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.StopService(n)
	}
	if s.Sim != nil {
		_ = s.Sim.Close()
	}
	if s.PG != nil {
		_ = s.PG.Stop()
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
