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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	"github.com/pbxpulse/pbxpulse/pkg/config"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/service"
	"github.com/pbxpulse/pbxpulse/pkg/store"
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
	BatchSize int `env:"PROJECTOR_BATCH_SIZE" envDefault:"2500"`
	// BatchDelay bounds how long an event waits for its batch to fill.
	BatchDelay time.Duration `env:"PROJECTOR_BATCH_DELAY" envDefault:"5ms"`
	// DeltaRetention is how many past deltas are kept for catching up.
	DeltaRetention uint64 `env:"PROJECTOR_DELTA_RETENTION" envDefault:"10000"`
	// DedupeWindow is how many stream sequences an event id is remembered
	// for: the same event stored again within it is not applied twice.
	DedupeWindow uint64 `env:"PROJECTOR_DEDUPE_WINDOW" envDefault:"100000"`
	// HistoryRetention is how long call history and trunk health are kept,
	// counted back from the newest event (0: forever).
	HistoryRetention time.Duration `env:"HISTORY_RETENTION" envDefault:"2160h"`
	// TimeZone decides where a day starts for the queues' daily figures.
	TimeZone string `env:"PROJECTOR_TZ" envDefault:"UTC"`
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
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("PROJECTOR_TZ: %w", err)
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
	// Every event is decoded and every changed row encoded: GOGC=200 halves
	// the GC's share of the CPU. While catching up the limit sets the GC's
	// pace: 44 MiB keeps the RSS under 60 MB (a peak of 55-56 MB) and costs
	// a tenth less CPU than 40 MiB did (docs/benchmarks.md).
	service.TuneGC(log, 200, 44<<20)
	nc, js, err := bus.Open(ctx, cfg.NATSURL, "pbxpulse-projector", cfg.Tenant, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	pool, err := store.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	loc, _ := time.LoadLocation(cfg.TimeZone) // checked by Validate
	p := &projector{cfg: cfg, log: log, nc: nc, js: js, pool: pool, loc: loc}
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
		if errors.Is(err, store.ErrGenerationChanged) {
			log.Info("projection rebuilt elsewhere; reloading")
			backoff = 200 * time.Millisecond
			continue
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
	loc  *time.Location
}

// state is what a projector holds between commits: the views and recent
// event ids as a projection.Stream, and the position they stand at.
type state struct {
	*projection.Stream
	pos store.Position
}

// load reads a tenant's views, position and recent event ids.
func load(ctx context.Context, pool *pgxpool.Pool, tenant string, loc *time.Location, window uint64, log *slog.Logger) (*state, error) {
	st := &state{Stream: &projection.Stream{Tenant: tenant, Seen: projection.NewSeen(window), Log: log}}
	stream := bus.EventStream(tenant)
	err := store.InTenant(ctx, pool, tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if _, err := store.ReadPosition(ctx, tx, tenant); err != nil {
			return err
		}
		snap, pos, err := store.ReadSnapshot(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if pos.Stream != stream {
			// Every event of the stream it read before (the single stream
			// of earlier versions) is applied: go on from the start of the
			// tenant's own stream, which holds what came after.
			if pos.Stream != "" {
				log.Warn("events are now read from the tenant's own stream; continuing from its start",
					"tenant", tenant, "was", pos.Stream, "at_seq", pos.StreamSeq, "now", stream)
			}
			if err := store.MoveToStream(ctx, tx, tenant, pos.Gen, stream); err != nil {
				return err
			}
			pos.Stream, pos.StreamSeq = stream, 0
		}
		st.pos, st.Seq, st.Views = pos, pos.StreamSeq, projection.New(tenant, snap, loc)
		ids, err := store.ReadSeen(ctx, tx, tenant, pos.Gen, pos.StreamSeq-min(pos.StreamSeq, window))
		for _, b := range ids {
			st.Seen.Load(b, pos.StreamSeq)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return st, nil
}

func (p *projector) runOnce(ctx context.Context) error {
	st, err := load(ctx, p.pool, p.cfg.Tenant, p.loc, p.cfg.DedupeWindow, p.log)
	if err != nil {
		return err
	}
	// The tenant's own stream, read without a filter: with one, the
	// server would match every message's subject (a third of its work).
	var occ jetstream.OrderedConsumerConfig
	if st.pos.StreamSeq > 0 {
		occ.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		occ.OptStartSeq = st.pos.StreamSeq + 1
	}
	cons, err := p.js.OrderedConsumer(ctx, bus.EventStream(p.cfg.Tenant), occ)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	// Messages are decoded as they arrive, on the consumer's goroutine,
	// ahead of the loop that applies them: the decoding (a third of the
	// work per event) runs on another core. A callback rather than the
	// Messages iterator: its Next arms a heartbeat timer per message.
	msgs := make(chan projection.Decoded, min(p.cfg.BatchSize, decodeAhead))
	hctx, hcancel := context.WithCancel(ctx) // frees a blocked callback when this returns
	defer hcancel()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- projection.Decode(m):
		case <-hctx.Done():
		}
	}, jetstream.PullMaxMessages(min(2*p.cfg.BatchSize, 2000)), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// The ordered consumer recreates itself after these; a closed
		// one is seen on cc.Closed.
		p.log.Debug("consumer", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer cc.Stop()
	closed := cc.Closed() // each call starts a goroutine that waits for the end
	p.log.Info("projecting", "tenant", p.cfg.Tenant, "generation", st.pos.Gen, "from_seq", st.pos.StreamSeq+1, "version", st.pos.Version)

	batch := make([]projection.Decoded, 0, p.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	// One commit is in flight while the next batch is applied: Postgres
	// and the projector work at the same time, and commits stay in order.
	// A batch whose delay is up while a commit is in flight keeps filling
	// until that commit ends, as it could not go out before anyway: under
	// load batches grow, with fewer rows and statements per event, and an
	// event waits no longer than it did.
	var inflight *commit
	defer func() {
		if inflight != nil {
			<-inflight.done
		}
	}()
	due := false // the batch's delay is up
	for {
		var committed <-chan error
		if inflight != nil {
			committed = inflight.done
		}
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("consume: the consumer stopped")
		case err := <-committed:
			c := inflight
			inflight = nil
			if err := p.finish(c, err); err != nil {
				return err
			}
			if !due {
				continue
			}
		case <-prune.C:
			p.prune(ctx, st)
			continue
		case m := <-msgs:
			if len(batch) == 0 {
				timer.Reset(p.cfg.BatchDelay)
			}
			batch = append(batch, m)
			// Take what else is waiting without going round the select.
		more:
			for len(batch) < p.cfg.BatchSize {
				select {
				case m := <-msgs:
					batch = append(batch, m)
				default:
					break more
				}
			}
			if len(batch) < p.cfg.BatchSize {
				continue
			}
		case <-timer.C:
			if inflight != nil {
				due = true
				continue
			}
		}
		if len(batch) == 0 {
			continue
		}
		timer.Stop()
		due = false
		next, err := p.prepare(st, batch)
		if err != nil {
			return err
		}
		batch = batch[:0]
		if inflight != nil {
			c := inflight
			inflight = nil
			if err := p.finish(c, <-c.done); err != nil {
				return err
			}
		}
		if next != nil {
			inflight = next
			go p.send(ctx, next)
		}
	}
}

// decodeAhead is the most events decoded ahead of the batch being applied:
// enough to keep the other core busy; more would only add to the live
// heap, which every garbage collection marks.
const decodeAhead = 2500

// commit is one batch on its way to Postgres: position, rows, applied ids
// and delta in one transaction.
type commit struct {
	b       *pgx.Batch
	seq     uint64
	version uint64
	body    []byte // the delta to announce; nil when nothing changed
	done    chan error
}

// prepare applies a batch to the views and builds its commit (nil when the
// batch was all already applied).
func (p *projector) prepare(st *state, batch []projection.Decoded) (*commit, error) {
	before := st.pos
	for _, m := range batch {
		st.ApplyDecoded(m)
	}
	if st.Seq == before.StreamSeq {
		return nil, nil
	}
	st.pos.StreamSeq = st.Seq
	changes := st.Views.TakeChangesShared() // encoded below, before the next Apply
	d := &pb.Delta{Tenant: p.cfg.Tenant, Version: before.Version, Changes: changes, CommittedAt: timestamppb.Now()}
	if len(changes) > 0 {
		d.Version++
	}
	st.pos.Version = d.Version
	c := &commit{b: &pgx.Batch{}, seq: st.pos.StreamSeq, version: d.Version, done: make(chan error, 1)}
	store.QueueEnterTenant(c.b, p.cfg.Tenant)
	var err error
	if c.body, err = store.QueueDelta(c.b, d, store.Position{Gen: st.pos.Gen, StreamSeq: st.pos.StreamSeq}); err != nil {
		return nil, err
	}
	store.QueueSeen(c.b, p.cfg.Tenant, st.pos.Gen, st.pos.StreamSeq, st.Seen.Take())
	return c, nil
}

// send runs a commit's transaction; the result arrives on c.done.
func (p *projector) send(ctx context.Context, c *commit) {
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, c.b).Close()
	})
	if err != nil {
		err = fmt.Errorf("commit up to seq %d: %w", c.seq, err)
	}
	c.done <- err
}

// finish announces the delta of a commit that ended with err.
func (p *projector) finish(c *commit, err error) error {
	if err != nil {
		return err
	}
	if c.body == nil {
		return nil
	}
	// Core NATS is enough: a gateway that misses this reads the delta from
	// Postgres when it sees the next version or polls.
	if err := p.nc.Publish(bus.DeltaSubject(p.cfg.Tenant), c.body); err != nil {
		p.log.Warn("delta announce failed", "version", c.version, "err", err)
	}
	return nil
}

// prune applies the retention of deltas, history and the applied-id record.
// It deletes only what no reader and no restart needs.
func (p *projector) prune(ctx context.Context, st *state) {
	err := store.InTenant(ctx, p.pool, p.cfg.Tenant, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := store.PruneDeltas(ctx, tx, p.cfg.Tenant, st.pos.Version, p.cfg.DeltaRetention); err != nil {
			return err
		}
		if st.pos.StreamSeq > p.cfg.DedupeWindow {
			if err := store.PruneSeen(ctx, tx, p.cfg.Tenant, st.pos.Gen, st.pos.StreamSeq-p.cfg.DedupeWindow); err != nil {
				return err
			}
		}
		if p.cfg.HistoryRetention > 0 && !st.Latest.IsZero() {
			return store.PruneHistory(ctx, tx, p.cfg.Tenant, st.pos.Gen, st.Latest.Add(-p.cfg.HistoryRetention))
		}
		return nil
	})
	if err != nil {
		p.log.Warn("prune", "err", err)
	}
}
