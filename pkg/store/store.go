// Package store is the Postgres side of the live views: the schema (embedded
// goose migrations), writing a commit's changed rows, and reading a tenant's
// snapshot and its deltas. The projector writes; the gateway reads.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
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
	StreamSeq uint64
	Version   uint64
}

// ReadSnapshot reads a tenant's whole live view and its position. Run it in
// a REPEATABLE READ transaction so that rows and version agree.
func ReadSnapshot(ctx context.Context, q pgx.Tx, tenant string) (*pb.Snapshot, Position, error) {
	var pos Position
	err := q.QueryRow(ctx, `SELECT stream_seq, version FROM projector_position WHERE tenant=$1`, tenant).Scan(&pos.StreamSeq, &pos.Version)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, pos, fmt.Errorf("read position: %w", err)
	}
	snap := &pb.Snapshot{Tenant: tenant, Version: pos.Version}

	var (
		pbxID, state, detail, banner string
		attempt                      int32
		since                        *time.Time
	)
	rows, _ := q.Query(ctx, `SELECT pbx_id, state, detail, attempt, banner, since FROM pbx_status WHERE tenant=$1 ORDER BY pbx_id`, tenant)
	_, err = pgx.ForEachRow(rows, []any{&pbxID, &state, &detail, &attempt, &banner, &since}, func() error {
		snap.Pbxs = append(snap.Pbxs, &pb.PbxView{PbxId: pbxID, State: state, Detail: detail, Attempt: uint32(attempt), Banner: banner, Since: ts(since)})
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("read pbx_status: %w", err)
	}

	endpoints := map[string]*pb.EndpointView{}
	var (
		name, tech, kind, status, devState string
		active                             int32
		updated                            *time.Time
	)
	rows, _ = q.Query(ctx, `SELECT pbx_id, name, technology, kind, status, device_state, active_channels, updated_at
		FROM endpoints WHERE tenant=$1 ORDER BY pbx_id, name`, tenant)
	_, err = pgx.ForEachRow(rows, []any{&pbxID, &name, &tech, &kind, &status, &devState, &active, &updated}, func() error {
		e := &pb.EndpointView{PbxId: pbxID, Name: name, Technology: pb.Technology(pb.Technology_value[tech]),
			Kind: pb.EndpointKind(pb.EndpointKind_value[kind]), Status: status, DeviceState: devState,
			ActiveChannels: uint32(active), UpdatedAt: ts(updated)}
		snap.Endpoints = append(snap.Endpoints, e)
		endpoints[pbxID+"/"+name] = e
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("read endpoints: %w", err)
	}
	var c pb.ContactView
	var endpoint string
	rows, _ = q.Query(ctx, `SELECT pbx_id, endpoint, uri, status, roundtrip_usec, user_agent, via_address, expiration_time
		FROM contacts WHERE tenant=$1 ORDER BY pbx_id, endpoint, uri`, tenant)
	_, err = pgx.ForEachRow(rows, []any{&pbxID, &endpoint, &c.Uri, &c.Status, &c.RoundtripUsec, &c.UserAgent, &c.ViaAddress, &c.ExpirationTime}, func() error {
		if e := endpoints[pbxID+"/"+endpoint]; e != nil {
			e.Contacts = append(e.Contacts, proto.Clone(&c).(*pb.ContactView))
		}
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("read contacts: %w", err)
	}

	calls := map[string]*pb.CallView{}
	var cv pb.CallView
	var started, answered *time.Time
	rows, _ = q.Query(ctx, `SELECT pbx_id, linkedid, caller_num, caller_name, callee_num, callee_name, state, started_at, answered_at, bridge_id
		FROM calls WHERE tenant=$1 ORDER BY started_at, pbx_id, linkedid`, tenant)
	_, err = pgx.ForEachRow(rows, []any{&cv.PbxId, &cv.Linkedid, &cv.CallerNum, &cv.CallerName, &cv.CalleeNum, &cv.CalleeName, &cv.State, &started, &answered, &cv.BridgeId}, func() error {
		v := proto.Clone(&cv).(*pb.CallView)
		v.StartedAt, v.AnsweredAt = ts(started), ts(answered)
		snap.Calls = append(snap.Calls, v)
		calls[v.PbxId+"/"+v.Linkedid] = v
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("read calls: %w", err)
	}
	var ch pb.Channel
	rows, _ = q.Query(ctx, `SELECT pbx_id, uniqueid, linkedid, name, state, state_desc, caller_num, caller_name, connected_num, connected_name, context, exten, bridge_id, application
		FROM channels WHERE tenant=$1 ORDER BY pbx_id, linkedid, position`, tenant)
	_, err = pgx.ForEachRow(rows, []any{&pbxID, &ch.Uniqueid, &ch.Linkedid, &ch.Name, &ch.State, &ch.StateDesc, &ch.CallerNum, &ch.CallerName, &ch.ConnectedNum, &ch.ConnectedName, &ch.Context, &ch.Exten, &ch.BridgeId, &ch.Application}, func() error {
		if v := calls[pbxID+"/"+ch.Linkedid]; v != nil {
			v.Channels = append(v.Channels, proto.Clone(&ch).(*pb.Channel))
		}
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("read channels: %w", err)
	}

	var r pb.TrunkRegistrationView
	rows, _ = q.Query(ctx, `SELECT pbx_id, key, client_uri, server_uri, status, cause, updated_at
		FROM trunk_registrations WHERE tenant=$1 ORDER BY pbx_id, key`, tenant)
	_, err = pgx.ForEachRow(rows, []any{&r.PbxId, &r.Key, &r.ClientUri, &r.ServerUri, &r.Status, &r.Cause, &updated}, func() error {
		v := proto.Clone(&r).(*pb.TrunkRegistrationView)
		v.UpdatedAt = ts(updated)
		snap.Registrations = append(snap.Registrations, v)
		return nil
	})
	if err != nil {
		return nil, pos, fmt.Errorf("read trunk_registrations: %w", err)
	}
	return snap, pos, nil
}

// QueueDelta queues, on b, the statements that store every change of d and
// the new position, and the delta itself when it changed anything. It
// returns the encoded delta it stores (nil when d changes nothing), so that
// the caller can announce the same bytes.
func QueueDelta(b *pgx.Batch, d *pb.Delta, streamSeq uint64) ([]byte, error) {
	t := d.Tenant
	for _, c := range d.Changes {
		switch r := c.Row.(type) {
		case *pb.Change_Pbx:
			v := r.Pbx
			b.Queue(`INSERT INTO pbx_status (tenant, pbx_id, state, detail, attempt, banner, since) VALUES ($1,$2,$3,$4,$5,$6,$7)
				ON CONFLICT (tenant, pbx_id) DO UPDATE SET state=$3, detail=$4, attempt=$5, banner=$6, since=$7`,
				t, v.PbxId, v.State, v.Detail, int32(v.Attempt), v.Banner, tm(v.Since))
		case *pb.Change_Endpoint:
			v := r.Endpoint
			b.Queue(`INSERT INTO endpoints (tenant, pbx_id, name, technology, kind, status, device_state, active_channels, updated_at)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
				ON CONFLICT (tenant, pbx_id, name) DO UPDATE SET technology=$4, kind=$5, status=$6, device_state=$7, active_channels=$8, updated_at=$9`,
				t, v.PbxId, v.Name, v.Technology.String(), v.Kind.String(), v.Status, v.DeviceState, int32(v.ActiveChannels), tm(v.UpdatedAt))
			b.Queue(`DELETE FROM contacts WHERE tenant=$1 AND pbx_id=$2 AND endpoint=$3`, t, v.PbxId, v.Name)
			for _, c := range v.Contacts {
				b.Queue(`INSERT INTO contacts (tenant, pbx_id, endpoint, uri, status, roundtrip_usec, user_agent, via_address, expiration_time)
					VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
					t, v.PbxId, v.Name, c.Uri, c.Status, c.RoundtripUsec, c.UserAgent, c.ViaAddress, c.ExpirationTime)
			}
		case *pb.Change_Call:
			v := r.Call
			b.Queue(`INSERT INTO calls (tenant, pbx_id, linkedid, caller_num, caller_name, callee_num, callee_name, state, started_at, answered_at, bridge_id)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
				ON CONFLICT (tenant, pbx_id, linkedid) DO UPDATE SET caller_num=$4, caller_name=$5, callee_num=$6, callee_name=$7,
				state=$8, started_at=$9, answered_at=$10, bridge_id=$11`,
				t, v.PbxId, v.Linkedid, v.CallerNum, v.CallerName, v.CalleeNum, v.CalleeName, v.State, tm(v.StartedAt), tm(v.AnsweredAt), v.BridgeId)
			b.Queue(`DELETE FROM channels WHERE tenant=$1 AND pbx_id=$2 AND linkedid=$3`, t, v.PbxId, v.Linkedid)
			for i, ch := range v.Channels {
				b.Queue(`INSERT INTO channels (tenant, pbx_id, uniqueid, linkedid, position, name, state, state_desc, caller_num, caller_name,
					connected_num, connected_name, context, exten, bridge_id, application)
					VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
					ON CONFLICT (tenant, pbx_id, uniqueid) DO UPDATE SET linkedid=$4, position=$5, name=$6, state=$7, state_desc=$8,
					caller_num=$9, caller_name=$10, connected_num=$11, connected_name=$12, context=$13, exten=$14, bridge_id=$15, application=$16`,
					t, v.PbxId, ch.Uniqueid, v.Linkedid, int32(i), ch.Name, ch.State, ch.StateDesc, ch.CallerNum, ch.CallerName,
					ch.ConnectedNum, ch.ConnectedName, ch.Context, ch.Exten, ch.BridgeId, ch.Application)
			}
		case *pb.Change_CallRemoved:
			k := r.CallRemoved
			b.Queue(`DELETE FROM channels WHERE tenant=$1 AND pbx_id=$2 AND linkedid=$3`, t, k.PbxId, k.Linkedid)
			b.Queue(`DELETE FROM calls WHERE tenant=$1 AND pbx_id=$2 AND linkedid=$3`, t, k.PbxId, k.Linkedid)
		case *pb.Change_Registration:
			v := r.Registration
			b.Queue(`INSERT INTO trunk_registrations (tenant, pbx_id, key, client_uri, server_uri, status, cause, updated_at)
				VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
				ON CONFLICT (tenant, pbx_id, key) DO UPDATE SET client_uri=$4, server_uri=$5, status=$6, cause=$7, updated_at=$8`,
				t, v.PbxId, v.Key, v.ClientUri, v.ServerUri, v.Status, v.Cause, tm(v.UpdatedAt))
		}
	}
	b.Queue(`INSERT INTO projector_position (tenant, stream_seq, version) VALUES ($1,$2,$3)
		ON CONFLICT (tenant) DO UPDATE SET stream_seq=$2, version=$3`, t, int64(streamSeq), int64(d.Version))
	if len(d.Changes) == 0 {
		return nil, nil
	}
	body, err := proto.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta %d: %w", d.Version, err)
	}
	b.Queue(`INSERT INTO deltas (tenant, version, body, committed_at) VALUES ($1,$2,$3,$4)`, t, int64(d.Version), body, tm(d.CommittedAt))
	return body, nil
}

// PruneDeltas keeps the newest keep deltas of a tenant.
func PruneDeltas(ctx context.Context, pool *pgxpool.Pool, tenant string, upto, keep uint64) error {
	if upto <= keep {
		return nil
	}
	_, err := pool.Exec(ctx, `DELETE FROM deltas WHERE tenant=$1 AND version <= $2`, tenant, int64(upto-keep))
	if err != nil {
		return fmt.Errorf("prune deltas: %w", err)
	}
	return nil
}

// ReadDeltas returns the deltas of a tenant with after < version <= upto
// (upto 0: no upper bound), oldest first, at most limit. ok is false when
// the oldest one needed has already been pruned.
func ReadDeltas(ctx context.Context, pool *pgxpool.Pool, tenant string, after, upto uint64, limit int) (out []*pb.Delta, ok bool, err error) {
	if upto == 0 {
		upto = 1<<63 - 1
	}
	rows, _ := pool.Query(ctx, `SELECT version, body FROM deltas WHERE tenant=$1 AND version > $2 AND version <= $3 ORDER BY version LIMIT $4`,
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

func tm(t *timestamppb.Timestamp) *time.Time {
	if t == nil {
		return nil
	}
	v := t.AsTime()
	return &v
}
