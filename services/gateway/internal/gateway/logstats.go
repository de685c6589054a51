package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxpulse/pbxpulse/pkg/config"
	"github.com/pbxpulse/pbxpulse/pkg/logstats"
)

const (
	// logStatsDefaultSpan is what GET api/v1/logs/stats covers without from.
	logStatsDefaultSpan = time.Hour
	// logStatsMaxSpan bounds one read: the stream is read from the start of
	// the span on, and the log stream keeps a week by default.
	logStatsMaxSpan = 8 * 24 * time.Hour
)

// logStatsMinute is one followed file's counts in one minute.
type logStatsMinute struct {
	PBX    string            `json:"pbx_id"`
	File   string            `json:"file"`
	Minute time.Time         `json:"minute"`
	Levels map[string]uint64 `json:"levels"`
	Total  uint64            `json:"total"`
}

// handleLogStats serves the per-minute log counts by level of the
// principal's tenant: GET api/v1/logs/stats with pbx, from (default an hour
// ago) and to (default now). Minutes are per followed file, oldest first; a
// PBX's files overlap (messages repeats lines of full), so they are not
// summed.
func (g *Gateway) handleLogStats(w http.ResponseWriter, r *http.Request) {
	p, ok := principalFrom(r.Context())
	if !ok {
		httpError(w, http.StatusUnauthorized, "unauthorized", "a valid token is required")
		return
	}
	q := r.URL.Query()
	pbx := q.Get("pbx")
	if pbx != "" && !config.ValidToken(pbx) {
		badRequest(w, "pbx: want letters, digits, _ and -")
		return
	}
	from, to, err := queryRange(q, logStatsDefaultSpan)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if !from.Before(to) {
		badRequest(w, "from must be before to")
		return
	}
	if to.Sub(from) > logStatsMaxSpan {
		badRequest(w, "from and to may be at most "+logStatsMaxSpan.String()+" apart")
		return
	}
	js, err := jetstream.New(g.nc)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "unavailable", "log stream unavailable")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	// A minute that started before from still counts lines after it.
	minutes, err := logstats.Read(ctx, js, p.Tenant, pbx, from.Truncate(time.Minute))
	if err != nil {
		g.log.Warn("log stats", "tenant", p.Tenant, "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "log stream unavailable")
		return
	}
	out := make([]logStatsMinute, 0, len(minutes))
	for _, m := range minutes {
		if !m.Start.Before(to) {
			continue
		}
		out = append(out, logStatsMinute{PBX: m.PBX, File: m.File, Minute: m.Start.UTC(), Levels: m.Levels, Total: m.Total})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		From    time.Time        `json:"from"`
		To      time.Time        `json:"to"`
		Minutes []logStatsMinute `json:"minutes"`
	}{from.UTC(), to.UTC(), out})
}
