package projector

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

// rig is one NATS server and one database with projectors that come and go.
type rig struct {
	t    *testing.T
	ctx  context.Context
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
}

func newRig(t *testing.T, tenant string) *rig {
	t.Helper()
	ns := testenv.NATS(t)
	dsn := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	nc, js := testenv.JetStream(t, ns.ClientURL())
	for _, tn := range []string{tenant, "beta"} {
		if err := bus.EnsureEventStream(ctx, js, tn, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	pool, err := store.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := Config{NATSURL: ns.ClientURL(), DatabaseURL: dsn, Tenant: tenant, BatchSize: 100, BatchDelay: 2 * time.Millisecond,
		DeltaRetention: 100000, DedupeWindow: 100000, TimeZone: "UTC"}
	return &rig{t: t, ctx: ctx, nc: nc, js: js, pool: pool, cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// start runs a projector for tenant until the returned stop is called.
func (r *rig) start(tenant string) (stop func()) {
	cfg := r.cfg
	cfg.Tenant = tenant
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() { _ = Run(ctx, cfg, r.log); close(done) }()
	return func() { cancel(); <-done }
}

// publish stores events; raw publishes without a Nats-Msg-Id, so that
// JetStream stores a repeated event again (as after its duplicate window).
func (r *rig) publish(raw bool, evs ...*pb.Event) {
	r.t.Helper()
	for _, e := range evs {
		msg, err := bus.Message(e)
		if err != nil {
			r.t.Fatal(err)
		}
		var opts []jetstream.PublishOpt
		if !raw {
			opts = append(opts, jetstream.WithMsgID(e.Id))
		}
		if _, err := r.js.PublishMsg(r.ctx, msg, opts...); err != nil {
			r.t.Fatal(err)
		}
	}
}

// lastSeq is the stream sequence of tenant's last event.
func (r *rig) lastSeq(tenant string) uint64 {
	r.t.Helper()
	st, err := r.js.Stream(r.ctx, bus.EventStream(tenant))
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(r.ctx, bus.TenantEvents(tenant))
	if err != nil {
		r.t.Fatal(err)
	}
	return m.Sequence
}

// snapshot reads tenant's views as the gateway does, once the projector
// has applied everything stored.
func (r *rig) snapshot(tenant string) (*pb.Snapshot, store.Position) {
	r.t.Helper()
	want := r.lastSeq(tenant)
	var snap *pb.Snapshot
	var pos store.Position
	testenv.Eventually(r.t, 30*time.Second, func() error {
		err := store.InTenant(r.ctx, r.pool, tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) (err error) {
			snap, pos, err = store.ReadSnapshot(r.ctx, tx, tenant)
			return err
		})
		if err != nil {
			return err
		}
		if pos.StreamSeq < want {
			return fmt.Errorf("at seq %d, want %d", pos.StreamSeq, want)
		}
		return nil
	})
	return snap, pos
}

// replay is what a clean in-memory replay of the whole stream says.
func (r *rig) replay(tenant string) *pb.Snapshot {
	r.t.Helper()
	s := &projection.Stream{Tenant: tenant, Views: projection.New(tenant, nil, nil), Seen: projection.NewSeen(r.cfg.DedupeWindow), Log: r.log}
	if _, err := projection.Replay(r.ctx, r.js, tenant, projection.ReplayOptions{}, func(m jetstream.Msg) error {
		s.Apply(m)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return s.Views.Snapshot(0)
}

func sameViews(t *testing.T, got, want *pb.Snapshot) {
	t.Helper()
	got, want = proto.Clone(got).(*pb.Snapshot), proto.Clone(want).(*pb.Snapshot)
	got.Version, want.Version = 0, 0
	for _, s := range []*pb.Snapshot{got, want} { // Postgres lists calls by start time
		slices.SortFunc(s.Calls, func(a, b *pb.CallView) int {
			return strings.Compare(a.PbxId+"/"+a.Linkedid, b.PbxId+"/"+b.Linkedid)
		})
	}
	if proto.Equal(got, want) {
		return
	}
	t.Errorf("views differ: %d/%d calls, %d/%d endpoints, %d/%d queues (got/want)", len(got.Calls), len(want.Calls),
		len(got.Endpoints), len(want.Endpoints), len(got.Queues), len(want.Queues))
	for i := range min(len(got.Calls), len(want.Calls)) {
		if !proto.Equal(got.Calls[i], want.Calls[i]) {
			t.Fatalf("first differing call:\n got %v\nwant %v", got.Calls[i], want.Calls[i])
		}
	}
	t.Fatalf("got %v\nwant %v", got.Queues, want.Queues)
}

func abandon(tenant string, i int) *pb.Event {
	return event(tenant, i, func(e *pb.Event) {
		e.Payload = &pb.Event_QueueCaller{QueueCaller: &pb.QueueCaller{Action: pb.QueueCaller_ACTION_ABANDON, Queue: "support",
			Channel: &pb.Channel{Name: fmt.Sprintf("PJSIP/provider-%08x", i), Uniqueid: fmt.Sprintf("1795288171.%d", i)}, HoldTime: 30}}
	})
}

// An event stored twice under different stream sequences (JetStream no
// longer deduplicates it) changes the views once, also when the projector
// restarts between the two copies.
func TestDuplicateEventAppliedOnce(t *testing.T) {
	r := newRig(t, "acme")
	stop := r.start("acme")
	first := abandon("acme", 1)
	r.publish(true, first, first)
	snap, _ := r.snapshot("acme")
	stop()
	r.publish(true, first, abandon("acme", 2))
	stop = r.start("acme")
	defer stop()
	snap, _ = r.snapshot("acme")
	if len(snap.Queues) != 1 || snap.Queues[0].AbandonedToday != 2 {
		t.Fatalf("queues %v: want support with 2 abandoned (4 stored, one of them three times)", snap.Queues)
	}
	sameViews(t, snap, r.replay("acme"))
}

// Row-level security: a transaction of tenant acme sees none of beta's rows
// and cannot write any, whatever it asks for.
func TestTenantIsolation(t *testing.T) {
	r := newRig(t, "acme")
	defer r.start("acme")()
	defer r.start("beta")()
	r.publish(false, createCall("acme", 1), createCall("beta", 2), createCall("beta", 3), abandon("beta", 4))
	if s, _ := r.snapshot("beta"); len(s.Calls) != 2 {
		t.Fatalf("beta has %d calls, want 2", len(s.Calls))
	}
	if s, _ := r.snapshot("acme"); len(s.Calls) != 1 || len(s.Queues) != 0 {
		t.Fatalf("acme's snapshot %v: want its one call only", s)
	}
	err := store.InTenant(r.ctx, r.pool, "acme", pgx.TxOptions{}, func(tx pgx.Tx) error {
		for _, table := range append([]string{"deltas", "projector_position"}, store.ProjectionTables...) {
			var n int
			if err := tx.QueryRow(r.ctx, `SELECT count(*) FROM `+table+` WHERE tenant <> 'acme'`).Scan(&n); err != nil {
				return err
			}
			if n != 0 {
				return fmt.Errorf("acme sees %d rows of other tenants in %s", n, table)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = store.InTenant(r.ctx, r.pool, "acme", pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(r.ctx, `INSERT INTO calls (tenant, gen, pbx_id, linkedid, state, body) VALUES ('beta', 1, 'pbx1', 'x', 'up', '')`)
		return err
	})
	if err == nil {
		t.Fatal("acme wrote a row of beta")
	}
	// Without a tenant, the role sees nothing at all.
	var n int
	err = pgx.BeginFunc(r.ctx, r.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(r.ctx, `SET LOCAL ROLE pbxpulse_tenant`); err != nil {
			return err
		}
		return tx.QueryRow(r.ctx, `SELECT count(*) FROM calls`).Scan(&n)
	})
	if err != nil || n != 0 {
		t.Fatalf("no tenant set: %d calls visible, err %v", n, err)
	}
}

// A rebuild while the live projector keeps applying new events swaps in a
// generation equal to a clean replay; the live projector reloads and goes
// on in it; gateways are told with a delta marked rebuilt.
func TestRebuildWhileLive(t *testing.T) {
	r := newRig(t, "acme")
	stop := r.start("acme")
	defer func() { stop() }()
	deltas, _ := r.nc.SubscribeSync(bus.DeltaSubject("acme"))
	for i := range 300 {
		r.publish(false, createCall("acme", i))
	}
	before, pos := r.snapshot("acme")
	if pos.Gen != 1 || len(before.Calls) != 300 {
		t.Fatalf("before: generation %d, %d calls", pos.Gen, len(before.Calls))
	}
	done := make(chan error, 1)
	go func() { done <- Rebuild(r.ctx, r.cfg, r.log, time.Time{}) }()
	for i := 300; i < 600; i++ {
		r.publish(false, createCall("acme", i))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.publish(false, createCall("acme", 600), abandon("acme", 601))
	after, pos := r.snapshot("acme")
	if pos.Gen != 2 || len(after.Calls) != 601 {
		t.Fatalf("after: generation %d, %d calls; want 2, 601", pos.Gen, len(after.Calls))
	}
	sameViews(t, after, r.replay("acme"))
	var old int
	if err := r.pool.QueryRow(r.ctx, `SELECT count(*) FROM calls WHERE gen <> 2`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("%d rows of the old generation left (err %v)", old, err)
	}
	rebuilt := false
	for {
		m, err := deltas.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		d := &pb.Delta{}
		if proto.Unmarshal(m.Data, d) == nil && d.Rebuilt {
			rebuilt = true
		}
	}
	if !rebuilt {
		t.Fatal("no delta marked rebuilt was announced")
	}
}

// The views as of a past time come from the stream: calls created after
// it are not there.
func TestAsOf(t *testing.T) {
	r := newRig(t, "acme")
	for i := range 5 {
		r.publish(false, createCall("acme", i))
	}
	time.Sleep(50 * time.Millisecond)
	mid := time.Now()
	time.Sleep(50 * time.Millisecond)
	r.publish(false, &pb.Event{Id: uuid.NewString(), Tenant: "acme", PbxId: "pbx1",
		Payload: &pb.Event_ChannelHungUp{ChannelHungUp: &pb.ChannelHungUp{Channel: &pb.Channel{Uniqueid: "1795288171.0"}, Cause: 16}}})
	for i := 5; i < 8; i++ {
		r.publish(false, createCall("acme", i))
	}
	snap, seq, err := projection.AsOf(r.ctx, r.js, "acme", mid, nil, r.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Calls) != 5 || seq != 5 {
		t.Fatalf("as of the middle: %d calls at seq %d, want 5 at 5", len(snap.Calls), seq)
	}
	snap, _, err = projection.AsOf(r.ctx, r.js, "acme", time.Now(), nil, r.log)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Calls) != 7 {
		t.Fatalf("as of now: %d calls, want 7", len(snap.Calls))
	}
}
