package load

// BenchmarkProjectorThroughput measures the projector's catch-up speed
// (issue 4: at least 50,000 events/s and 15% of a raw COPY of as many
// ten-column rows into the same Postgres) and its memory (RSS under 60 MB).
// Each pair publishes PBXPULSE_LOAD_EVENTS (default 100,000) generated
// events (test/eventgen: 4 PBXs of 500 extensions with 100 calls each going)
// to an embedded JetStream, starts the projector binary on an empty
// database and times it from its first commit to the last event; then it
// times pgx CopyFrom of the same number of rows into a ten-column table of
// the same cluster. PBXPULSE_LOAD_PAIRS (default 3) pairs run alternately;
// the medians are reported:
//
//	cd test && go test -run '^$' -bench Projector -benchtime 1x ./load/
//
// PROJECTOR_LOAD_BIN=<path> runs that projector binary instead of
// building ./services/projector, to compare two versions.
// PROJECTOR_LOAD_ENV="K=V ..." adds to the projector's environment (and
// only to its: GOMEMLIMIT=... given to `go test` would reach the NATS
// server in the benchmark's process too), e.g. to try GC settings.
//
// BenchmarkProjectorLatency runs the projector at 2,000 events/s (the same
// generated traffic, paced, with one marker call in ten events) for
// PBXPULSE_LOAD_TRAFFIC (default 10 s) and reports the p50/p99/max time from
// publishing a marker's ChannelCreated to receiving the delta that carries
// its call: publish, JetStream, projector batch and commit, announcement.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
	"github.com/pbxpulse/pbxpulse/test/eventgen"
)

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// projectorBin is PROJECTOR_LOAD_BIN, or ./services/projector built.
func projectorBin(b *testing.B) string {
	if bin := os.Getenv("PROJECTOR_LOAD_BIN"); bin != "" {
		return bin
	}
	return buildService(b, "projector")
}

func BenchmarkProjectorThroughput(b *testing.B) {
	bin := projectorBin(b)
	n := envInt(b, "PBXPULSE_LOAD_EVENTS", 100000)
	pairs := envInt(b, "PBXPULSE_LOAD_PAIRS", 3)
	events := eventgen.New(eventgen.Config{Tenant: "bench", PBXs: 4, Extensions: 500, ConcurrentCalls: 100, Seed: 7}).Take(n)
	var rates, copies, rss []float64
	for range b.N {
		for i := range pairs {
			rate, hwm := projectOnce(b, bin, events)
			cp := copyOnce(b, n)
			b.Logf("pair %d: projector %.0f events/s (RSS peak %.1f MB), raw COPY %.0f rows/s, ratio %.3f", i+1, rate, hwm, cp, rate/cp)
			rates, copies, rss = append(rates, rate), append(copies, cp), append(rss, hwm)
		}
	}
	b.ReportMetric(median(rates), "events/s")
	b.ReportMetric(median(copies), "copy_rows/s")
	b.ReportMetric(median(rates)/median(copies), "ratio")
	b.ReportMetric(slices.Max(rss), "rss_peak_MB")
}

// projectOnce stores events in a fresh stream, lets a fresh projector
// apply them all and returns its rate (events/s from its first commit to
// its last) and peak RSS (MB).
func projectOnce(b *testing.B, bin string, events []*pb.Event) (float64, float64) {
	b.Helper()
	ns := testenv.NATS(b)
	dsn := testenv.Postgres(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := bus.EnsureEventStream(ctx, js, "bench", slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	if err := eventgen.Publish(ctx, js, events); err != nil {
		b.Fatal(err)
	}
	st, err := js.Stream(ctx, bus.EventStream("bench"))
	if err != nil {
		b.Fatal(err)
	}
	last := st.CachedInfo().State.LastSeq

	var extra []string
	profile := os.Getenv("PBXPULSE_LOAD_PROFILE")
	if profile != "" {
		extra = append(extra, "PPROF_ADDR=127.0.0.1:6061")
	}
	cmd := startProjector(b, bin, ns.ClientURL(), dsn, extra...)
	defer stopProcess(cmd)
	if profile != "" {
		// The projector's CPU profile of its first seconds (its catch-up),
		// fetched before the projector is stopped.
		done := make(chan struct{})
		go func() {
			defer close(done)
			saveProfile(b, "http://127.0.0.1:6061/debug/pprof/profile?seconds=3", profile)
		}()
		defer func() { <-done }()
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var first time.Time
	var firstSeq int64
	var pgStart, projStart, selfStart float64
	for ctx.Err() == nil {
		var seq int64
		err := conn.QueryRow(ctx, `SELECT stream_seq FROM projector_position WHERE tenant='bench'`).Scan(&seq)
		now := time.Now()
		if err == nil && seq > 0 && first.IsZero() {
			first, firstSeq = now, seq
			pgStart, _ = postgresCPU(ctx, conn)
			projStart, _, _ = procCPU(cmd.Process.Pid)
			selfStart, _, _ = procCPU(os.Getpid())
		}
		if err == nil && uint64(seq) >= last {
			hwm := 0.0
			if s, err := readStatus(cmd.Process.Pid); err == nil {
				hwm = s.hwm
			}
			pg, _ := postgresCPU(ctx, conn)
			proj, _, _ := procCPU(cmd.Process.Pid)
			self, _, _ := procCPU(os.Getpid())
			b.Logf("CPU seconds while catching up (%.2f s): projector %.2f, postgres %.2f, NATS and this benchmark %.2f",
				now.Sub(first).Seconds(), proj-projStart, pg-pgStart, self-selfStart)
			logStatements(b, ctx, conn)
			return float64(seq-firstSeq) / now.Sub(first).Seconds(), hwm
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("projector did not reach seq %d", last)
	return 0, 0
}

// logStatements logs where Postgres spent its time, when the cluster runs
// with PGCLUSTER_OPTS="-c shared_preload_libraries=pg_stat_statements".
func logStatements(b *testing.B, ctx context.Context, conn *pgx.Conn) {
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return
	}
	rows, err := conn.Query(ctx, `SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 70), calls, rows, round(total_exec_time::numeric, 0)
		FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var q string
		var calls, n int64
		var ms float64
		if rows.Scan(&q, &calls, &n, &ms) == nil {
			b.Logf("%8.0f ms %6d calls %8d rows  %s", ms, calls, n, q)
		}
	}
}

// copyOnce times a raw COPY of n ten-column rows into a fresh table.
func copyOnce(b *testing.B, n int) float64 {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE raw (tenant text, pbx_id text, linkedid text, state text, caller text,
		callee text, started_at timestamptz, answered_at timestamptz, cause integer, body bytea)`); err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	body := make([]byte, 200) // about the size of a stored call view
	rows := make([][]any, n)
	for i := range rows {
		id := fmt.Sprintf("1772438400.%d", i)
		rows[i] = []any{"bench", "pbx1", id, "up", "1001", "1002", t0.Add(time.Duration(i) * time.Millisecond), t0.Add(time.Duration(i)*time.Millisecond + time.Second), int32(16), body}
	}
	start := time.Now()
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"raw"}, []string{"tenant", "pbx_id", "linkedid", "state", "caller", "callee", "started_at", "answered_at", "cause", "body"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// saveProfile fetches a pprof profile into file (PBXPULSE_LOAD_PROFILE).
func saveProfile(b *testing.B, url, file string) {
	var resp *http.Response
	var err error
	for range 250 { // the projector is starting
		if resp, err = http.Get(url); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

func startProjector(b *testing.B, bin, natsURL, dsn string, extra ...string) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "NATS_URL="+natsURL, "DATABASE_URL="+dsn, "TENANT=bench", "LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, extra...)
	cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("PROJECTOR_LOAD_ENV"))...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return cmd
}

func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func BenchmarkProjectorLatency(b *testing.B) {
	bin := projectorBin(b)
	trafficFor := envDuration(b, "PBXPULSE_LOAD_TRAFFIC", 10*time.Second)
	for range b.N {
		ns := testenv.NATS(b)
		dsn := testenv.Postgres(b)
		ctx, cancel := context.WithTimeout(context.Background(), trafficFor+2*time.Minute)
		defer cancel()
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if err := bus.EnsureEventStream(ctx, js, "bench", slog.New(slog.DiscardHandler)); err != nil {
			b.Fatal(err)
		}
		cmd := startProjector(b, bin, ns.ClientURL(), dsn)
		defer stopProcess(cmd)

		sent := map[string]time.Time{}
		var lat []time.Duration
		deltas := make(chan *nats.Msg, 65536)
		sub, err := nc.ChanSubscribe(bus.DeltaSubject("bench"), deltas)
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Unsubscribe()
		collect := func(m *nats.Msg) {
			now := time.Now()
			d := &pb.Delta{}
			if proto.Unmarshal(m.Data, d) != nil {
				return
			}
			for _, c := range d.Changes {
				if call := c.GetCall(); call != nil {
					if t, ok := sent[call.Linkedid]; ok {
						lat = append(lat, now.Sub(t))
						delete(sent, call.Linkedid)
					}
				}
			}
		}
		gen := eventgen.New(eventgen.Config{Tenant: "bench", PBXs: 4, Extensions: 500, ConcurrentCalls: 100, Seed: 11})
		// Warm up: the projector's first batch runs its migration and load.
		if err := eventgen.Publish(ctx, js, gen.Take(1000)); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)

		const rate = 2000
		tick := time.NewTicker(10 * time.Millisecond) // 20 events per tick
		end := time.Now().Add(trafficFor)
		marker := 0
		for time.Now().Before(end) {
			select {
			case <-tick.C:
			case m := <-deltas:
				collect(m)
				continue
			}
			for i := range rate / 100 {
				ev := gen.Next()
				if i%10 == 0 {
					marker++
					ev = markerCall(marker)
					sent[ev.GetChannelCreated().Channel.Linkedid] = time.Now()
				}
				msg, err := bus.Message(ev)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.Id)); err != nil {
					b.Fatal(err)
				}
			}
		}
		tick.Stop()
		drain := time.After(3 * time.Second)
	wait:
		for len(sent) > 0 {
			select {
			case m := <-deltas:
				collect(m)
			case <-drain:
				break wait
			}
		}
		if len(sent) > 0 {
			b.Fatalf("%d of %d marker calls never reached a delta", len(sent), marker)
		}
		slices.Sort(lat)
		q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.Logf("%d markers at %d events/s: p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(lat), rate, q(0.5), q(0.99), q(1))
		b.ReportMetric(q(0.5), "p50_ms")
		b.ReportMetric(q(0.99), "p99_ms")
		b.ReportMetric(q(1), "max_ms")
	}
}

// markerCall is a call of its own whose creation time the latency
// benchmark knows.
func markerCall(i int) *pb.Event {
	id := fmt.Sprintf("1900000000.%d", i)
	return &pb.Event{Id: fmt.Sprintf("marker-%d-%d", time.Now().UnixNano(), i), Tenant: "bench", PbxId: "pbx1", Source: pb.Source_SOURCE_AMI,
		PbxTime: timestamppb.Now(), Payload: &pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{Channel: &pb.Channel{
			Name: fmt.Sprintf("Local/marker%d@bench-00000000;1", i), Uniqueid: id, Linkedid: id, State: 4, CallerNum: "0"}}}}
}
