package projector

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/store"
)

// Rebuild replays a tenant's stream (from its beginning, or from the first
// event stored at or after from) into a new generation of every projection
// while the live generation keeps serving, then swaps the new one in and
// removes the old one. A live projector notices the swap on its next commit
// and reloads; gateways get a delta marked rebuilt and resend snapshots.
func Rebuild(ctx context.Context, cfg Config, log *slog.Logger, from time.Time) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-projector-rebuild", cfg.Tenant, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	loc, _ := time.LoadLocation(cfg.TimeZone)
	tenant := cfg.Tenant

	var live store.Position
	err = store.InTenant(ctx, pool, tenant, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if live, err = store.ReadPosition(ctx, tx, tenant); err != nil {
			return err
		}
		// Rows left by an abandoned rebuild.
		return store.DeleteGenerations(ctx, tx, tenant, "gen > $2", live.Gen)
	})
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	gen := live.Gen + 1
	st := &state{Stream: &projection.Stream{Tenant: tenant, Views: projection.New(tenant, nil, loc), Seen: projection.NewSeen(cfg.DedupeWindow), Log: log},
		pos: store.Position{Gen: gen}}
	log.Info("rebuilding", "tenant", tenant, "generation", gen, "from", from)

	// Replay into memory, writing the rows that only grow (history, trunk
	// health) as they come; the live views are written once, at the swap.
	opt := projection.ReplayOptions{FromTime: from, Batch: cfg.BatchSize}
	start := time.Now()
	var applied int
	var pending []jetstream.Msg
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		for _, m := range pending {
			st.Apply(m)
		}
		st.pos.StreamSeq = st.Seq
		applied += len(pending)
		pending = pending[:0]
		return writeGrowing(ctx, pool, st)
	}
	replay := func(opt projection.ReplayOptions) error {
		_, err := projection.Replay(ctx, js, tenant, opt, func(m jetstream.Msg) error {
			pending = append(pending, m)
			if len(pending) >= cfg.BatchSize {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		return flush()
	}
	if err := replay(opt); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	log.Info("replayed", "events", applied, "upto_seq", st.pos.StreamSeq, "took", time.Since(start).Round(time.Millisecond))

	// Swap: lock the live position (the live projector's next commit waits
	// on it), catch up to it, write the live views and move the generation.
	var newVersion uint64
	var body []byte
	err = store.InTenant(ctx, pool, tenant, pgx.TxOptions{}, func(tx pgx.Tx) error {
		cur, err := store.LockPosition(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if cur.Gen != live.Gen {
			return fmt.Errorf("another rebuild swapped generation %d in meanwhile", cur.Gen)
		}
		if cur.Stream != "" && cur.Stream != bus.EventStream(tenant) {
			return fmt.Errorf("the live projection still counts in stream %s: start the projector once, then rebuild", cur.Stream)
		}
		if cur.StreamSeq > st.pos.StreamSeq {
			o := projection.ReplayOptions{FromSeq: st.pos.StreamSeq + 1, UntilSeq: cur.StreamSeq, Batch: cfg.BatchSize}
			if err := replay(o); err != nil {
				return err
			}
		}
		newVersion = cur.Version + 1
		d := &pb.Delta{Tenant: tenant, Version: newVersion, Rebuilt: true, CommittedAt: timestamppb.Now()}
		b := &pgx.Batch{}
		if _, err := store.QueueChanges(b, tenant, gen, snapshotRows(st.Views.Snapshot(0))); err != nil {
			return err
		}
		if body, err = store.QueueSwap(b, store.Position{Gen: gen, Stream: bus.EventStream(tenant), StreamSeq: st.pos.StreamSeq}, d); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("rebuild swap: %w", err)
	}
	if err := nc.Publish(bus.DeltaSubject(tenant), body); err != nil {
		log.Warn("delta announce failed", "version", newVersion, "err", err)
	}
	log.Info("swapped", "generation", gen, "seq", st.pos.StreamSeq, "version", newVersion)
	err = store.InTenant(ctx, pool, tenant, pgx.TxOptions{}, func(tx pgx.Tx) error {
		return store.DeleteGenerations(ctx, tx, tenant, "gen < $2", gen)
	})
	if err != nil {
		return fmt.Errorf("rebuild: removing the old generation: %w", err)
	}
	return nil
}

// writeGrowing stores what a rebuild's replay produced so far: history,
// trunk health and applied ids. Live-view changes are dropped; the swap
// writes the final views.
func writeGrowing(ctx context.Context, pool *pgxpool.Pool, st *state) error {
	var keep []*pb.Change
	for _, c := range st.Views.TakeChangesShared() {
		switch c.Row.(type) {
		case *pb.Change_History, *pb.Change_TrunkHealth:
			keep = append(keep, c)
		}
	}
	b := &pgx.Batch{}
	store.QueueEnterTenant(b, st.Tenant)
	if _, err := store.QueueChanges(b, st.Tenant, st.pos.Gen, keep); err != nil {
		return err
	}
	store.QueueSeen(b, st.Tenant, st.pos.Gen, st.pos.StreamSeq, st.Seen.Take())
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() })
}

// snapshotRows turns a snapshot into the changes that write all of it.
func snapshotRows(s *pb.Snapshot) []*pb.Change {
	var out []*pb.Change
	for _, r := range s.Pbxs {
		out = append(out, &pb.Change{Row: &pb.Change_Pbx{Pbx: r}})
	}
	for _, r := range s.Endpoints {
		out = append(out, &pb.Change{Row: &pb.Change_Endpoint{Endpoint: r}})
	}
	for _, r := range s.Calls {
		out = append(out, &pb.Change{Row: &pb.Change_Call{Call: r}})
	}
	for _, r := range s.Registrations {
		out = append(out, &pb.Change{Row: &pb.Change_Registration{Registration: r}})
	}
	for _, r := range s.Queues {
		out = append(out, &pb.Change{Row: &pb.Change_Queue{Queue: r}})
	}
	return out
}
