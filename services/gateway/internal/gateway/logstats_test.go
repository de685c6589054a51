package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func TestLogStats(t *testing.T) {
	e := startAPIGateway(t)
	ctx := context.Background()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	// Before any log tailer ran, a tenant has no stream and no counts.
	if status, out := e.do(t, "GET", "api/v1/logs/stats", tokViewer, ""); status != 200 || len(out["minutes"].([]any)) != 0 {
		t.Fatalf("no stream: %d %v", status, out)
	}
	now := time.Now().UTC().Truncate(time.Minute)
	n := 0
	publish := func(tenant, pbx string, ago int, counts map[string]uint64) {
		t.Helper()
		if n == 0 || tenant != "acme" {
			if err := bus.EnsureLogStream(ctx, js, tenant, bus.DefaultLogLimits, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
		}
		st := &pb.LogStats{File: "/var/log/asterisk/full", Minute: timestamppb.New(now.Add(-time.Duration(ago) * time.Minute))}
		for l, c := range counts {
			st.Levels = append(st.Levels, &pb.LevelCount{Level: l, Count: c})
			st.Total += c
		}
		n++
		msg, err := bus.AppendMessage(nil, &pb.Event{Id: fmt.Sprint(n), Tenant: tenant, PbxId: pbx, Payload: &pb.Event_LogStats{LogStats: st}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	publish("acme", "pbx1", 90, map[string]uint64{"notice": 9})
	publish("acme", "pbx1", 3, map[string]uint64{"notice": 1})
	publish("acme", "pbx1", 3, map[string]uint64{"notice": 4, "error": 2}) // the minute again, complete
	publish("acme", "pbx2", 2, map[string]uint64{"warning": 7})
	publish("acme", "pbx1", 1, map[string]uint64{"verbose": 5})
	publish("other", "pbx1", 2, map[string]uint64{"error": 1000}) // another tenant's PBX of the same name

	at := func(ago int) string { return now.Add(-time.Duration(ago) * time.Minute).Format(time.RFC3339) }
	cases := []struct {
		name  string
		token string
		query url.Values
		want  []string // pbx minutes-ago level=count... total
	}{
		{"last hour", tokViewer, nil, []string{"pbx1 3 error=2 notice=4 6", "pbx2 2 warning=7 7", "pbx1 1 verbose=5 5"}},
		{"one pbx", tokViewer, url.Values{"pbx": {"pbx1"}}, []string{"pbx1 3 error=2 notice=4 6", "pbx1 1 verbose=5 5"}},
		{"window", tokViewer, url.Values{"from": {at(2)}, "to": {at(1)}}, []string{"pbx2 2 warning=7 7"}},
		{"older", tokViewer, url.Values{"from": {at(100)}, "to": {at(80)}}, []string{"pbx1 90 notice=9 9"}},
		{"other tenant", tokOther, nil, []string{"pbx1 2 error=1000 1000"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, out := e.do(t, "GET", "api/v1/logs/stats?"+tc.query.Encode(), tc.token, "")
			if status != 200 {
				t.Fatalf("%d %v", status, out)
			}
			var got []string
			for _, m := range out["minutes"].([]any) {
				m := m.(map[string]any)
				start, err := time.Parse(time.RFC3339, m["minute"].(string))
				if err != nil {
					t.Fatal(err)
				}
				s := fmt.Sprintf("%s %d", m["pbx_id"], int(now.Sub(start)/time.Minute))
				levels := m["levels"].(map[string]any)
				for _, l := range []string{"error", "notice", "verbose", "warning"} {
					if c, ok := levels[l]; ok {
						s += fmt.Sprintf(" %s=%v", l, c)
					}
				}
				got = append(got, fmt.Sprintf("%s %v", s, m["total"]))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	for _, q := range []string{"pbx=pbx.1", "pbx=%3E", "from=yesterday", "from=" + at(1) + "&to=" + at(2), "from=" + at(60*24*9)} {
		if status, out := e.do(t, "GET", "api/v1/logs/stats?"+q, tokViewer, ""); status != 400 || out["error"] != "invalid" {
			t.Errorf("%s: %d %v", q, status, out)
		}
	}
	if status, _ := e.do(t, "GET", "api/v1/logs/stats", "", ""); status != 401 {
		t.Errorf("without token: %d", status)
	}
}
