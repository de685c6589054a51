package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/natsserver"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/test/load/wsload"
)

// fakeProjector commits deltas for many tenants the way the projector
// commits them (pkg/store: the tenant entered, the position advanced by
// one version, the changed rows upserted and the delta row stored, in one
// transaction), then announces each on view.<tenant>.delta as the
// projector does, with the bytes it stored. One projector serves one
// tenant; this one stands for 100 of them, so it batches the tenants due
// at the same moment into one transaction, in which each tenant's position
// still advances by exactly one version per delta.
type fakeProjector struct {
	pool     *pgxpool.Pool
	nc       *nats.Conn
	tenants  []string
	versions []uint64
	gens     []int32
	commits  int
	txTimes  wsload.Histogram // time in each transaction
}

// endpointsPerTenant is the size of each tenant's seeded view besides its
// calls, so that each client's first snapshot is of a realistic size.
const endpointsPerTenant = 24

func newFakeProjector(ctx context.Context, dsn string, nc *nats.Conn, tenants []string) (*fakeProjector, error) {
	pool, err := store.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := store.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	var super bool
	if err := pool.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil || !super {
		pool.Close()
		return nil, fmt.Errorf("the projector stand-in writes many tenants' rows in one statement: DATABASE_URL must name a superuser (%v)", err)
	}
	p := &fakeProjector{pool: pool, nc: nc, tenants: tenants, versions: make([]uint64, len(tenants)), gens: make([]int32, len(tenants))}
	for g, t := range tenants {
		if err := p.seed(ctx, g, t); err != nil {
			pool.Close()
			return nil, fmt.Errorf("seed %s: %w", t, err)
		}
	}
	return p, nil
}

// seed creates a tenant's position and commits its first version: a PBX,
// its endpoints and its calls.
func (p *fakeProjector) seed(ctx context.Context, g int, tenant string) error {
	at := timestamppb.New(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC))
	changes := []*pb.Change{{Row: &pb.Change_Pbx{Pbx: &pb.PbxView{PbxId: "pbx1", State: "connected", Banner: "Asterisk Call Manager/11.0.0", Since: at}}}}
	for i := range endpointsPerTenant {
		name := fmt.Sprintf("10%02d", i)
		changes = append(changes, &pb.Change{Row: &pb.Change_Endpoint{Endpoint: &pb.EndpointView{
			PbxId: "pbx1", Name: name, Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_EXTENSION,
			Status: "online", DeviceState: "NOT_INUSE", Registration: "registered", Reachability: "reachable", UpdatedAt: at,
			Contacts: []*pb.ContactView{{Uri: "sip:" + name + "@10.0.0.17:5060;transport=udp", Status: "Reachable", RoundtripUsec: 12034, UserAgent: "Yealink SIP-T46U 108.86.0.45"}},
		}}})
	}
	for i := range uint64(wsload.CallsPerTenant) {
		changes = append(changes, wsload.CallChange(tenant, i))
	}
	var pos store.Position
	err := store.InTenant(ctx, p.pool, tenant, pgx.TxOptions{}, func(tx pgx.Tx) (err error) {
		pos, err = store.ReadPosition(ctx, tx, tenant)
		return err
	})
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	store.QueueEnterTenant(b, tenant)
	d := &pb.Delta{Tenant: tenant, Version: pos.Version + 1, Changes: changes, CommittedAt: timestamppb.Now()}
	if _, err := store.QueueDelta(b, d, store.Position{Gen: pos.Gen, StreamSeq: pos.StreamSeq + 1}); err != nil {
		return err
	}
	if err := p.send(ctx, b); err != nil {
		return err
	}
	p.versions[g], p.gens[g] = d.Version, pos.Gen
	return nil
}

func (p *fakeProjector) send(ctx context.Context, b *pgx.Batch) error {
	return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
}

// commit is a wsload.Pace step: the next delta of each tenant due, one
// call changed, committed at now (the projector stamps committed_at when
// it prepares a commit, before its transaction), then announced.
//
// The rows and bytes are the projector's (store.QueueDelta encodes them),
// but the tenants due share three statements (positions, calls, deltas)
// instead of four each: the stand-in is not what the benchmark measures,
// and its Postgres work, which 100 separate projectors would do on their
// own machines, would otherwise take a third of a core from the two this
// machine has. It writes as the cluster's superuser, past row-level
// security, which one statement over many tenants needs.
func (p *fakeProjector) commit(ctx context.Context, due []int, now time.Time) error {
	n := len(due)
	var (
		tenants, pbxs, linkedids, states = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		gens                             = make([]int32, n)
		seqs, versions                   = make([]int64, n), make([]int64, n)
		started, committed               = make([]time.Time, n), make([]time.Time, n)
		callBodies, bodies               = make([][]byte, n), make([][]byte, n)
	)
	at := timestamppb.New(now)
	for i, g := range due {
		t := p.tenants[g]
		v := p.versions[g] + 1
		change := wsload.CallChange(t, v)
		d := &pb.Delta{Tenant: t, Version: v, Changes: []*pb.Change{change}, CommittedAt: at}
		body, err := store.QueueDelta(&pgx.Batch{}, d, store.Position{Gen: p.gens[g], StreamSeq: v})
		if err != nil {
			return err
		}
		call := change.GetCall()
		cb, err := proto.MarshalOptions{Deterministic: true}.Marshal(call)
		if err != nil {
			return err
		}
		tenants[i], gens[i], seqs[i], versions[i] = t, p.gens[g], int64(v), int64(v)
		pbxs[i], linkedids[i], states[i], started[i], callBodies[i] = call.PbxId, call.Linkedid, call.State, call.StartedAt.AsTime(), cb
		bodies[i], committed[i] = body, now
		p.versions[g] = v
	}
	b := &pgx.Batch{}
	// A tenant is due more than once when Pace fell behind: one statement
	// may not change a row twice, so each round takes a tenant once.
	for lo := 0; lo < n; {
		hi, seen := lo, map[string]bool{}
		for ; hi < n && !seen[tenants[hi]]; hi++ {
			seen[tenants[hi]] = true
		}
		b.Queue(`UPDATE projector_position p SET stream_seq = u.seq, version = u.v
			FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[]) AS u(t, g, seq, v) WHERE p.tenant = u.t AND p.gen = u.g`,
			tenants[lo:hi], gens[lo:hi], seqs[lo:hi], versions[lo:hi])
		b.Queue(`INSERT INTO calls (tenant, gen, pbx_id, linkedid, state, started_at, body)
			SELECT * FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[])
			ON CONFLICT (tenant, gen, pbx_id, linkedid) DO UPDATE SET state=excluded.state, started_at=excluded.started_at, body=excluded.body`,
			tenants[lo:hi], gens[lo:hi], pbxs[lo:hi], linkedids[lo:hi], states[lo:hi], started[lo:hi], callBodies[lo:hi])
		b.Queue(`INSERT INTO deltas (tenant, version, body, committed_at) SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[], $4::timestamptz[])`,
			tenants[lo:hi], versions[lo:hi], bodies[lo:hi], committed[lo:hi])
		lo = hi
	}
	start := time.Now()
	if err := p.send(ctx, b); err != nil {
		return fmt.Errorf("commit %d deltas: %w", n, err)
	}
	p.txTimes.Add(time.Since(start))
	p.commits += n
	for i, g := range due {
		if err := p.nc.Publish(bus.DeltaSubject(p.tenants[g]), bodies[i]); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
	}
	return nil
}

func (p *fakeProjector) close() { p.pool.Close() }

// upstreamEnv carries the upstream helper's configuration (upstreamConfig
// as JSON) from BenchmarkGatewayFanout to TestGatewayLoadUpstreamHelper.
const upstreamEnv = "GATEWAY_LOAD_UPSTREAM"

type upstreamConfig struct {
	Dir      string        `json:"dir"` // NATS store
	DSN      string        `json:"dsn"`
	Tenants  []string      `json:"tenants"`
	Rate     int           `json:"rate"`
	Duration time.Duration `json:"duration"`
}

// upstreamResult is what the upstream helper reports after publishing.
type upstreamResult struct {
	Versions  []uint64      `json:"versions"` // each tenant's last version
	Commits   int           `json:"commits"`
	Txs       int64         `json:"txs"`
	TxP50     time.Duration `json:"tx_p50"`
	TxP99     time.Duration `json:"tx_p99"`
	TxMax     time.Duration `json:"tx_max"`
	Published time.Time     `json:"published"` // when the first commit was stamped
}

// TestGatewayLoadUpstreamHelper is not a test: BenchmarkGatewayFanout runs
// the test binary again with GATEWAY_LOAD_UPSTREAM set to get what is
// upstream of the gateway, the NATS server and the projector stand-in, in
// a process of its own, as in production. In the benchmark's process their
// goroutines would queue behind 10,000 clients' and hold every
// announcement back by seconds: the clients' doing, not the gateway's.
//
// It seeds the tenants and prints "ready <nats url>", publishes when it
// reads a line from stdin and prints "done <upstreamResult as JSON>", and
// serves until stdin closes.
func TestGatewayLoadUpstreamHelper(t *testing.T) {
	env := os.Getenv(upstreamEnv)
	if env == "" {
		t.Skip("the upstream process of BenchmarkGatewayFanout")
	}
	var cfg upstreamConfig
	if err := json.Unmarshal([]byte(env), &cfg); err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.Start("127.0.0.1", -1, cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	proj, err := newFakeProjector(ctx, cfg.DSN, nc, cfg.Tenants)
	if err != nil {
		t.Fatal(err)
	}
	defer proj.close()
	fmt.Println("ready", ns.ClientURL())

	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return
	}
	res := upstreamResult{Published: time.Now()}
	err = wsload.Pace(ctx, len(cfg.Tenants), cfg.Rate, cfg.Duration, func(due []int, now time.Time) error {
		return proj.commit(ctx, due, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	res.Versions, res.Commits = proj.versions, proj.commits
	res.Txs, res.TxP50, res.TxP99, res.TxMax = proj.txTimes.Count(), proj.txTimes.Quantile(0.5), proj.txTimes.Quantile(0.99), proj.txTimes.Max()
	out, _ := json.Marshal(res)
	fmt.Println("done", string(out))
	_, _ = io.Copy(io.Discard, in)
}

// upstream is a running TestGatewayLoadUpstreamHelper.
type upstream struct {
	cmd     *exec.Cmd
	url     string
	control io.WriteCloser
	out     *bufio.Reader
	stderr  *tail
}

// startUpstream starts the upstream helper process and waits until its
// tenants are seeded; it stops when the benchmark ends.
func startUpstream(b *testing.B, cfg upstreamConfig) *upstream {
	b.Helper()
	env, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	u := &upstream{cmd: exec.Command(os.Args[0], "-test.run=^TestGatewayLoadUpstreamHelper$", "-test.bench=^$"), stderr: &tail{max: 16 << 10}}
	u.cmd.Env = append(os.Environ(), upstreamEnv+"="+string(env))
	u.cmd.SysProcAttr = dieWithUs
	u.cmd.Stderr = u.stderr
	if u.control, err = u.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := u.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	u.out = bufio.NewReader(stdout)
	if err := u.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = u.control.Close()
		stopProcess(u.cmd)
	})
	line, err := u.out.ReadString('\n')
	var ok bool
	if u.url, ok = strings.CutPrefix(strings.TrimSpace(line), "ready "); err != nil || !ok {
		b.Fatalf("upstream helper did not start: %q %v\n%s", line, err, u.stderr)
	}
	return u
}

// publish has the helper publish every delta and returns what it reports.
func (u *upstream) publish() (upstreamResult, error) {
	var res upstreamResult
	if _, err := io.WriteString(u.control, "go\n"); err != nil {
		return res, err
	}
	line, err := u.out.ReadString('\n')
	body, ok := strings.CutPrefix(strings.TrimSpace(line), "done ")
	if err != nil || !ok {
		more, _ := io.ReadAll(io.LimitReader(u.out, 4<<10)) // why it failed follows its --- FAIL line
		return res, fmt.Errorf("upstream helper: %q %v\n%s\n%s", line, err, more, u.stderr)
	}
	return res, json.Unmarshal([]byte(body), &res)
}
