// Package projector keeps a tenant's live views in Postgres from the event
// stream: each batch of events is applied in memory and committed in one
// transaction together with the stream position, so a restart resumes
// exactly after the last committed event; then the delta is announced.
package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/config"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
	"github.com/pbxpulse/pbxpulse/services/projector/internal/projection"
)

// Config is the projector's configuration, read from the environment.
type Config struct {
	// NATSURL is the NATS server or cluster holding the event stream.
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// DatabaseURL is the Postgres database of the projections.
	DatabaseURL string `env:"DATABASE_URL,required"`
	// Tenant whose events this projector applies (a deployment per tenant).
	Tenant string `env:"TENANT" envDefault:"default"`
	// BatchSize is the most events applied in one transaction.
	BatchSize int `env:"PROJECTOR_BATCH_SIZE" envDefault:"1000"`
	// BatchDelay bounds how long an event waits for its batch to fill.
	BatchDelay time.Duration `env:"PROJECTOR_BATCH_DELAY" envDefault:"5ms"`
	// DeltaRetention is how many past deltas are kept for catching up.
	DeltaRetention uint64 `env:"PROJECTOR_DELTA_RETENTION" envDefault:"10000"`
	config.Logging
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := config.CheckToken("TENANT", c.Tenant); err != nil {
		return err
	}
	if c.BatchSize < 1 || c.BatchDelay <= 0 {
		return errors.New("PROJECTOR_BATCH_SIZE and PROJECTOR_BATCH_DELAY must be positive")
	}
	return nil
}

// Run projects until ctx ends. Losing NATS or Postgres is not fatal: the
// projector reloads its state from Postgres and resumes from the position
// stored there.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-projector", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	p := &projector{cfg: cfg, log: log, nc: nc, js: js, pool: pool}
	backoff := 200 * time.Millisecond
	migrated := false
	for ctx.Err() == nil {
		if !migrated {
			if err = store.Migrate(ctx, pool); err == nil {
				migrated = true
			}
		}
		if migrated {
			err = p.runOnce(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("projector restarting from the stored position", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

type projector struct {
	cfg  Config
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	pool *pgxpool.Pool
}

func (p *projector) load(ctx context.Context) (*projection.Views, store.Position, error) {
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, store.Position{}, fmt.Errorf("load: %w", err)
	}
	defer tx.Rollback(ctx)
	snap, pos, err := store.ReadSnapshot(ctx, tx, p.cfg.Tenant)
	if err != nil {
		return nil, pos, err
	}
	return projection.New(p.cfg.Tenant, snap), pos, nil
}

func (p *projector) runOnce(ctx context.Context) error {
	views, pos, err := p.load(ctx)
	if err != nil {
		return err
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.TenantEvents(p.cfg.Tenant)}}
	if pos.StreamSeq > 0 {
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = pos.StreamSeq + 1
	}
	cons, err := p.js.OrderedConsumer(ctx, bus.StreamEvents, occ)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * p.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer it.Stop()
	msgs := make(chan jetstream.Msg, p.cfg.BatchSize)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				errc <- err
				return
			}
			msgs <- m
		}
	}()
	p.log.Info("projecting", "tenant", p.cfg.Tenant, "from_seq", pos.StreamSeq+1, "version", pos.Version)

	batch := make([]jetstream.Msg, 0, p.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("consume: %w", err)
		case m := <-msgs:
			if len(batch) == 0 {
				timer.Reset(p.cfg.BatchDelay)
			}
			batch = append(batch, m)
			if len(batch) < p.cfg.BatchSize {
				continue
			}
		case <-timer.C:
		}
		if len(batch) == 0 {
			continue
		}
		timer.Stop()
		if err := p.commit(ctx, views, &pos, batch); err != nil {
			return err
		}
		batch = batch[:0]
	}
}

func (p *projector) commit(ctx context.Context, views *projection.Views, pos *store.Position, batch []jetstream.Msg) error {
	last := pos.StreamSeq
	for _, m := range batch {
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		if md.Sequence.Stream <= last {
			continue // already applied (redelivery after a consumer reset)
		}
		last = md.Sequence.Stream
		ev := &pb.Event{}
		if err := proto.Unmarshal(m.Data(), ev); err != nil {
			// A foreign or corrupt message cannot be applied; skipping it
			// (and saying so) keeps the projection moving.
			p.log.Error("undecodable event skipped", "subject", m.Subject(), "seq", last, "err", err)
			continue
		}
		if ev.GetTenant() != p.cfg.Tenant {
			p.log.Error("event of another tenant skipped", "subject", m.Subject(), "seq", last)
			continue
		}
		views.Apply(ev)
	}
	if last == pos.StreamSeq {
		return nil
	}
	changes := views.TakeChanges()
	d := &pb.Delta{Tenant: p.cfg.Tenant, Version: pos.Version, Changes: changes, CommittedAt: timestamppb.Now()}
	if len(changes) > 0 {
		d.Version++
	}
	b := &pgx.Batch{}
	body, err := store.QueueDelta(b, d, last)
	if err != nil {
		return err
	}
	if err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	}); err != nil {
		return fmt.Errorf("commit up to seq %d: %w", last, err)
	}
	pos.StreamSeq = last
	if len(changes) == 0 {
		return nil
	}
	pos.Version = d.Version
	// Core NATS is enough: a gateway that misses this reads the delta from
	// Postgres when it sees the next version or polls.
	if err := p.nc.Publish(bus.DeltaSubject(p.cfg.Tenant), body); err != nil {
		p.log.Warn("delta announce failed", "version", d.Version, "err", err)
	}
	if d.Version%1000 == 0 {
		if err := store.PruneDeltas(ctx, p.pool, p.cfg.Tenant, d.Version, p.cfg.DeltaRetention); err != nil {
			p.log.Warn("prune deltas", "err", err)
		}
	}
	return nil
}
