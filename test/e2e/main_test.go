// Package e2e runs the whole pipeline — simulator -> collector -> JetStream
// -> projector -> Postgres -> gateway -> WebSocket and browser — with real
// servers and the real service binaries.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pbxpulse-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err = stack.Build(ctx, binDir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

// startStack starts NATS, a database of the shared throwaway cluster, the
// simulator and (unless infraOnly) every service; it is torn down with t.
func startStack(t *testing.T, infraOnly bool, env ...string) *stack.Stack {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "services.log"))
	if err != nil {
		t.Fatal(err)
	}
	opt := stack.Options{Dir: dir, BinDir: binDir, Tenant: "acme", DatabaseURL: testenv.Postgres(t), Output: logf, Env: env}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var s *stack.Stack
	if infraOnly {
		s, err = stack.StartInfra(ctx, opt)
	} else {
		s, err = stack.Start(ctx, opt)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("service logs (tail):\n%s", b)
		}
	})
	return s
}
