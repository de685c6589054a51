package logstats

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/testenv"
)

func TestRead(t *testing.T) {
	srv := testenv.NATS(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if got, err := Read(ctx, js, "acme", "", time.Time{}); err != nil || got != nil {
		t.Fatalf("no stream yet: %v %v", got, err)
	}
	if err := bus.EnsureLogStream(ctx, js, "acme", bus.DefaultLogLimits, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Minute)
	m := func(ago int) time.Time { return now.Add(-time.Duration(ago) * time.Minute) }
	n := 0
	publish := func(pbx, file string, minute time.Time, counts map[string]uint64) {
		t.Helper()
		st := &pb.LogStats{File: file, Minute: timestamppb.New(minute)}
		for l, c := range counts {
			st.Levels = append(st.Levels, &pb.LevelCount{Level: l, Count: c})
			st.Total += c
		}
		n++
		ev := &pb.Event{Id: fmt.Sprint(n), Tenant: "acme", PbxId: pbx, Payload: &pb.Event_LogStats{LogStats: st}}
		msg, err := bus.AppendMessage(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	publish("pbx1", "/var/log/asterisk/full", m(90), map[string]uint64{"notice": 9})            // too old
	publish("pbx1", "/var/log/asterisk/full", m(2), map[string]uint64{"notice": 1})             // quiet minute published early ...
	publish("pbx1", "/var/log/asterisk/full", m(2), map[string]uint64{"notice": 3, "error": 1}) // ... and again, complete
	publish("pbx1", "/var/log/asterisk/messages", m(2), map[string]uint64{"notice": 3})
	publish("pbx2", "/var/log/asterisk/full", m(1), map[string]uint64{"debug": 7})
	publish("pbx1", "/var/log/asterisk/full", m(0), map[string]uint64{"verbose": 5})
	if _, err := js.Publish(ctx, "pbx.acme.pbx1.log.notice", []byte("a log line, not counted")); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		pbx  string
		n    int
		want []string
	}{
		{"every PBX, last 5 minutes", "", 5, []string{
			"pbx1 /var/log/asterisk/full -2 error=1 notice=3 total=4",
			"pbx1 /var/log/asterisk/messages -2 notice=3 total=3",
			"pbx2 /var/log/asterisk/full -1 debug=7 total=7",
			"pbx1 /var/log/asterisk/full 0 verbose=5 total=5",
		}},
		{"one PBX", "pbx2", 5, []string{"pbx2 /var/log/asterisk/full -1 debug=7 total=7"}},
		{"current minute only", "*", 1, []string{"pbx1 /var/log/asterisk/full 0 verbose=5 total=5"}},
		{"other tenant's PBX", "pbx9", 60, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Last(ctx, js, "acme", tc.pbx, tc.n, now.Add(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, g := range got {
				s := fmt.Sprintf("%s %s %d", g.PBX, g.File, int(g.Start.Sub(now)/time.Minute))
				for _, l := range []string{"debug", "error", "notice", "verbose"} {
					if c, ok := g.Levels[l]; ok {
						s += fmt.Sprintf(" %s=%d", l, c)
					}
				}
				lines = append(lines, s+fmt.Sprintf(" total=%d", g.Total))
			}
			if fmt.Sprint(lines) != fmt.Sprint(tc.want) {
				t.Errorf("got\n%q\nwant\n%q", lines, tc.want)
			}
		})
	}
	if _, err := Last(ctx, js, "acme", "", 0, now); err == nil {
		t.Error("0 minutes accepted")
	}
	// the readers' consumers are gone
	st, err := js.Stream(ctx, bus.LogStream("acme"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Consumers != 0 {
		t.Errorf("%d consumers left (%v)", info.State.Consumers, err)
	}
}
