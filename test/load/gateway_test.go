package load

// BenchmarkGatewayFanout checks the gateway's targets of issue 6: 10,000
// WebSocket clients over 100 tenants, each tenant's view changing 20
// times a second; p99 from projector commit to client receipt under
// 100 ms; gateway memory under 30 KB per connection; deltas delivered per
// second at least 70% of a bare coder/websocket broadcast server's with
// the same clients in the same run.
//
//	cd test && go test -run '^$' -bench GatewayFanout -benchtime 1x ./load/
//
// Each iteration runs the baseline, then the gateway, each as its own
// process, against a fresh swarm of clients (test/load/wsload) in the
// benchmark's process: both servers get the same clients, the same cores
// and the same delta sizes (a call row with two channels, about 1 KB of
// JSON) at the same rate.
//
//   - The baseline (wsload.Broadcaster, command wsload/cmd/wsbroadcast)
//     fans deltas, built in its own process, out to the clients of each
//     group: no storage, no bus, no authentication.
//   - The gateway is the real binary with a real NATS server and Postgres,
//     each in its own process. The benchmark plays the projector for every
//     tenant: it commits each delta to Postgres as the projector does
//     (position, changed row and delta row in one transaction; the tenants
//     due at once share it) and announces it on view.<tenant>.delta. The
//     clients authenticate with static tokens, one per tenant, and check
//     that they only ever see their own tenant.
//
// The clients share the machine with the server they measure, so they
// are lean (see package wsload): gobwas/ws framing, read by a few epoll
// loops for all connections, with no goroutine, allocation or timer per
// message. What they still cost is reported as the "test process" CPU.
//
// Every client checks that it receives every version of its tenant in
// order; gaps, duplicates, another tenant's data and malformed messages
// fail the benchmark, and clients cut off (too slow) are reported with
// the deltas they missed. Latency is receipt time minus the delta's
// committed_at (same clock), over every delta received. Delivered
// messages/s are deltas received by all clients over the time from the
// first commit to the last receipt (or the publishing time, if longer).
// Memory per connection is (VmRSS with the clients connected - VmRSS
// before) / clients, at rest after connecting and as the median during
// traffic.
//
// GATEWAY_LOAD_CLIENTS (10000), GATEWAY_LOAD_TENANTS (100),
// GATEWAY_LOAD_RATE (deltas per tenant per second, 20) and
// GATEWAY_LOAD_DURATION (20s) size a run, e.g. GATEWAY_LOAD_CLIENTS=1000
// GATEWAY_LOAD_DURATION=5s for a quick one. GATEWAY_LOAD_BIN=<path> runs
// that gateway binary instead of building ./services/gateway, to compare
// two versions. GATEWAY_LOAD_SERVERS=baseline (or gateway) runs only one
// of the two, for profiling; GATEWAY_LOAD_SERVERS=floor,gateway measures
// the floor (wsload.Broadcaster with Raw: one write(2) per message and
// nothing else, the least any server must spend) beside the gateway, to
// tell what the machine's kernel allows from what the gateway costs. GATEWAY_LOAD_PROFILE=<dir> records each
// server's CPU profile during traffic with perf (<dir>/<server>.perf.data,
// kernel included; `perf report -i` reads it) and the gateway's Go CPU
// profile during traffic and heap profile with the clients connected
// (<dir>/gateway.cpu.pprof, gateway.heap.pprof, from PPROF_ADDR).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/test/load/wsload"
	"github.com/pbxpulse/pbxpulse/test/stack"
)

// fanoutLoad sizes a run.
type fanoutLoad struct {
	clients, tenants, rate int
	duration               time.Duration
}

func (l fanoutLoad) offered() float64 { return float64(l.clients * l.rate) }

// tenant names tenant (group) g.
func (l fanoutLoad) tenant(g int) string { return wsload.GroupName(g) }

// fanoutRun is what one server's run measured.
type fanoutRun struct {
	server                string
	res                   wsload.Result
	rate                  float64       // deltas delivered per second
	p50, p99, max         time.Duration // from committed_at
	connect               time.Duration // to connect every client
	rssIdle, rssConnected float64       // MB
	rssTraffic, rssPeak   float64       // MB: median and largest sample during traffic
	clientRSS             float64       // MB of this process with the clients connected
	// CPU seconds during traffic (traffic seconds long): the server, this
	// process (the clients), Postgres and the upstream helper (NATS and the
	// projector stand-in), and the whole machine (neighbours included) and
	// its softirqs.
	traffic, cpuServer, cpuTest, cpuUpstream, cpuMachine, cpuSoftirq float64
	extra                                                            []string
}

func (r fanoutRun) perConnKB(rss float64, clients int) float64 {
	return (rss - r.rssIdle) * 1024 / float64(clients)
}

// serverUnderTest is what measure needs of a running server.
type serverUnderTest struct {
	name   string
	pid    int
	target func(g int) (url string, h http.Header)
	// publish runs the traffic; it returns when the last delta is
	// published, with the time of the first and each group's last version.
	publish func(ctx context.Context) (time.Time, func(g int) uint64, error)
	// pprofAddr: see PPROF_ADDR; otherCPU: CPU seconds used so far by what
	// else serves (Postgres, NATS and the projector stand-in). Unset for
	// the baseline.
	pprofAddr string
	otherCPU  func() float64
}

func BenchmarkGatewayFanout(b *testing.B) {
	l := fanoutLoad{
		clients:  envInt(b, "GATEWAY_LOAD_CLIENTS", 10000),
		tenants:  envInt(b, "GATEWAY_LOAD_TENANTS", 100),
		rate:     envInt(b, "GATEWAY_LOAD_RATE", 20),
		duration: envDuration(b, "GATEWAY_LOAD_DURATION", 20*time.Second),
	}
	raiseFileLimit(b, uint64(l.clients+1024))
	gateway := os.Getenv("GATEWAY_LOAD_BIN")
	if gateway == "" {
		gateway = buildService(b, "gateway")
	}
	broadcaster := buildBroadcaster(b)
	servers := os.Getenv("GATEWAY_LOAD_SERVERS")
	if servers == "" {
		servers = "baseline,gateway"
	}
	// One sub-benchmark per server, as each gets its own ten lines of log;
	// the gateway's reports the ratio to the baseline's run before it.
	var base, gw fanoutRun
	if strings.Contains(servers, "baseline") {
		b.Run("baseline", func(b *testing.B) {
			for range b.N {
				base = runBroadcastBaseline(b, broadcaster, l, false)
				reportFanout(b, l, base)
			}
		})
	}
	if strings.Contains(servers, "floor") {
		b.Run("floor", func(b *testing.B) {
			for range b.N {
				reportFanout(b, l, runBroadcastBaseline(b, broadcaster, l, true))
			}
		})
	}
	if strings.Contains(servers, "gateway") {
		b.Run("gateway", func(b *testing.B) {
			for range b.N {
				gw = runGatewayFanout(b, gateway, l)
				reportFanout(b, l, gw)
				if base.rate > 0 {
					b.ReportMetric(gw.rate/base.rate, "ratio")
					b.Logf("gateway/baseline deltas delivered per second: %.3f (target ≥ 0.70); p99 %.1f ms (target < 100 ms); %.1f KB per connection at rest, %.1f KB in traffic (target < 30 KB)",
						gw.rate/base.rate, ms(gw.p99), gw.perConnKB(gw.rssConnected, l.clients), gw.perConnKB(gw.rssTraffic, l.clients))
				}
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// reportFanout logs a run's figures and reports its metrics.
func reportFanout(b *testing.B, l fanoutLoad, r fanoutRun) {
	b.Helper()
	b.ReportMetric(r.rate, "msgs/s")
	b.ReportMetric(ms(r.p99), "p99_ms")
	b.ReportMetric(r.perConnKB(r.rssTraffic, l.clients), "KB/conn")
	b.ReportMetric(float64(r.res.Missing), "missing")
	res := r.res
	b.Logf("%s: %d clients, %d tenants × %d deltas/s for %s: delivered %.0f deltas/s (%.1f%% of the %.0f offered), %.1f MB/s; latency from committed_at p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		r.server, l.clients, l.tenants, l.rate, l.duration, r.rate, 100*r.rate/l.offered(), l.offered(),
		float64(res.Bytes)/(1<<20)/max(res.Last.Sub(res.First), l.duration).Seconds(), ms(r.p50), ms(r.p99), ms(r.max))
	lost := ""
	if res.Missing > 0 {
		lost = "LOST DELTAS: "
	}
	b.Logf("%s: %sdeltas expected %d, delivered %d, missing %d; gaps %d, duplicates %d, foreign %d, malformed %d, unasked snapshots %d; connections cut or lost %d %v",
		r.server, lost, res.Expected, res.Delivered, res.Missing, res.Gaps, res.Dups, res.Foreign, res.Malformed, res.Resyncs, res.Dropped, res.Closes)
	b.Logf("%s: RSS idle %.1f MB, %d connected %.1f MB (%.1f KB/conn), in traffic median %.1f MB (%.1f KB/conn), peak %.1f MB; connecting took %s; test process RSS %.0f MB",
		r.server, r.rssIdle, l.clients, r.rssConnected, r.perConnKB(r.rssConnected, l.clients), r.rssTraffic, r.perConnKB(r.rssTraffic, l.clients),
		r.rssPeak, r.connect.Round(time.Millisecond), r.clientRSS)
	cores := func(s float64) float64 { return s / r.traffic }
	b.Logf("%s: CPU in traffic (cores of %d): server %.2f, test process %.2f, postgres+upstream %.2f, softirq %.2f, whole machine %.2f (others %.2f); server %.1f µs per delivered delta",
		r.server, runtime.NumCPU(), cores(r.cpuServer), cores(r.cpuTest), cores(r.cpuUpstream), cores(r.cpuSoftirq), cores(r.cpuMachine),
		cores(r.cpuMachine-r.cpuServer-r.cpuTest-r.cpuUpstream-r.cpuSoftirq), 1e6*r.cpuServer/float64(max(res.Delivered, 1)))
	for _, e := range r.extra {
		b.Logf("%s: %s", r.server, e)
	}
	if res.Gaps+res.Dups+res.Foreign+res.Malformed > 0 {
		b.Errorf("%s broke the protocol: %d gaps, %d duplicates, %d messages of another tenant, %d malformed", r.server, res.Gaps, res.Dups, res.Foreign, res.Malformed)
	}
}

// measure connects a swarm of clients to a running server, lets it run
// the traffic and returns the figures.
func measure(b *testing.B, l fanoutLoad, srv serverUnderTest) fanoutRun {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := fanoutRun{server: srv.name}
	idle, err := readStatus(srv.pid)
	if err != nil {
		b.Fatal(err)
	}
	r.rssIdle = idle.rss
	var idleMem goMem
	if srv.pprofAddr != "" {
		idleMem, _ = goMemory(srv.pprofAddr)
	}

	t0 := time.Now()
	swarm, err := wsload.Dial(ctx, wsload.SwarmConfig{Clients: l.clients, Groups: l.tenants, Target: srv.target, Tenant: l.tenant})
	if err != nil {
		b.Fatalf("%s: connecting clients: %v", srv.name, err)
	}
	defer swarm.Close()
	r.connect = time.Since(t0)
	// Let the connection storm's garbage go before measuring at rest.
	time.Sleep(2 * time.Second)
	if st, err := readStatus(srv.pid); err == nil {
		r.rssConnected = st.rss
	}
	var atRest goMem
	if srv.pprofAddr != "" {
		atRest, _ = goMemory(srv.pprofAddr)
	}
	if st, err := readStatus(os.Getpid()); err == nil {
		r.clientRSS = st.rss
	}

	profiles := startProfiles(b, srv.name, srv.pid, srv.pprofAddr, l.duration)
	samples := startSampler(srv.pid)
	cpu := func() (server, test, pg, machine, softirq float64) {
		server, _, _ = procCPU(srv.pid)
		test, _, _ = procCPU(os.Getpid())
		if srv.otherCPU != nil {
			pg = srv.otherCPU()
		}
		machine, softirq = machineCPU()
		return server, test, pg, machine, softirq
	}
	s0, t0c, pg0, m0, si0 := cpu()
	start, final, err := srv.publish(ctx)
	if err != nil {
		b.Fatalf("%s: publishing: %v", srv.name, err)
	}
	last := swarm.WaitCaughtUp(ctx, final, 10*time.Second)
	r.traffic = time.Since(start).Seconds()
	s1, t1c, pg1, m1, si1 := cpu()
	r.cpuServer, r.cpuTest, r.cpuUpstream, r.cpuMachine, r.cpuSoftirq = s1-s0, t1c-t0c, pg1-pg0, m1-m0, si1-si0
	if srv.pprofAddr != "" {
		if after, err := goMemory(srv.pprofAddr); err == nil {
			kb := func(v, idle float64) float64 { return (v - idle) / float64(l.clients) / 1024 }
			r.extra = append(r.extra, fmt.Sprintf("Go memory per connection (over idle) at rest: heap in use %.1f KB, stacks %.1f KB (%d goroutines); after the traffic: heap %.1f KB, stacks %.1f KB",
				kb(atRest.heapInuse, idleMem.heapInuse), kb(atRest.stackInuse, idleMem.stackInuse), atRest.goroutines,
				kb(after.heapInuse, idleMem.heapInuse), kb(after.stackInuse, idleMem.stackInuse)))
		}
	}
	samples.stop()
	profiles()
	if rss := samples.mark(); len(rss) > 0 {
		r.rssPeak = slices.Max(rss)
		r.rssTraffic = median(rss)
	}
	r.res = swarm.Result(final)
	// Over the publishing time at least: a server that keeps up delivers
	// what is offered, not more.
	r.rate = float64(r.res.Delivered) / max(last.Sub(start), l.duration).Seconds()
	r.p50, r.p99, r.max = swarm.Latency.Quantile(0.5), swarm.Latency.Quantile(0.99), swarm.Latency.Max()
	return r
}

// machineCPU returns the CPU seconds all cores have spent busy (not idle
// or waiting for I/O), and of those in softirqs (loopback TCP's receive
// path, accounted to no process), from /proc/stat.
func machineCPU() (busy, softirq float64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		switch i {
		case 3, 4: // idle, iowait
		case 6:
			softirq = n / clockTicks
			busy += n / clockTicks
		default:
			busy += n / clockTicks
		}
	}
	return busy, softirq
}

// runBroadcastBaseline measures the bare broadcast server, or with raw
// the floor.
func runBroadcastBaseline(b *testing.B, bin string, l fanoutLoad, raw bool) fanoutRun {
	b.Helper()
	cmd := exec.Command(bin, "-groups", strconv.Itoa(l.tenants), "-rate", strconv.Itoa(l.rate), "-raw="+strconv.FormatBool(raw))
	cmd.SysProcAttr = dieWithUs
	stderr := &tail{max: 16 << 10}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer stopProcess(cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		b.Fatalf("wsbroadcast did not start: %q %v\n%s", line, err, stderr)
	}
	base := "http://" + addr
	name := "baseline"
	if raw {
		name = "floor"
	}
	srv := serverUnderTest{name: name, pid: cmd.Process.Pid,
		target: func(g int) (string, http.Header) { return fmt.Sprintf("ws://%s/ws?group=%d", addr, g), nil }}
	srv.publish = func(ctx context.Context) (time.Time, func(int) uint64, error) {
		start := time.Now()
		resp, err := http.Post(base+"/start?for="+l.duration.String(), "", nil)
		if err != nil {
			return start, nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return start, nil, fmt.Errorf("start: %s", resp.Status)
		}
		var v struct {
			Publishing bool     `json:"publishing"`
			Versions   []uint64 `json:"versions"`
		}
		for v.Publishing = true; v.Publishing; {
			select {
			case <-ctx.Done():
				return start, nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if err := getJSON(base+"/versions", &v); err != nil {
				return start, nil, err
			}
		}
		return start, func(g int) uint64 { return v.Versions[g] }, nil
	}
	r := measure(b, l, srv)
	if s := stderr.String(); s != "" {
		r.extra = append(r.extra, "stderr: "+s)
	}
	return r
}

// runGatewayFanout measures the gateway binary, with this process as the
// projector of every tenant.
func runGatewayFanout(b *testing.B, bin string, l fanoutLoad) fanoutRun {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dsn := testenv.Postgres(b)
	tenants := make([]string, l.tenants)
	tokens := make([]string, l.tenants)
	var entries []string
	for g := range tenants {
		tenants[g] = l.tenant(g)
		tokens[g] = fmt.Sprintf("load-%s-%016x", tenants[g], uint64(g)*0x9e3779b97f4a7c15)
		entries = append(entries, tenants[g]+":viewer:"+tokens[g])
	}
	up := startUpstream(b, upstreamConfig{Dir: b.TempDir(), DSN: dsn, Tenants: tenants, Rate: l.rate, Duration: l.duration})
	pg, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pg.Close(context.Background())

	addr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = dieWithUs
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "NATS_URL="+up.url, "DATABASE_URL="+dsn,
		"GATEWAY_TOKENS="+strings.Join(entries, ","), "LOG_LEVEL=warn")
	// pprof on loopback: its heap page tells where the memory goes.
	pprofAddr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Env = append(cmd.Env, "PPROF_ADDR="+pprofAddr, "METRICS_ADDR="+metricsAddr)
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("GATEWAY_LOAD_ENV"))...)
	stderr := &tail{max: 16 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer stopProcess(cmd)
	if err := waitReady(ctx, "http://"+addr+"/readyz"); err != nil {
		b.Fatalf("gateway not ready: %v\n%s", err, stderr)
	}

	var upRes upstreamResult
	var pgSamples []float64 // Postgres CPU seconds at each otherCPU call
	srv := serverUnderTest{name: "gateway", pid: cmd.Process.Pid, pprofAddr: pprofAddr,
		target: func(g int) (string, http.Header) {
			return "ws://" + addr + "/ws", http.Header{"Authorization": {"Bearer " + tokens[g]}}
		},
		publish: func(context.Context) (time.Time, func(int) uint64, error) {
			var err error
			upRes, err = up.publish()
			return upRes.Published, func(g int) uint64 { return upRes.Versions[g] }, err
		},
		otherCPU: func() float64 {
			pgs, _ := postgresCPU(ctx, pg)
			pgSamples = append(pgSamples, pgs)
			n, _, _ := procCPU(up.cmd.Process.Pid)
			return pgs + n
		},
	}
	r := measure(b, l, srv)
	logStatements(b, ctx, pg)
	// measure samples otherCPU as the traffic starts and when it ends.
	if len(pgSamples) == 2 && r.traffic > 0 {
		r.extra = append(r.extra, fmt.Sprintf("of postgres+upstream, Postgres %.2f cores", (pgSamples[1]-pgSamples[0])/r.traffic))
	}
	r.extra = append(r.extra, fmt.Sprintf("projector stand-in: %d commits in %d transactions (%.1f per transaction), each transaction p50 %.1f ms, p99 %.1f ms, max %.1f ms",
		upRes.Commits, upRes.Txs, float64(upRes.Commits)/float64(max(upRes.Txs, 1)), ms(upRes.TxP50), ms(upRes.TxP99), ms(upRes.TxMax)))
	if m, err := scrape(metricsAddr); err == nil {
		lag := 0.0
		if n := m["pbxpulse_gateway_delta_lag_seconds_count"]; n > 0 {
			lag = 1000 * m["pbxpulse_gateway_delta_lag_seconds_sum"] / n
		}
		r.extra = append(r.extra, fmt.Sprintf("/metrics: deltas fanned out %.0f, messages sent %.0f, disconnects %.0f, history gaps %.0f, mean delta lag at the hub %.1f ms",
			m["pbxpulse_gateway_deltas_total"], m["pbxpulse_gateway_messages_sent_total"], m["pbxpulse_gateway_disconnects_total"],
			m["pbxpulse_gateway_history_gaps_total"], lag))
	}
	if s := stderr.String(); s != "" {
		r.extra = append(r.extra, "stderr: "+s)
	}
	return r
}

// dieWithUs ends a server when the benchmark is killed, rather than leave
// it holding 10,000 sockets.
var dieWithUs = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

// buildBroadcaster compiles the baseline server into a temporary directory.
func buildBroadcaster(b *testing.B) string {
	b.Helper()
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "wsbroadcast")
	cmd := exec.Command("go", "build", "-o", bin, "./load/wsload/cmd/wsbroadcast")
	cmd.Dir = filepath.Join(root, "test")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build wsbroadcast: %v\n%s", err, out)
	}
	return bin
}

// raiseFileLimit lets this process, and the servers it starts (children
// inherit it), hold n descriptors: each client and each server-side
// connection is one. Without the privilege to raise the hard limit, the
// soft limit goes up to it, which is enough when it reaches n.
func raiseFileLimit(b *testing.B, n uint64) {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return
	}
	if lim.Max < n {
		b.Fatalf("%d open files needed, the hard limit is %d (raise it: ulimit -Hn)", n, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("raising the open file limit to %d: %v", lim.Max, err)
	}
}

// startProfiles records, when GATEWAY_LOAD_PROFILE names a directory, the
// server's perf profile and, from pprofAddr if set, its Go heap profile now
// and CPU profile over the next d; the function it returns stops and waits.
func startProfiles(b *testing.B, server string, pid int, pprofAddr string, d time.Duration) func() {
	b.Helper()
	dir := os.Getenv("GATEWAY_LOAD_PROFILE")
	if dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	fetch := func(path, file string) { saveProfile(b, "http://"+pprofAddr+path, filepath.Join(dir, file)) }
	if pprofAddr != "" {
		fetch("/debug/pprof/heap", server+".heap.pprof")
		wg.Go(func() {
			fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", max(1, int(d.Seconds()))), server+".cpu.pprof")
		})
	}
	perf := exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", filepath.Join(dir, server+".perf.data"))
	perf.Stdout, perf.Stderr = io.Discard, io.Discard
	if err := perf.Start(); err != nil {
		b.Logf("perf: %v", err)
		perf = nil
	}
	return func() {
		if perf != nil {
			_ = perf.Process.Signal(syscall.SIGINT)
			_ = perf.Wait()
		}
		wg.Wait()
	}
}

// goMem is what a Go server's pprof heap page says of its memory (bytes).
type goMem struct {
	heapInuse, stackInuse float64
	goroutines            int
}

// goMemory reads the runtime.MemStats that /debug/pprof/heap?debug=1
// appends, and the goroutine count.
func goMemory(pprofAddr string) (goMem, error) {
	var m goMem
	read := func(path string, line func(string)) error {
		resp, err := http.Get("http://" + pprofAddr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line(sc.Text())
		}
		return sc.Err()
	}
	err := read("/debug/pprof/heap?debug=1", func(l string) {
		if v, ok := strings.CutPrefix(l, "# HeapInuse = "); ok {
			m.heapInuse, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(l, "# Stack = "); ok { // inuse / sys
			m.stackInuse, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	})
	if err != nil {
		return m, err
	}
	err = read("/debug/pprof/goroutine?debug=1", func(l string) {
		if v, ok := strings.CutPrefix(l, "goroutine profile: total "); ok {
			m.goroutines, _ = strconv.Atoi(v)
		}
	})
	return m, err
}

func waitReady(ctx context.Context, url string) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", url, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
