package logtailer

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// benchLines is how many lines each run of BenchmarkTailToJetStream reads:
// the captured full log repeated (about 20 MB).
const benchLines = 200_000

// benchPairs is how many tail/bufio pairs one benchmark op runs (the
// medians are over all of them).
const benchPairs = 5

// BenchmarkTailToJetStream measures lines per second from a growing file
// (a writer appends the captured Asterisk log while the tailer follows it)
// to JetStream's acknowledgement, against the embedded server, and as a
// ratio to reading the same file with a plain bufio.Scanner in the same
// run. Runs alternate and the medians are reported, so that a noisy
// neighbour spoils one pair, not the figure.
func BenchmarkTailToJetStream(b *testing.B) {
	// The embedded NATS server shares this process's heap, which in
	// production it does not: the tailer's soft memory limit is left out.
	b.Setenv("GOMEMLIMIT", "off")
	capLines := readLines(b, capture)
	var text strings.Builder
	for i := 0; i < benchLines; i++ {
		text.WriteString(capLines[i%len(capLines)])
		text.WriteByte('\n')
	}
	content := text.String()
	srv := testenv.NATS(b)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	var tails, plains, ratios, cpus []float64
	run := 0
	for b.Loop() {
		for range benchPairs {
			run++
			dir := b.TempDir()
			cpu0 := cpuTime()
			tps := tailRun(b, srv.ClientURL(), dir, fmt.Sprintf("bench%d", run), content, log)
			cpus = append(cpus, float64((cpuTime()-cpu0).Microseconds())/benchLines)
			pps := plainRead(b, filepath.Join(dir, "full"))
			tails, plains, ratios = append(tails, tps), append(plains, pps), append(ratios, tps/pps)
			// each run has its own tenant (ids differ, nothing is
			// deduplicated); drop its stream so the store does not grow
			_ = js.DeleteStream(context.Background(), bus.LogStream(fmt.Sprintf("bench%d", run)))
		}
	}
	b.ReportMetric(median(tails), "lines/s")
	b.ReportMetric(median(plains), "bufio_lines/s")
	b.ReportMetric(median(ratios), "ratio")
	// CPU of the whole process (tailer and NATS server) per line: less
	// sensitive to neighbours than the wall clock
	b.ReportMetric(median(cpus), "cpu_µs/line")
	b.ReportMetric(0, "ns/op") // one op is benchPairs whole runs; the metrics above are what counts
}

// tailRun follows a file that a writer grows to content, and returns the
// lines per second until JetStream acknowledged the last one.
func tailRun(b *testing.B, url, dir, tenant, content string, log *slog.Logger) float64 {
	path := filepath.Join(dir, "full")
	cfg := testConfig(url, dir)
	cfg.Tenant, cfg.LogFiles, cfg.CommitEvery, cfg.Poll = tenant, path, 8192, 200*time.Millisecond
	lines := uint64(strings.Count(content, "\n"))

	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	written := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	runners := make(chan *runner, 1)
	start := time.Now()
	go func() { done <- run(ctx, cfg, log, func(r *runner) { runners <- r }) }()
	go func() {
		// the writer: 64 KiB at a time, as fast as it goes
		for rest := content; len(rest) > 0; {
			n := min(len(rest), 64<<10)
			if _, err := f.WriteString(rest[:n]); err != nil {
				written <- err
				return
			}
			rest = rest[n:]
		}
		written <- f.Close()
	}()
	r := <-runners
	for r.published.Load() < lines {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if err := <-written; err != nil {
		b.Fatal(err)
	}
	return float64(lines) / elapsed.Seconds()
}

// plainRead is the baseline: the same file through a bufio.Scanner.
func plainRead(b *testing.B, path string) float64 {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
