package gateway

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
	"github.com/pbxpulse/pbxpulse/pkg/store"
)

// badRequest answers a request the API cannot take, saying why.
func badRequest(w http.ResponseWriter, msg string) {
	httpError(w, http.StatusBadRequest, "invalid", msg)
}

// httpError answers with the API's error body: {"error": code, "message": msg}.
func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
}

// queryRange reads the from and to parameters: to defaults to now, from to
// span before to.
func queryRange(q url.Values, span time.Duration) (from, to time.Time, err error) {
	if from, err = queryTime(q, "from"); err != nil {
		return
	}
	if to, err = queryTime(q, "to"); err != nil {
		return
	}
	if to.IsZero() {
		to = time.Now()
	}
	if from.IsZero() {
		from = to.Add(-span)
	}
	return from, to, nil
}

func queryTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: want an RFC 3339 time such as 2026-11-21T10:32:00Z", name)
	}
	return t, nil
}

// handleHistory serves the call history: GET api/v1/history with from, to,
// pbx, extension, number, disposition, limit and cursor; JSON by default,
// CSV with format=csv.
func (g *Gateway) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var hq store.HistoryQuery
	var err error
	if hq.From, err = queryTime(q, "from"); err != nil {
		badRequest(w, err.Error())
		return
	}
	if hq.To, err = queryTime(q, "to"); err != nil {
		badRequest(w, err.Error())
		return
	}
	hq.PBX, hq.Extension, hq.Number, hq.Cursor = q.Get("pbx"), q.Get("extension"), q.Get("number"), q.Get("cursor")
	if d := q.Get("disposition"); d != "" {
		if !slices.Contains(store.Dispositions, d) {
			badRequest(w, "disposition: want one of "+strings.Join(store.Dispositions, ", "))
			return
		}
		hq.Disposition = d
	}
	if l := q.Get("limit"); l != "" {
		if hq.Limit, err = strconv.Atoi(l); err != nil || hq.Limit < 1 || hq.Limit > 1000 {
			badRequest(w, "limit: want 1 to 1000")
			return
		}
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		badRequest(w, "format: want json or csv")
		return
	}
	p, _ := principalFrom(r.Context())
	var page store.HistoryPage
	err = store.InTenant(r.Context(), g.pool, p.Tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
		page, err = store.QueryHistory(r.Context(), tx, p.Tenant, hq)
		return err
	})
	if errors.Is(err, store.ErrBadCursor) {
		badRequest(w, "cursor: not one this server gave")
		return
	}
	if err != nil {
		g.log.Warn("history", "tenant", p.Tenant, "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "history unavailable")
		return
	}
	if format == "csv" {
		writeHistoryCSV(w, page)
		return
	}
	records := make([]json.RawMessage, len(page.Records))
	for i, rec := range page.Records {
		if records[i], err = jsonOpts.Marshal(rec); err != nil {
			httpError(w, http.StatusInternalServerError, "internal", "encode")
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Records []json.RawMessage `json:"records"`
		Next    string            `json:"next_cursor,omitempty"`
	}{records, page.Next})
}

var historyColumns = []string{"pbx_id", "linkedid", "started_at", "answered_at", "ended_at", "ring_seconds", "talk_seconds",
	"disposition", "hangup_cause", "hangup_by", "caller_num", "caller_name", "callee_num", "callee_name", "direction", "trunk", "queue", "parties"}

// writeHistoryCSV writes one page as CSV. Every text field comes from a PBX
// and so from callers (a caller-ID name is whatever the caller sent): cells
// that a spreadsheet would run as a formula are quoted with a leading '.
func writeHistoryCSV(w http.ResponseWriter, page store.HistoryPage) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="call-history.csv"`)
	if page.Next != "" {
		w.Header().Set("X-Next-Cursor", page.Next)
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(historyColumns)
	ts := func(t *timestamppb.Timestamp) string {
		if t == nil {
			return ""
		}
		return t.AsTime().UTC().Format(time.RFC3339Nano)
	}
	for _, r := range page.Records {
		row := []string{r.PbxId, r.Linkedid, ts(r.StartedAt), ts(r.AnsweredAt), ts(r.EndedAt), strconv.FormatFloat(r.RingSeconds, 'f', 3, 64),
			strconv.FormatFloat(r.TalkSeconds, 'f', 3, 64), r.Disposition, strconv.Itoa(int(r.HangupCause)), r.HangupBy,
			r.CallerNum, r.CallerName, r.CalleeNum, r.CalleeName, r.Direction, r.Trunk, r.Queue, strings.Join(r.Parties, " ")}
		for i, c := range row {
			row[i] = safeCell(c)
		}
		_ = cw.Write(row)
	}
	cw.Flush()
}

// safeCell defuses spreadsheet formula injection (OWASP "CSV injection").
func safeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "'" + s
		}
	}
	return s
}

// handleTrunkHealth serves trunk health samples: GET api/v1/trunks/health
// with pbx, trunk, from (default: 24 hours ago; since is an older name)
// and to (default: now).
func (g *Gateway) handleTrunkHealth(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("from") {
		q.Set("from", q.Get("since"))
	}
	from, to, err := queryRange(q, 24*time.Hour)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	p, _ := principalFrom(r.Context())
	var samples []*pb.TrunkHealthSample
	err = store.InTenant(r.Context(), g.pool, p.Tenant, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) (err error) {
		samples, err = store.TrunkHealth(r.Context(), tx, p.Tenant, q.Get("pbx"), q.Get("trunk"), from, 0)
		return err
	})
	if err != nil {
		g.log.Warn("trunk health", "tenant", p.Tenant, "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "trunk health unavailable")
		return
	}
	out := make([]json.RawMessage, 0, len(samples))
	for _, s := range samples {
		if !s.GetAt().AsTime().Before(to) {
			break // oldest first
		}
		b, err := jsonOpts.Marshal(s)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "internal", "encode")
			return
		}
		out = append(out, b)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Samples []json.RawMessage `json:"samples"`
	}{out})
}

// An as-of read replays the tenant's stream up to its time: for a recent
// time, every event the stream keeps, seconds of a core. asOfReads of them
// run at once, each for at most asOfTimeout; more are refused (429), so
// that requests repeated by a viewer cannot take the gateway's CPU from
// the live panel.
const (
	asOfReads   = 1
	asOfTimeout = 2 * time.Minute
)

// handleSnapshotAt serves the views as they stood at a past time (?at=),
// replayed from the event stream: the panel at 10:32, for incident review.
func (g *Gateway) handleSnapshotAt(w http.ResponseWriter, r *http.Request, at time.Time) {
	select {
	case g.asOf <- struct{}{}:
		defer func() { <-g.asOf }()
	default:
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusTooManyRequests, "busy", "another as-of read is running, retry later")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), asOfTimeout)
	defer cancel()
	p, _ := principalFrom(r.Context())
	snap, _, err := projection.AsOf(ctx, g.js, p.Tenant, at, nil, g.log)
	if err != nil {
		g.log.Warn("snapshot as of", "tenant", p.Tenant, "at", at, "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "event stream unavailable")
		return
	}
	body, err := jsonOpts.Marshal(snap)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", "encode")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
