// Package pgcluster starts a throwaway PostgreSQL cluster with initdb and
// pg_ctl, for dev mode and tests when DATABASE_URL is not set. As root it
// runs the server as the "postgres" user, because initdb refuses root.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is a running throwaway server.
type Cluster struct {
	Dir  string
	Port int
	bin  string
	usr  *user.User
}

// BinDir finds the PostgreSQL server binaries: PG_BIN, then the newest
// /usr/lib/postgresql/*/bin, then PATH.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgcluster: initdb not found (install postgresql or set PG_BIN or DATABASE_URL)")
}

func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// Start initialises a cluster in dir (created if missing; reused if it
// already holds one) and starts it on a free loopback port.
func Start(ctx context.Context, dir string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root needs a postgres user: %w", err)
		}
		c.usr = u
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if err := c.chown(dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		out, err := c.run(ctx, "initdb", "-D", dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: initdb: %w: %s", err, out)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.Port = port
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='%s' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB", c.Port, c.Dir)
	// For diagnosis, e.g. PGCLUSTER_OPTS="-c shared_preload_libraries=pg_stat_statements".
	if extra := os.Getenv("PGCLUSTER_OPTS"); extra != "" {
		opts += " " + extra
	}
	out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-o", opts, "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl start: %w: %s", err, out)
	}
	return nil
}

// DSN returns a connection string for database db.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Stop shuts the server down (fast mode).
func (c *Cluster) Stop() error {
	out, err := c.run(context.Background(), "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// Restart stops the server immediately (as a crash would) and starts it
// again on the same port.
func (c *Cluster) Restart(ctx context.Context) error {
	if out, err := c.run(ctx, "pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop: %w: %s", err, out)
	}
	return c.start(ctx)
}

// Remove stops the server and deletes its directory.
func (c *Cluster) Remove() error {
	err := c.Stop()
	return errors.Join(err, os.RemoveAll(c.Dir))
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.usr != nil {
		uid, _ := strconv.Atoi(c.usr.Uid)
		gid, _ := strconv.Atoi(c.usr.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	// pg_ctl start leaves the server running with our stdout open if we
	// capture it through a pipe; a file avoids hanging on it.
	f, err := os.CreateTemp("", "pgcluster-*.out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return []byte(strings.TrimSpace(string(out))), err
}

func (c *Cluster) chown(dir string) error {
	if c.usr == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.usr.Uid)
	gid, _ := strconv.Atoi(c.usr.Gid)
	// The postgres user must be able to reach dir through its parents.
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, st.Mode().Perm()|0o011)
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("pgcluster: chown %s: %w", dir, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgcluster: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitReady polls until the server accepts TCP connections or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(c.Port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
