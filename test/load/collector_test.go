// Package load measures pbxpulse services under load with the real service
// binaries: `make bench` runs its benchmarks with the other modules'.
//
// BenchmarkCollectorRSS10kEndpoints checks the collector's memory target
// (RSS under 40 MB while following 10,000 endpoints): the collector binary
// follows a simulated PBX with 10,000 registered PJSIP endpoints and a few
// hundred calls going, publishing to an embedded NATS JetStream, while its
// RSS is read from /proc every 100 ms. It reports rss_peak_MB (the largest
// of VmHWM and the samples: the resync's burst included), rss_MB (the median
// RSS over the second half of the traffic phase), events (published, from
// /metrics) and resync_s. It logs the figures rather than failing on them;
// it fails only if events are dropped. One iteration takes about 12 s, so
// -benchtime 1x (or the default 1s, which also stops after one) is enough:
//
//	cd test && go test -run '^$' -bench CollectorRSS -benchtime 1x ./load/
//
// The traffic phase lasts 10 s and places a call every 10 ms, hanging up
// the oldest beyond liveCalls (so each call lasts about 2 s); it also
// refreshes 100 registrations and re-registers 10 endpoints a second.
// PBXPULSE_LOAD_TRAFFIC and PBXPULSE_LOAD_CALL_EVERY (Go durations) change
// the phase's length and call rate, e.g. PBXPULSE_LOAD_TRAFFIC=80s to run
// past the collector's first reconciliation (RECONCILE_INTERVAL, 60 s),
// which the default run does not reach.
//
// PBXPULSE_LOAD_ENV adds space-separated KEY=VALUE pairs to the collector's
// environment (e.g. "GOMEMLIMIT=30MiB OUTBOX_CAPACITY=5000"), and
// PBXPULSE_LOAD_STDERR names a file to keep the collector's stderr in (with
// GODEBUG=gctrace=1, its GC trace).
package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/test/pbxsim"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

const (
	endpoints     = 10000                 // generated endpoints 10001..20000
	liveCalls     = 200                   // calls kept going during the traffic phase
	reregEvery    = 10 * time.Millisecond // refresh one registration
	churnEvery    = 100 * time.Millisecond
	sampleEvery   = 100 * time.Millisecond
	resyncTimeout = 60 * time.Second
	targetMB      = 40
)

// result is what one run measured.
type result struct {
	resync     time.Duration // collector start to CONNECTED
	rssConnect float64       // MB, right after CONNECTED
	rssSteady  float64       // MB, median of the second half of the traffic phase
	rssPeak    float64       // MB, max(VmHWM, samples)
	rssEnd     float64       // MB, after traffic, outbox drained
	events     float64       // pbxpulse_collector_events_total
	amiMsgs    float64       // pbxpulse_collector_ami_messages_total
	dropped    float64       // pbxpulse_collector_events_dropped_total
	stored     uint64        // messages in PBX_EVENTS
	calls      int           // calls placed during the traffic phase
	samples    int
	goroutines float64 // go_goroutines at the end
	heapInuse  float64 // MB, go_memstats_heap_inuse_bytes at the end
}

func BenchmarkCollectorRSS10kEndpoints(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads the collector's RSS from /proc")
	}
	bin := buildCollector(b)
	extra := strings.Fields(os.Getenv("PBXPULSE_LOAD_ENV"))
	trafficFor = envDuration(b, "PBXPULSE_LOAD_TRAFFIC", trafficFor)
	callEvery = envDuration(b, "PBXPULSE_LOAD_CALL_EVERY", callEvery)
	var runs []result
	for b.Loop() {
		runs = append(runs, runCollector(b, bin, extra))
	}
	if len(runs) == 0 {
		return
	}
	var peak, steady float64 // worst run
	for _, x := range runs {
		peak, steady = max(peak, x.rssPeak), max(steady, x.rssSteady)
	}
	last := runs[len(runs)-1]
	b.ReportMetric(peak, "rss_peak_MB")
	b.ReportMetric(steady, "rss_MB")
	b.ReportMetric(last.events, "events")
	b.ReportMetric(last.resync.Seconds(), "resync_s")
	if peak >= targetMB || steady >= targetMB {
		b.Logf("over the %d MB target: peak %.1f MB, steady %.1f MB", targetMB, peak, steady)
	}
}

// Traffic phase knobs (see the package doc).
var (
	trafficFor = 10 * time.Second
	callEvery  = 10 * time.Millisecond
)

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive Go duration", name, v)
	}
	return d
}

// buildCollector compiles ./services/collector once into a temporary directory.
func buildCollector(b *testing.B) string { return buildService(b, "collector") }

// buildService compiles ./services/<name> into a temporary directory.
func buildService(b *testing.B, name string) string {
	b.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./services/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

func runCollector(b *testing.B, bin string, extra []string) result {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+trafficFor)
	defer cancel()
	dir := b.TempDir()

	ns, err := natsserver.Start("127.0.0.1", -1, filepath.Join(dir, "nats"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := bus.EnsureEventStream(ctx, js, "load", slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}

	sim := pbxsim.New(pbxsim.Config{GenerateEndpoints: endpoints})
	addr, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	exts := make([]string, endpoints)
	for i := range exts {
		exts[i] = strconv.Itoa(10001 + i)
		sim.Register(exts[i])
	}
	sim.RegisterTrunk()

	// Follow the connection state before the collector can publish it.
	conns, err := js.OrderedConsumer(ctx, bus.EventStream("load"), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"pbx.load.pbx1.evt.pbx.connection"},
	})
	if err != nil {
		b.Fatal(err)
	}
	connected := make(chan struct{})
	cc, err := conns.Consume(func(m jetstream.Msg) {
		var ev pb.Event
		if proto.Unmarshal(m.Data(), &ev) == nil && ev.GetPbxConnection().GetState() == pb.PbxConnection_STATE_CONNECTED {
			select {
			case <-connected:
			default:
				close(connected)
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	health, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(),
		"NATS_URL=" + ns.ClientURL(), "TENANT=load", "AMI_HOSTS=pbx1=" + addr.String(),
		"AMI_USER=monitor", "AMI_PASS=monitor-secret", "HEALTH_ADDR=" + health,
		"ENV_FILE=/nonexistent", "LOG_LEVEL=warn",
	}
	env = append(env, extra...)
	var stderr io.Writer = &tail{max: 64 << 10}
	if path := os.Getenv("PBXPULSE_LOAD_STDERR"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		stderr = f
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stderr, stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{}) // closed once the process is reaped
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()
	fail := func(format string, args ...any) {
		b.Helper()
		stop()
		if t, ok := stderr.(*tail); ok {
			b.Logf("collector output (tail):\n%s", t.String())
		}
		b.Fatalf(format, args...)
	}

	pid := cmd.Process.Pid
	smp := startSampler(pid)
	defer smp.stop()

	select {
	case <-connected:
	case <-exited:
		fail("collector exited before resyncing: %v", exitErr)
	case <-time.After(resyncTimeout):
		fail("collector not CONNECTED within %s", resyncTimeout)
	}
	var r result
	r.resync = time.Since(start)
	if st, err := readStatus(pid); err == nil {
		r.rssConnect = st.rss
	}
	smp.mark() // traffic phase starts

	tctx, tcancel := context.WithTimeout(ctx, trafficFor)
	r.calls = traffic(tctx, sim, exts)
	tcancel()
	steady := smp.mark()

	// Let the outbox drain (every event counted is in the stream), then
	// read the counters.
	deadline := time.Now().Add(20 * time.Second)
	var m map[string]float64
	for {
		m, err = scrape(health)
		if err == nil {
			var stream jetstream.Stream
			if stream, err = js.Stream(ctx, bus.EventStream("load")); err == nil {
				r.stored = stream.CachedInfo().State.Msgs
				if float64(r.stored) >= m["pbxpulse_collector_events_total"] {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			fail("outbox not drained: %d of %v events stored (%v)", r.stored, m["pbxpulse_collector_events_total"], err)
		}
		select {
		case <-exited:
			fail("collector exited: %v", exitErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
	st, err := readStatus(pid)
	if err != nil {
		fail("read /proc/%d/status: %v", pid, err)
	}
	smp.stop()
	r.events = m["pbxpulse_collector_events_total"]
	r.amiMsgs = m["pbxpulse_collector_ami_messages_total"]
	r.dropped = m["pbxpulse_collector_events_dropped_total"]
	r.goroutines = m["go_goroutines"]
	r.heapInuse = m["go_memstats_heap_inuse_bytes"] / (1 << 20)
	r.rssEnd = st.rss
	r.samples = len(smp.all)
	r.rssPeak = max(st.hwm, slices.Max(append(smp.all, 0)))
	// Steady state: the median of the traffic phase's second half, once
	// the runtime has had a few seconds to return the resync's heap.
	var series []string
	for i := 0; i < len(steady); i += int(time.Second / sampleEvery) {
		series = append(series, strconv.FormatFloat(steady[i], 'f', 1, 64))
	}
	if late := slices.Clone(steady[len(steady)/2:]); len(late) > 0 {
		slices.Sort(late)
		r.rssSteady = late[len(late)/2]
	}
	stop()

	b.Logf("collector following %d endpoints (env %q): resynced in %.2fs; RSS %.1f MB at CONNECTED, "+
		"%.1f MB steady under traffic (%d calls in %s, %d live; per second: %s), %.1f MB at the end (%.1f MB of it file-backed), "+
		"peak %.1f MB (VmHWM %.1f MB, %d samples); heap in use %.1f MB, %v goroutines; "+
		"%v AMI messages, %v events published, %v dropped, %d stored in %s",
		endpoints, extra, r.resync.Seconds(), r.rssConnect, r.rssSteady, r.calls, trafficFor, liveCalls,
		strings.Join(series, " "), r.rssEnd, st.file, r.rssPeak, st.hwm, r.samples, r.heapInuse, r.goroutines,
		r.amiMsgs, r.events, r.dropped, r.stored, bus.EventStream("load"))
	if r.dropped > 0 {
		b.Errorf("%v events dropped: the outbox overflowed", r.dropped)
	}
	return r
}

// traffic keeps liveCalls calls going between random idle endpoints
// (dial, answer, and hang up the oldest call to make room), refreshes
// registrations and unregisters/re-registers an endpoint now and then,
// until ctx ends. It returns the number of calls placed.
func traffic(ctx context.Context, sim *pbxsim.Server, exts []string) int {
	rng := rand.New(rand.NewPCG(1, 2))
	busy := map[string]bool{}
	type live struct {
		c        *pbxsim.Call
		from, to string
	}
	var calls []live
	idle := func() string {
		for {
			e := exts[rng.IntN(len(exts))]
			if !busy[e] {
				return e
			}
		}
	}
	hangup := func(l live) {
		l.c.Hangup()
		delete(busy, l.from)
		delete(busy, l.to)
	}
	defer func() {
		for _, l := range calls {
			hangup(l)
		}
	}()
	callT := time.NewTicker(callEvery)
	defer callT.Stop()
	reregT := time.NewTicker(reregEvery)
	defer reregT.Stop()
	churnT := time.NewTicker(churnEvery)
	defer churnT.Stop()
	placed, rereg := 0, 0
	for {
		select {
		case <-ctx.Done():
			return placed
		case <-callT.C:
			if len(calls) >= liveCalls {
				hangup(calls[0])
				calls = calls[1:]
			}
			from := idle()
			busy[from] = true
			to := idle()
			busy[to] = true
			c := sim.Dial(from, to)
			c.Answer()
			calls = append(calls, live{c, from, to})
			placed++
		case <-reregT.C:
			sim.Register(exts[rereg%len(exts)])
			rereg++
		case <-churnT.C:
			e := idle()
			sim.Unregister(e)
			sim.Register(e)
		}
	}
}

// sampler reads VmRSS every sampleEvery; mark starts a new phase and
// returns the samples of the one that ended.
type sampler struct {
	mu    sync.Mutex
	all   []float64
	phase []float64
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func startSampler(pid int) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Go(func() {
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			st, err := readStatus(pid)
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.all = append(s.all, st.rss)
			s.phase = append(s.phase, st.rss)
			s.mu.Unlock()
		}
	})
	return s
}

func (s *sampler) mark() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.phase
	s.phase = nil
	return p
}

func (s *sampler) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

type procStatus struct{ rss, hwm, file float64 } // MB: VmRSS, VmHWM, RssFile

// readStatus reads VmRSS, VmHWM and RssFile (kB) from /proc/<pid>/status.
func readStatus(pid int) (procStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, err
	}
	var st procStatus
	found := 0
	for line := range strings.Lines(string(data)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM" && key != "RssFile") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 64)
		if err != nil {
			return procStatus{}, fmt.Errorf("%s: %q", key, val)
		}
		switch key {
		case "VmRSS":
			st.rss = kb / 1024
		case "VmHWM":
			st.hwm = kb / 1024
		case "RssFile":
			st.file = kb / 1024
		}
		found++
	}
	if found != 3 {
		return procStatus{}, errors.New("no VmRSS/VmHWM/RssFile (process gone?)")
	}
	return st, nil
}

// scrape reads the collector's /metrics, summing each metric over its labels.
func scrape(addr string) (map[string]float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		out[name] += v
	}
	return out, sc.Err()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if n := t.buf.Len() - t.max; n > 0 {
		t.buf.Next(n)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
