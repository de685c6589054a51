// Package testenv starts the real servers integration tests need: an
// embedded NATS JetStream server and a throwaway PostgreSQL cluster (or the
// server named by DATABASE_URL). Nothing here is a mock.
package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	"github.com/pbxpulse/pbxpulse/pkg/pgcluster"
)

// JetStream connects to the NATS server at url for the test; the
// connection is closed when the test ends.
func JetStream(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// NATS starts a JetStream server on a free port for the test and returns it;
// it is shut down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	s, err := natsserver.Start("127.0.0.1", -1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

var (
	clusterOnce sync.Once
	cluster     *pgcluster.Cluster
	clusterErr  error
	clusterDir  string
	dbCounter   atomic.Int64
)

// Main runs the package's tests and then stops the shared throwaway
// PostgreSQL cluster, if one was started. Use it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		_ = cluster.Remove()
	}
	if clusterDir != "" {
		_ = os.RemoveAll(clusterDir)
	}
	os.Exit(code)
}

// Cluster returns the shared throwaway cluster of this test binary,
// starting it on first use. It is nil when DATABASE_URL is set.
func Cluster(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	if os.Getenv("DATABASE_URL") != "" {
		return nil
	}
	clusterOnce.Do(func() {
		clusterDir, clusterErr = os.MkdirTemp("", "pbxpulse-pg-")
		if clusterErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, clusterErr = pgcluster.Start(ctx, clusterDir+"/data")
	})
	if clusterErr != nil {
		t.Fatalf("throwaway postgres: %v", clusterErr)
	}
	return cluster
}

// Postgres creates a fresh, empty database for the test and returns its DSN.
// Databases live in the shared throwaway cluster, or on DATABASE_URL's server.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		admin = Cluster(t).DSN("postgres")
	}
	name := fmt.Sprintf("t_%d_%d", os.Getpid(), dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	return u.String()
}

// Eventually polls cond until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("condition not met after %s: %v", timeout, err)
}
