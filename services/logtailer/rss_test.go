package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// BenchmarkLogtailerRSS runs the logtailer binary on a log file of
// LOGTAILER_RSS_MB megabytes (default 128; the captured Asterisk log
// repeated) against an embedded NATS server in this process, until the
// binary has saved its position at the end of the file, and reports its
// peak RSS (VmHWM) and the lines per second it published. The file is
// written before the tailer starts: reading a backlog as fast as it can is
// when it would hold the most.
func BenchmarkLogtailerRSS(b *testing.B) {
	mb := 128
	if s := os.Getenv("LOGTAILER_RSS_MB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("LOGTAILER_RSS_MB=%q", s)
		}
		mb = n
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "logtailer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	logFile := filepath.Join(dir, "full")
	lines, size := writeLog(b, logFile, int64(mb)<<20)
	srv := testenv.NATS(b)

	for b.Loop() {
		stateDir := filepath.Join(b.TempDir(), "state")
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(),
			"NATS_URL="+srv.ClientURL(), "TENANT=rss", "PBX_ID=pbx1",
			"LOG_FILES="+logFile, "STATE_DIR="+stateDir, "LOG_TIMEZONE=UTC",
			"LOG_STREAM_MAX_BYTES=256MiB", "LOG_LEVEL=warn", "ENV_FILE=/nonexistent")
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for savedOffset(stateDir) < size {
			select {
			case err := <-exited:
				b.Fatalf("logtailer exited: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		elapsed := time.Since(start)
		peak, end := procStatus(b, cmd.Process.Pid, "VmHWM"), procStatus(b, cmd.Process.Pid, "VmRSS")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			b.Fatalf("logtailer: %v", err)
		}
		b.ReportMetric(float64(peak)/1024, "peak_rss_MB")
		b.ReportMetric(float64(end)/1024, "end_rss_MB")
		b.ReportMetric(float64(lines)/elapsed.Seconds(), "lines/s")
		b.ReportMetric(float64(size)/(1<<20), "file_MB")
		b.ReportMetric(0, "ns/op")
	}
}

// writeLog writes the captured log repeated up to about size bytes.
func writeLog(b *testing.B, path string, size int64) (lines int, written int64) {
	capture, err := os.ReadFile("testdata/asterisk/22.10.1/logs/full")
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	n := strings.Count(string(capture), "\n")
	for written < size {
		if _, err := w.Write(capture); err != nil {
			b.Fatal(err)
		}
		written += int64(len(capture))
		lines += n
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return lines, written
}

// savedOffset reads the position the tailer saved (0 if none yet).
func savedOffset(stateDir string) int64 {
	files, _ := filepath.Glob(filepath.Join(stateDir, "*.json"))
	if len(files) != 1 {
		return 0
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		return 0
	}
	var st struct {
		Offset int64 `json:"offset"`
	}
	if json.Unmarshal(raw, &st) != nil {
		return 0
	}
	return st.Offset
}

// procStatus returns a kB field of /proc/<pid>/status.
func procStatus(b *testing.B, pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
