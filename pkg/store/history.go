package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// HistoryQuery selects finished calls. Zero fields do not filter.
type HistoryQuery struct {
	// Calls that started in [From, To).
	From, To time.Time
	PBX      string
	// Extension is an endpoint that took part (caller, callee, transfer target).
	Extension string
	// Number is a substring of the caller's or the callee's number.
	Number      string
	Disposition string
	// Limit is the page size (default 50, at most 1000).
	Limit int
	// Cursor is the Next of the previous page.
	Cursor string
}

// HistoryPage is one page of history, newest first.
type HistoryPage struct {
	Records []*pb.CallRecord
	// Next fetches the following (older) page; empty on the last page.
	Next string
}

// ErrBadCursor is a cursor that this server did not produce.
var ErrBadCursor = errors.New("invalid cursor")

// Dispositions are the values CallRecord.disposition takes.
var Dispositions = []string{"answered", "no_answer", "busy", "failed", "cancelled"}

// QueryHistory reads one page of a tenant's call history, ordered by start
// time (newest first) with keyset pagination, so that pages stay stable
// while new calls end.
func QueryHistory(ctx context.Context, q pgx.Tx, tenant string, hq HistoryQuery) (HistoryPage, error) {
	limit := hq.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	where := []string{"h.tenant = $1", "h.gen = p.gen"}
	args := []any{tenant}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !hq.From.IsZero() {
		where = append(where, "h.started_at >= "+arg(hq.From))
	}
	if !hq.To.IsZero() {
		where = append(where, "h.started_at < "+arg(hq.To))
	}
	if hq.PBX != "" {
		where = append(where, "h.pbx_id = "+arg(hq.PBX))
	}
	if hq.Extension != "" {
		where = append(where, arg(hq.Extension)+" = ANY(h.parties)")
	}
	if hq.Number != "" {
		n := arg(hq.Number)
		where = append(where, "(strpos(h.caller_num, "+n+") > 0 OR strpos(h.callee_num, "+n+") > 0)")
	}
	if hq.Disposition != "" {
		where = append(where, "h.disposition = "+arg(hq.Disposition))
	}
	if hq.Cursor != "" {
		at, pbx, id, err := decodeCursor(hq.Cursor)
		if err != nil {
			return HistoryPage{}, err
		}
		where = append(where, "(h.started_at, h.pbx_id, h.linkedid) < ("+arg(at)+", "+arg(pbx)+", "+arg(id)+")")
	}
	sql := `SELECT h.body FROM call_history h JOIN projector_position p ON p.tenant = h.tenant
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY h.started_at DESC, h.pbx_id DESC, h.linkedid DESC LIMIT ` + arg(limit+1)
	rows, _ := q.Query(ctx, sql, args...)
	var page HistoryPage
	var body []byte
	_, err := pgx.ForEachRow(rows, []any{&body}, func() error {
		r := &pb.CallRecord{}
		if err := proto.Unmarshal(body, r); err != nil {
			return err
		}
		page.Records = append(page.Records, r)
		return nil
	})
	if err != nil {
		return HistoryPage{}, fmt.Errorf("read call history: %w", err)
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit]
		last := page.Records[limit-1]
		page.Next = encodeCursor(last.StartedAt, last.PbxId, last.Linkedid)
	}
	return page, nil
}

// A cursor is the sort key of the last row of a page, opaque to clients.
func encodeCursor(at *timestamppb.Timestamp, pbx, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.AsTime().Format(time.RFC3339Nano) + "\x00" + pbx + "\x00" + id))
}

func decodeCursor(c string) (time.Time, string, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", "", ErrBadCursor
	}
	parts := strings.Split(string(b), "\x00")
	if len(parts) != 3 {
		return time.Time{}, "", "", ErrBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, parts[0])
	if err != nil {
		return time.Time{}, "", "", ErrBadCursor
	}
	return at, parts[1], parts[2], nil
}

// TrunkHealth reads a tenant's trunk health samples since a time, oldest
// first; pbx and trunk filter when not empty.
func TrunkHealth(ctx context.Context, q pgx.Tx, tenant, pbx, trunk string, since time.Time, limit int) ([]*pb.TrunkHealthSample, error) {
	if limit <= 0 || limit > 100000 {
		limit = 100000
	}
	rows, _ := q.Query(ctx, `SELECT h.pbx_id, h.trunk, h.at, h.kind, h.status, h.cause, h.roundtrip_usec
		FROM trunk_health h JOIN projector_position p ON p.tenant = h.tenant
		WHERE h.tenant=$1 AND h.gen=p.gen AND h.at >= $2 AND ($3 = '' OR h.pbx_id = $3) AND ($4 = '' OR h.trunk = $4)
		ORDER BY h.at, h.pbx_id, h.trunk LIMIT $5`, tenant, since, pbx, trunk, limit)
	var out []*pb.TrunkHealthSample
	var s pb.TrunkHealthSample
	var at pgtype.Timestamptz
	_, err := pgx.ForEachRow(rows, []any{&s.PbxId, &s.Trunk, &at, &s.Kind, &s.Status, &s.Cause, &s.RoundtripUsec}, func() error {
		c := proto.Clone(&s).(*pb.TrunkHealthSample)
		c.At = timestamppb.New(at.Time)
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read trunk_health: %w", err)
	}
	return out, nil
}

// PruneHistory deletes history and trunk health older than before: the
// retention the projector applies.
func PruneHistory(ctx context.Context, q pgx.Tx, tenant string, gen int32, before time.Time) error {
	if _, err := q.Exec(ctx, `DELETE FROM call_history WHERE tenant=$1 AND gen=$2 AND ended_at < $3`, tenant, gen, before); err != nil {
		return fmt.Errorf("prune call_history: %w", err)
	}
	if _, err := q.Exec(ctx, `DELETE FROM trunk_health WHERE tenant=$1 AND gen=$2 AND at < $3`, tenant, gen, before); err != nil {
		return fmt.Errorf("prune trunk_health: %w", err)
	}
	return nil
}
