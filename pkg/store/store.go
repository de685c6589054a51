// Package store is the Postgres side of the projections: the schema
// (embedded goose migrations), writing a commit's changed rows, and reading
// a tenant's snapshot, deltas, history and trunk health. The projector
// writes; the gateway reads. Every access goes through InTenant, so that
// row-level security confines it to one tenant.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate brings the schema up to date. Goose takes a Postgres advisory
// lock, so replicas starting together migrate once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, mustSub(migrations, "migrations"),
		goose.WithSessionLocker(mustLocker()))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Connect opens a pool and checks the server answers.
func Connect(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return pool, nil
}

// Position is where a tenant's projection stands.
type Position struct {
	// Gen is the generation of rows readers use (see Rebuild).
	Gen int32
	// Stream is the JetStream stream StreamSeq counts in; empty before the
	// first event.
	Stream    string
	StreamSeq uint64
	Version   uint64
}

// ErrGenerationChanged is returned by a commit whose generation was
// replaced by a rebuild: the projector must reload.
var ErrGenerationChanged = errors.New("projection generation changed (rebuilt): reload")

// InTenant runs fn in a transaction confined to one tenant: it acts as the
// role pbxpulse_tenant, whose row-level security shows and accepts only
// rows of the tenant named in pbxpulse.tenant.
func InTenant(ctx context.Context, pool *pgxpool.Pool, tenant string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, pool, opts, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, enterTenant, tenant); err != nil {
			return fmt.Errorf("enter tenant: %w", err)
		}
		return fn(tx)
	})
}

const enterTenant = `SELECT set_config('role', 'pbxpulse_tenant', true), set_config('pbxpulse.tenant', $1, true)`

// QueueEnterTenant queues, first on b, what InTenant does, for callers that
// send a whole transaction as one batch.
func QueueEnterTenant(b *pgx.Batch, tenant string) { b.Queue(enterTenant, tenant) }

// queryPosition reads a tenant's position; found is false when it has none.
// lock takes the row for the rest of the transaction (FOR UPDATE).
func queryPosition(ctx context.Context, q pgx.Tx, tenant string, lock bool) (pos Position, found bool, err error) {
	sql := `SELECT gen, stream, stream_seq, version FROM projector_position WHERE tenant=$1`
	if lock {
		sql += ` FOR UPDATE`
	}
	var seq, ver int64
	err = q.QueryRow(ctx, sql, tenant).Scan(&pos.Gen, &pos.Stream, &seq, &ver)
	if errors.Is(err, pgx.ErrNoRows) {
		return Position{Gen: 1}, false, nil
	}
	if err != nil {
		return pos, false, fmt.Errorf("read position: %w", err)
	}
	pos.StreamSeq, pos.Version = uint64(seq), uint64(ver)
	return pos, true, nil
}

// ReadPosition reads a tenant's position, creating it (generation 1, empty)
// the first time.
func ReadPosition(ctx context.Context, q pgx.Tx, tenant string) (Position, error) {
	pos, found, err := queryPosition(ctx, q, tenant, false)
	if err == nil && !found {
		if _, err := q.Exec(ctx, `INSERT INTO projector_position (tenant, gen, stream_seq, version) VALUES ($1, 1, 0, 0) ON CONFLICT DO NOTHING`, tenant); err != nil {
			return pos, fmt.Errorf("create position: %w", err)
		}
	}
	return pos, err
}

// MoveToStream makes a position in generation gen count in stream from its
// start: its events are now read there, and every event of the stream it
// counted in before has been applied.
func MoveToStream(ctx context.Context, q pgx.Tx, tenant string, gen int32, stream string) error {
	ct, err := q.Exec(ctx, `UPDATE projector_position SET stream=$2, stream_seq=0 WHERE tenant=$1 AND gen=$3`, tenant, stream, gen)
	if err != nil {
		return fmt.Errorf("move position to stream %s: %w", stream, err)
	}
	if ct.RowsAffected() != 1 {
		return ErrGenerationChanged
	}
	// The remembered event ids are kept by sequence of the old stream.
	if _, err := q.Exec(ctx, `DELETE FROM projector_seen WHERE tenant=$1 AND gen=$2`, tenant, gen); err != nil {
		return fmt.Errorf("move position to stream %s: %w", stream, err)
	}
	return nil
}

// LockPosition reads a tenant's position and holds its row until the
// transaction ends: a projector's commit waits meanwhile (a rebuild's swap).
func LockPosition(ctx context.Context, q pgx.Tx, tenant string) (Position, error) {
	pos, found, err := queryPosition(ctx, q, tenant, true)
	if err == nil && !found {
		err = fmt.Errorf("no position for tenant %s", tenant)
	}
	return pos, err
}

// ReadSnapshot reads a tenant's live views and their position. Run it in a
// REPEATABLE READ transaction (InTenant) so that rows and version agree.
func ReadSnapshot(ctx context.Context, q pgx.Tx, tenant string) (*pb.Snapshot, Position, error) {
	pos, found, err := queryPosition(ctx, q, tenant, false)
	if err != nil || !found {
		return &pb.Snapshot{Tenant: tenant}, pos, err
	}
	snap := &pb.Snapshot{Tenant: tenant, Version: pos.Version}
	if snap.Pbxs, err = readBodies[pb.PbxView](ctx, q, "pbx_status", "pbx_id", tenant, pos.Gen); err != nil {
		return nil, pos, err
	}
	if snap.Endpoints, err = readBodies[pb.EndpointView](ctx, q, "endpoints", "pbx_id, name", tenant, pos.Gen); err != nil {
		return nil, pos, err
	}
	if snap.Calls, err = readBodies[pb.CallView](ctx, q, "calls", "started_at, pbx_id, linkedid", tenant, pos.Gen); err != nil {
		return nil, pos, err
	}
	if snap.Registrations, err = readBodies[pb.TrunkRegistrationView](ctx, q, "trunk_registrations", "pbx_id, key", tenant, pos.Gen); err != nil {
		return nil, pos, err
	}
	if snap.Queues, err = readBodies[pb.QueueView](ctx, q, "queues", "pbx_id, queue", tenant, pos.Gen); err != nil {
		return nil, pos, err
	}
	return snap, pos, nil
}

// readBodies decodes the body column of a live-view table.
func readBodies[T any, P interface {
	*T
	proto.Message
}](ctx context.Context, q pgx.Tx, table, order, tenant string, gen int32) ([]P, error) {
	rows, _ := q.Query(ctx, `SELECT body FROM `+table+` WHERE tenant=$1 AND gen=$2 ORDER BY `+order, tenant, gen)
	var out []P
	var body []byte
	_, err := pgx.ForEachRow(rows, []any{&body}, func() error {
		m := P(new(T))
		if err := proto.Unmarshal(body, m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	return out, nil
}

// QueueChanges queues, on b, statements that store changes in generation
// gen of a tenant's projections: one statement per table, whatever the
// number of rows. It encodes every row once, and returns the changes as
// the wire form of Delta.changes (field 3), for the delta that carries them.
func QueueChanges(b *pgx.Batch, tenant string, gen int32, changes []*pb.Change) ([]byte, error) {
	return queueChanges(b, tenant, gen, changes, nil)
}

// queueChanges is QueueChanges with the changes' wire form appended to a
// copy of prefix (a delta's header), in one buffer of the exact size:
// each row is encoded once, into it, and its table's statement takes the
// row's bytes from there.
func queueChanges(b *pgx.Batch, tenant string, gen int32, changes []*pb.Change, prefix []byte) ([]byte, error) {
	var (
		pbx, endpoints, calls, regs, queues upsert
		gonePBX, goneID                     []string
		hist                                history
		health                              healthRows
	)
	sizes := make([]int, len(changes))
	total := len(prefix)
	for i, c := range changes {
		if c.Row == nil {
			continue // nothing to store or announce
		}
		sizes[i] = c.SizeVT()
		total += protowire.SizeTag(3) + protowire.SizeBytes(sizes[i])
	}
	enc := append(make([]byte, 0, total), prefix...)
	for i, c := range changes {
		if c.Row == nil {
			continue
		}
		var body []byte
		var err error
		if enc, body, err = appendChange(enc, c, sizes[i]); err != nil {
			return nil, err
		}
		switch r := c.Row.(type) {
		case *pb.Change_Pbx:
			pbx.add(body, r.Pbx.PbxId, "", r.Pbx.State, "", nil)
		case *pb.Change_Endpoint:
			endpoints.add(body, r.Endpoint.PbxId, r.Endpoint.Name, r.Endpoint.Kind.String(), r.Endpoint.Status, nil)
		case *pb.Change_Call:
			calls.add(body, r.Call.PbxId, r.Call.Linkedid, r.Call.State, "", r.Call.StartedAt)
		case *pb.Change_Registration:
			regs.add(body, r.Registration.PbxId, r.Registration.Key, r.Registration.Status, "", nil)
		case *pb.Change_CallRemoved:
			gonePBX, goneID = append(gonePBX, r.CallRemoved.PbxId), append(goneID, r.CallRemoved.Linkedid)
		case *pb.Change_Queue:
			queues.add(body, r.Queue.PbxId, r.Queue.Queue, "", "", nil)
		case *pb.Change_History:
			hist.add(r.History, body)
		case *pb.Change_TrunkHealth:
			health.add(r.TrunkHealth)
		}
	}
	if pbx.n() > 0 {
		b.Queue(`INSERT INTO pbx_status (tenant, gen, pbx_id, state, body)
			SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::bytea[])
			ON CONFLICT (tenant, gen, pbx_id) DO UPDATE SET state=excluded.state, body=excluded.body`,
			tenant, gen, pbx.k1, pbx.c1, pbx.body)
	}
	if endpoints.n() > 0 {
		b.Queue(`INSERT INTO endpoints (tenant, gen, pbx_id, name, kind, status, body)
			SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
			ON CONFLICT (tenant, gen, pbx_id, name) DO UPDATE SET kind=excluded.kind, status=excluded.status, body=excluded.body`,
			tenant, gen, endpoints.k1, endpoints.k2, endpoints.c1, endpoints.c2, endpoints.body)
	}
	if len(goneID) > 0 {
		// Each key is looked up through the primary key, whatever the
		// planner believes of the table's size: a join or an IN left to it
		// became, on a young table without statistics, a rescan of every
		// key per row. LATERAL makes the keys the outer side and OFFSET 0
		// keeps the planner from flattening the lookup back into a join.
		b.Queue(`DELETE FROM calls WHERE ctid = ANY (ARRAY(
			SELECT c.ctid FROM unnest($3::text[], $4::text[]) AS g(p, l),
				LATERAL (SELECT ctid FROM calls WHERE tenant=$1 AND gen=$2 AND pbx_id=g.p AND linkedid=g.l OFFSET 0) c))`,
			tenant, gen, gonePBX, goneID)
	}
	if calls.n() > 0 {
		b.Queue(`INSERT INTO calls (tenant, gen, pbx_id, linkedid, state, started_at, body)
			SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bytea[])
			ON CONFLICT (tenant, gen, pbx_id, linkedid) DO UPDATE SET state=excluded.state, started_at=excluded.started_at, body=excluded.body`,
			tenant, gen, calls.k1, calls.k2, calls.c1, calls.at, calls.body)
	}
	if regs.n() > 0 {
		b.Queue(`INSERT INTO trunk_registrations (tenant, gen, pbx_id, key, status, body)
			SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[])
			ON CONFLICT (tenant, gen, pbx_id, key) DO UPDATE SET status=excluded.status, body=excluded.body`,
			tenant, gen, regs.k1, regs.k2, regs.c1, regs.body)
	}
	if queues.n() > 0 {
		b.Queue(`INSERT INTO queues (tenant, gen, pbx_id, queue, body)
			SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::bytea[])
			ON CONFLICT (tenant, gen, pbx_id, queue) DO UPDATE SET body=excluded.body`,
			tenant, gen, queues.k1, queues.k2, queues.body)
	}
	hist.queue(b, tenant, gen)
	health.queue(b, tenant, gen)
	return enc, nil
}

// appendChange appends c, whose encoding is size bytes long, to enc as an
// element of Delta's changes (field 3), with vtprotobuf's encoder (half of
// proto.Marshal's time, and the same bytes: the views hold no maps). It
// returns enc and the bytes of c's row, a part of it. enc must have room.
func appendChange(enc []byte, c *pb.Change, size int) ([]byte, []byte, error) {
	enc = protowire.AppendTag(enc, 3, protowire.BytesType)
	enc = protowire.AppendVarint(enc, uint64(size))
	start := len(enc)
	enc = enc[:start+size]
	if _, err := c.MarshalToSizedBufferVT(enc[start:]); err != nil {
		return nil, nil, fmt.Errorf("encode change: %w", err)
	}
	// The change is one field, its row: the row's bytes follow its tag and
	// length.
	_, _, n := protowire.ConsumeTag(enc[start:])
	row, m := protowire.ConsumeBytes(enc[start+max(n, 0):])
	if n < 0 || m < 0 {
		return nil, nil, fmt.Errorf("encode change: %T without its row", c.Row)
	}
	return enc, row, nil
}

// upsert collects the rows of one live-view table: two key columns, two
// filter columns, a time and the encoded view.
type upsert struct {
	k1, k2, c1, c2 []string
	at             []pgtype.Timestamptz
	body           [][]byte
}

func (u *upsert) n() int { return len(u.body) }

func (u *upsert) add(body []byte, k1, k2, c1, c2 string, at *timestamppb.Timestamp) {
	u.k1, u.k2, u.c1, u.c2 = append(u.k1, k1), append(u.k2, k2), append(u.c1, c1), append(u.c2, c2)
	u.at, u.body = append(u.at, tsz(at)), append(u.body, body)
}

// history collects call records; a call that ended twice in one commit
// (its Linkedid came back) keeps its last record, as across commits.
type history struct {
	idx    map[string]int
	rows   []*pb.CallRecord
	bodies [][]byte
}

func (h *history) add(r *pb.CallRecord, body []byte) {
	if h.idx == nil {
		h.idx = map[string]int{}
	}
	k := r.PbxId + "/" + r.Linkedid
	if i, ok := h.idx[k]; ok {
		h.rows[i], h.bodies[i] = r, body
		return
	}
	h.idx[k] = len(h.rows)
	h.rows, h.bodies = append(h.rows, r), append(h.bodies, body)
}

func (h *history) queue(b *pgx.Batch, tenant string, gen int32) {
	if len(h.rows) == 0 {
		return
	}
	n := len(h.rows)
	var (
		pbx, id, disp, cause, by, cnum, cname, dnum, dname, dir, trunk, queue = make([]string, n), make([]string, n), make([]string, n), make([]int32, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		started, answered, ended                                              = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		ring, talk                                                            = make([]float64, n), make([]float64, n)
		parties                                                               = make([]string, n)
	)
	for i, r := range h.rows {
		pbx[i], id[i], disp[i], cause[i], by[i] = r.PbxId, r.Linkedid, r.Disposition, r.HangupCause, r.HangupBy
		cnum[i], cname[i], dnum[i], dname[i], dir[i], trunk[i], queue[i] = r.CallerNum, r.CallerName, r.CalleeNum, r.CalleeName, r.Direction, r.Trunk, r.Queue
		started[i], answered[i], ended[i], ring[i], talk[i] = tsz(r.StartedAt), tsz(r.AnsweredAt), tsz(r.EndedAt), r.RingSeconds, r.TalkSeconds
		parties[i] = pgTextArray(r.Parties)
	}
	bodies := h.bodies
	b.Queue(`INSERT INTO call_history (tenant, gen, pbx_id, linkedid, started_at, answered_at, ended_at, ring_seconds, talk_seconds,
			disposition, hangup_cause, hangup_by, caller_num, caller_name, callee_num, callee_name, direction, trunk, queue, parties, body)
		SELECT $1, $2, p, l, s, a, e, r, t, d, c, hb, cn, cna, dn, dna, dir, tr, q, pa::text[], bo
		FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::float8[], $9::float8[],
			$10::text[], $11::int4[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
			$20::text[], $21::bytea[]) AS x(p, l, s, a, e, r, t, d, c, hb, cn, cna, dn, dna, dir, tr, q, pa, bo)
		ON CONFLICT (tenant, gen, pbx_id, linkedid) DO UPDATE SET started_at=excluded.started_at, answered_at=excluded.answered_at,
			ended_at=excluded.ended_at, ring_seconds=excluded.ring_seconds, talk_seconds=excluded.talk_seconds, disposition=excluded.disposition,
			hangup_cause=excluded.hangup_cause, hangup_by=excluded.hangup_by, caller_num=excluded.caller_num, caller_name=excluded.caller_name,
			callee_num=excluded.callee_num, callee_name=excluded.callee_name, direction=excluded.direction, trunk=excluded.trunk,
			queue=excluded.queue, parties=excluded.parties, body=excluded.body`,
		tenant, gen, pbx, id, started, answered, ended, ring, talk, disp, cause, by, cnum, cname, dnum, dname, dir, trunk, queue, parties, bodies)
}

// pgTextArray writes a text[] literal; unnest cannot take a 2-D array of
// uneven rows, so each history row carries its parties as one literal.
func pgTextArray(ss []string) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('"')
		for _, r := range s {
			if r == '"' || r == '\\' {
				sb.WriteByte('\\')
			}
			sb.WriteRune(r)
		}
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}

type healthRows struct {
	pbx, trunk, kind, status, cause []string
	at                              []pgtype.Timestamptz
	rtt                             []int64
}

func (h *healthRows) add(s *pb.TrunkHealthSample) {
	if s.At == nil {
		return
	}
	h.pbx, h.trunk, h.kind, h.status, h.cause = append(h.pbx, s.PbxId), append(h.trunk, s.Trunk), append(h.kind, s.Kind), append(h.status, s.Status), append(h.cause, s.Cause)
	h.at, h.rtt = append(h.at, tsz(s.At)), append(h.rtt, s.RoundtripUsec)
}

func (h *healthRows) queue(b *pgx.Batch, tenant string, gen int32) {
	if len(h.at) == 0 {
		return
	}
	// Two samples of one trunk at the same instant: the first stands.
	b.Queue(`INSERT INTO trunk_health (tenant, gen, pbx_id, trunk, at, kind, status, cause, roundtrip_usec)
		SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::int8[])
		ON CONFLICT DO NOTHING`, tenant, gen, h.pbx, h.trunk, h.at, h.kind, h.status, h.cause, h.rtt)
}

// QueueDelta queues, on b, a whole projector commit in generation pos.Gen:
// the new position first (it fails with ErrGenerationChanged once a rebuild
// has replaced the generation, and waits while a rebuild swaps), then every
// change of d, then d itself when it changed anything. It returns the
// encoded delta it stores (nil when d changes nothing), so that the caller
// can announce the same bytes.
func QueueDelta(b *pgx.Batch, d *pb.Delta, pos Position) ([]byte, error) {
	t := d.Tenant
	b.Queue(`UPDATE projector_position SET stream_seq=$2, version=$3 WHERE tenant=$1 AND gen=$4`,
		t, int64(pos.StreamSeq), int64(d.Version), pos.Gen).Exec(func(ct pgconn.CommandTag) error {
		if ct.RowsAffected() != 1 {
			return ErrGenerationChanged
		}
		return nil
	})
	// The delta is its header and the rows queueChanges encodes: each row
	// is encoded once, for its table and for the delta.
	head, err := (&pb.Delta{Tenant: d.Tenant, Version: d.Version, CommittedAt: d.CommittedAt, Rebuilt: d.Rebuilt}).MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("encode delta %d: %w", d.Version, err)
	}
	body, err := queueChanges(b, t, pos.Gen, d.Changes, head)
	if err != nil {
		return nil, err
	}
	if len(d.Changes) == 0 && !d.Rebuilt {
		return nil, nil
	}
	queueDeltaRow(b, d, body)
	return body, nil
}

func queueDeltaRow(b *pgx.Batch, d *pb.Delta, body []byte) {
	b.Queue(`INSERT INTO deltas (tenant, version, body, committed_at) VALUES ($1,$2,$3,$4)`, d.Tenant, int64(d.Version), body, tsz(d.CommittedAt))
}

// QueueSwap queues, on b, what makes generation pos.Gen the one readers
// use, at pos, and the delta d (marked rebuilt) that tells them; it
// returns the encoded delta to announce. The caller holds the position
// (LockPosition) and has queued the generation's live views.
func QueueSwap(b *pgx.Batch, pos Position, d *pb.Delta) ([]byte, error) {
	b.Queue(`UPDATE projector_position SET gen=$2, stream=$3, stream_seq=$4, version=$5 WHERE tenant=$1`,
		d.Tenant, pos.Gen, pos.Stream, int64(pos.StreamSeq), int64(d.Version))
	body, err := proto.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta %d: %w", d.Version, err)
	}
	queueDeltaRow(b, d, body)
	return body, nil
}

// ProjectionTables hold generation-numbered rows (all but deltas and the position).
var ProjectionTables = []string{"pbx_status", "endpoints", "calls", "trunk_registrations", "queues", "call_history", "trunk_health", "projector_seen"}

// DeleteGenerations deletes a tenant's rows of the generations matching
// cond, an SQL condition on gen with $2 standing for gen ("gen < $2").
func DeleteGenerations(ctx context.Context, q pgx.Tx, tenant, cond string, gen int32) error {
	for _, t := range ProjectionTables {
		if _, err := q.Exec(ctx, `DELETE FROM `+t+` WHERE tenant=$1 AND `+cond, tenant, gen); err != nil {
			return fmt.Errorf("delete %s rows: %w", t, err)
		}
	}
	return nil
}

// QueueSeen queues the record of the event ids a commit applied.
func QueueSeen(b *pgx.Batch, tenant string, gen int32, lastSeq uint64, ids []byte) {
	if len(ids) > 0 {
		b.Queue(`INSERT INTO projector_seen (tenant, gen, last_seq, ids) VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING`, tenant, gen, int64(lastSeq), ids)
	}
}

// ReadSeen returns the recorded event ids of commits after afterSeq, oldest first.
func ReadSeen(ctx context.Context, q pgx.Tx, tenant string, gen int32, afterSeq uint64) ([][]byte, error) {
	rows, _ := q.Query(ctx, `SELECT ids FROM projector_seen WHERE tenant=$1 AND gen=$2 AND last_seq > $3 ORDER BY last_seq`, tenant, gen, int64(afterSeq))
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("read projector_seen: %w", err)
	}
	return out, nil
}

// PruneSeen forgets the ids of commits up to seq.
func PruneSeen(ctx context.Context, q pgx.Tx, tenant string, gen int32, upto uint64) error {
	if _, err := q.Exec(ctx, `DELETE FROM projector_seen WHERE tenant=$1 AND gen=$2 AND last_seq <= $3`, tenant, gen, int64(upto)); err != nil {
		return fmt.Errorf("prune projector_seen: %w", err)
	}
	return nil
}

// PruneDeltas keeps the newest keep deltas of a tenant.
func PruneDeltas(ctx context.Context, q pgx.Tx, tenant string, upto, keep uint64) error {
	if upto <= keep {
		return nil
	}
	_, err := q.Exec(ctx, `DELETE FROM deltas WHERE tenant=$1 AND version <= $2`, tenant, int64(upto-keep))
	if err != nil {
		return fmt.Errorf("prune deltas: %w", err)
	}
	return nil
}

// ReadDeltas returns the deltas of a tenant with after < version <= upto
// (upto 0: no upper bound), oldest first, at most limit. ok is false when
// the oldest one needed has already been pruned.
func ReadDeltas(ctx context.Context, q pgx.Tx, tenant string, after, upto uint64, limit int) (out []*pb.Delta, ok bool, err error) {
	if upto == 0 {
		upto = 1<<63 - 1
	}
	rows, _ := q.Query(ctx, `SELECT version, body FROM deltas WHERE tenant=$1 AND version > $2 AND version <= $3 ORDER BY version LIMIT $4`,
		tenant, int64(after), int64(upto), limit)
	var v int64
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&v, &body}, func() error {
		d := &pb.Delta{}
		if err := proto.Unmarshal(body, d); err != nil {
			return fmt.Errorf("delta %d: %w", v, err)
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("read deltas: %w", err)
	}
	return out, len(out) == 0 || out[0].Version == after+1, nil
}

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

func tsz(t *timestamppb.Timestamp) pgtype.Timestamptz {
	if t == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.AsTime(), Valid: true}
}
