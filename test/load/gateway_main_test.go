package load

import (
	"testing"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// TestMain stops the throwaway Postgres cluster the package's benchmarks
// share (testenv.Postgres) when they end; without it every run left one
// running.
func TestMain(m *testing.M) { testenv.Main(m) }
