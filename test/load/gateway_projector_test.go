package load

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
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
	txs      int
	commits  int
	txTime   time.Duration // spent in transactions
	// ends maps each commit's committed_at (unix ns) to when its
	// transaction ended (unix ns), for the clients' second clock.
	ends sync.Map
}

// committed returns when the transaction of the deltas stamped at ended.
func (p *fakeProjector) committed(at time.Time) (time.Time, bool) {
	v, ok := p.ends.Load(at.UnixNano())
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, v.(int64)), true
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
func (p *fakeProjector) commit(ctx context.Context, due []int, now time.Time) error {
	b := &pgx.Batch{}
	bodies := make([][]byte, len(due))
	at := timestamppb.New(now)
	for i, g := range due {
		t := p.tenants[g]
		v := p.versions[g] + 1
		store.QueueEnterTenant(b, t)
		d := &pb.Delta{Tenant: t, Version: v, Changes: []*pb.Change{wsload.CallChange(t, v)}, CommittedAt: at}
		body, err := store.QueueDelta(b, d, store.Position{Gen: p.gens[g], StreamSeq: v})
		if err != nil {
			return err
		}
		bodies[i] = body
		p.versions[g] = v
	}
	start := time.Now()
	if err := p.send(ctx, b); err != nil {
		return fmt.Errorf("commit %d deltas: %w", len(due), err)
	}
	end := time.Now()
	p.ends.Store(now.UnixNano(), end.UnixNano())
	p.txTime += end.Sub(start)
	p.txs++
	p.commits += len(due)
	for i, g := range due {
		if err := p.nc.Publish(bus.DeltaSubject(p.tenants[g]), bodies[i]); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
	}
	return nil
}

func (p *fakeProjector) close() { p.pool.Close() }
