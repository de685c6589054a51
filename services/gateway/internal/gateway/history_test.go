package gateway

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/store"
)

// storeHistory writes call records of a tenant as the projector does.
func storeHistory(t *testing.T, dsn, tenant string, recs ...*pb.CallRecord) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var changes []*pb.Change
	for _, r := range recs {
		changes = append(changes, &pb.Change{Row: &pb.Change_History{History: r}})
	}
	b := &pgx.Batch{}
	store.QueueEnterTenant(b, tenant)
	b.Queue(`INSERT INTO projector_position (tenant, gen, stream_seq, version) VALUES ($1, 1, 0, 0) ON CONFLICT DO NOTHING`, tenant)
	if _, err := store.QueueChanges(b, tenant, 1, changes); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, g *testGateway, path string, query url.Values) (int, string) {
	t.Helper()
	return g.get(t, path+"?"+query.Encode(), tokAcme)
}

func TestHistoryAPI(t *testing.T) {
	e := startGateway(t, nil)
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	var recs []*pb.CallRecord
	for i := range 25 {
		disp := []string{"answered", "no_answer", "busy"}[i%3]
		start := t0.Add(time.Duration(i) * time.Minute)
		r := &pb.CallRecord{PbxId: "pbx1", Linkedid: fmt.Sprintf("1795288171.%d", i), StartedAt: timestamppb.New(start),
			EndedAt: timestamppb.New(start.Add(30 * time.Second)), Disposition: disp, CallerNum: "1001", CalleeNum: fmt.Sprintf("06%08d", i),
			CallerName: "Ext 1001", Parties: []string{"1001", "100" + fmt.Sprint(2+i%2)}, Direction: "internal"}
		if i == 7 {
			r.CallerName = `=HYPERLINK("http://evil")` // a caller-ID name is whatever the caller sent
		}
		recs = append(recs, r)
	}
	storeHistory(t, e.dsn, "acme", recs...)
	storeHistory(t, e.dsn, "beta", &pb.CallRecord{PbxId: "pbx1", Linkedid: "secret", StartedAt: timestamppb.New(t0), Disposition: "answered", CallerNum: "1001"})

	type page struct {
		Records []struct {
			Linkedid    string `json:"linkedid"`
			Disposition string `json:"disposition"`
		} `json:"records"`
		Next string `json:"next_cursor"`
	}
	fetch := func(q url.Values) page {
		t.Helper()
		code, body := get(t, e, "api/v1/history", q)
		if code != 200 {
			t.Fatalf("%v: %d %s", q, code, body)
		}
		var p page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Pages of 10, newest first, with no call twice and none of beta's.
	seen := map[string]bool{}
	q := url.Values{"limit": {"10"}}
	for n := 0; ; n++ {
		p := fetch(q)
		for _, r := range p.Records {
			if seen[r.Linkedid] || r.Linkedid == "secret" {
				t.Fatalf("record %s twice or of another tenant", r.Linkedid)
			}
			seen[r.Linkedid] = true
		}
		if n == 0 && p.Records[0].Linkedid != "1795288171.24" {
			t.Fatalf("first record %s, want the newest", p.Records[0].Linkedid)
		}
		if p.Next == "" {
			break
		}
		q.Set("cursor", p.Next)
	}
	if len(seen) != 25 {
		t.Fatalf("%d records over all pages, want 25", len(seen))
	}
	cases := []struct {
		q    url.Values
		want int
	}{
		{url.Values{"disposition": {"busy"}}, 8},
		{url.Values{"extension": {"1003"}}, 12},
		{url.Values{"number": {"0600000012"}}, 1},
		{url.Values{"from": {"2026-11-21T10:10:00Z"}, "to": {"2026-11-21T10:20:00Z"}}, 10},
		{url.Values{"pbx": {"pbx2"}}, 0},
	}
	for _, c := range cases {
		if got := len(fetch(c.q).Records); got != c.want {
			t.Errorf("%v: %d records, want %d", c.q, got, c.want)
		}
	}
	for _, bad := range []url.Values{{"from": {"yesterday"}}, {"disposition": {"x"}}, {"limit": {"0"}}, {"cursor": {"!!"}}, {"format": {"xml"}}} {
		if code, body := get(t, e, "api/v1/history", bad); code != 400 || !strings.Contains(body, "error") {
			t.Errorf("%v: %d %s, want 400 with an error", bad, code, body)
		}
	}
	// CSV: a formula in a caller name stays text.
	code, body := get(t, e, "api/v1/history", url.Values{"format": {"csv"}, "limit": {"1000"}})
	if code != 200 {
		t.Fatalf("csv: %d", code)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 26 {
		t.Fatalf("csv: %d rows, err %v", len(rows), err)
	}
	for _, row := range rows[1:] {
		if row[1] == "1795288171.7" && row[11] != `'=HYPERLINK("http://evil")` {
			t.Fatalf("caller name cell %q: want it defused", row[11])
		}
	}
}

// A second as-of read while one runs is refused at once, before it touches
// the stream.
func TestAsOfReadsLimited(t *testing.T) {
	g := &Gateway{asOf: make(chan struct{}, asOfReads)}
	for range asOfReads {
		g.asOf <- struct{}{} // the reads running
	}
	req := httptest.NewRequest("GET", "/api/v1/snapshot?at=2026-11-22T10:32:00Z", nil)
	req = req.WithContext(withPrincipal(req.Context(), Principal{Tenant: "acme", Role: RoleViewer}))
	rec := httptest.NewRecorder()
	g.handleSnapshotAt(rec, req, time.Date(2026, 11, 22, 10, 32, 0, 0, time.UTC))
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("%d %q, Retry-After %q; want 429 with Retry-After", rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"))
	}
	<-g.asOf
	if len(g.asOf) != asOfReads-1 {
		t.Fatalf("the refused read changed the count of reads running: %d", len(g.asOf))
	}
}
