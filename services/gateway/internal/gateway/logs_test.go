package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

var errorf = fmt.Errorf

func timestampOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// line is a log line as the log tailer reads it.
func line(msg, endpoint, channel, callID string) *pb.LogLine {
	l := &pb.LogLine{Message: msg, CallId: callID, SourceFile: "pbx.c", SourceLine: 42, Function: "pbx_exec", ThreadId: "1234"}
	if endpoint != "" || channel != "" {
		l.Refs = &pb.PbxRefs{Endpoint: endpoint, Channel: channel}
	}
	return l
}

var eventIDs atomic.Int64

// publishLogs stores a LogBatch of a tenant's PBX in its log stream, as the
// log tailer does, and returns its stream sequence.
func publishLogs(t *testing.T, g *testGateway, tenant, pbx, level string, lines ...*pb.LogLine) uint64 {
	t.Helper()
	ctx := context.Background()
	if err := bus.EnsureLogStream(ctx, g.js, tenant, bus.DefaultLogLimits, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	ev := &pb.Event{Id: strconv.FormatInt(eventIDs.Add(1), 10), Tenant: tenant, PbxId: pbx, Source: pb.Source_SOURCE_LOG,
		Payload: &pb.Event_LogBatch{LogBatch: &pb.LogBatch{File: "/var/log/asterisk/full", FileId: "803:1f", Level: level, Lines: lines}}}
	msg, err := bus.Message(ev)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := g.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// entryJSON is a LogEntry as clients read it.
type entryJSON struct {
	PbxID      string `json:"pbx_id"`
	File       string `json:"file"`
	Level      string `json:"level"`
	Message    string `json:"message"`
	CallID     string `json:"call_id"`
	SourceFile string `json:"source_file"`
	StreamSeq  string `json:"stream_seq"`
}

func entriesOf(t *testing.T, m srvMsg) []entryJSON {
	t.Helper()
	var d struct {
		Entries []entryJSON `json:"entries"`
	}
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.Entries
}

// subscribe sends subscribeLogs and returns the backlog, checking that
// logsSubscribed counts it. An error message is returned as such.
func subscribe(t *testing.T, ws *wsClient, id string, filter map[string]any, backlog *int) ([]entryJSON, srvMsg) {
	t.Helper()
	req := map[string]any{"type": "subscribeLogs", "id": id, "filter": filter}
	if backlog != nil {
		req["backlog"] = *backlog
	}
	ws.send(req)
	var out []entryJSON
	for {
		m := ws.next()
		switch {
		case m.Type == "logs" && m.ID == id:
			if !m.Backlog {
				t.Fatalf("live lines before logsSubscribed")
			}
			out = append(out, entriesOf(t, m)...)
		case m.Type == "logsSubscribed" && m.ID == id:
			var d struct{ Backlog int }
			_ = json.Unmarshal(m.Data, &d)
			if d.Backlog != len(out) {
				t.Fatalf("logsSubscribed says %d, %d sent", d.Backlog, len(out))
			}
			return out, m
		case m.Type == "error" && m.ID == id:
			return nil, m
		}
	}
}

func messages(es []entryJSON) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Message
	}
	return out
}

func intp(n int) *int { return &n }

func TestLogSubscriptions(t *testing.T) {
	g := startGateway(t, nil)
	// A live call (two channels, one call id) and a finished one.
	call := &pb.CallView{PbxId: "pbx1", Linkedid: "1700000000.1", State: "up",
		Channels:     []*pb.Channel{{Name: "PJSIP/1001-00000001", Uniqueid: "1700000000.1"}, {Name: "PJSIP/1003-00000003", Uniqueid: "1700000000.2"}},
		ChannelNames: []string{"PJSIP/1001-00000001", "PJSIP/1003-00000003"}}
	g.commitDelta(t, &pb.Delta{Tenant: "acme", Version: 1, CommittedAt: timestamppb.Now(), Changes: []*pb.Change{{Row: &pb.Change_Call{Call: call}}}}, true)
	storeHistory(t, g.dsn, "acme", &pb.CallRecord{PbxId: "pbx1", Linkedid: "1600000000.5", Disposition: "failed", Channels: []string{"PJSIP/1002-00000002"}, StartedAt: timestamppb.Now()})

	session := line("Session timeout reached", "", "", "C-00000001")
	session.SourceFile = "res_pjsip_session.c"
	publishLogs(t, g, "acme", "pbx1", "VERBOSE", line(`Executing [1003@internal:1] Dial("PJSIP/1001-00000001", "PJSIP/1003,30")`, "1001", "PJSIP/1001-00000001", "C-00000001"))
	// The call's id-only line comes long after (in another chunk of the
	// backward search) the line that ties the id to the call.
	for i := range 150 {
		publishLogs(t, g, "acme", "pbx1", "VERBOSE", line(fmt.Sprintf("filler %d", i), "", "", ""))
	}
	publishLogs(t, g, "acme", "pbx1", "NOTICE", session)
	publishLogs(t, g, "acme", "pbx1", "ERROR", line("Failed to authenticate", "1002", "PJSIP/1002-00000002", "C-00000002"))
	publishLogs(t, g, "beta", "pbx1", "ERROR", line("BETA error", "1002", "PJSIP/1002-00000002", "C-00000002"))
	publishLogs(t, g, "acme", "pbx2", "WARNING", line("pbx2 warning", "1001", "", ""))
	publishLogs(t, g, "acme", "pbx1", "VERBOSE", line("PJSIP/1003-00000003 is ringing", "1003", "PJSIP/1003-00000003", ""),
		line("second line of the batch", "", "", ""))

	ws := g.dial(t, tokAcme, "")
	ws.next()
	dialLine := `Executing [1003@internal:1] Dial("PJSIP/1001-00000001", "PJSIP/1003,30")`
	cases := []struct {
		name    string
		filter  map[string]any
		backlog *int
		want    []string
		errCode string
	}{
		{"pbx", map[string]any{"pbx": "pbx2"}, nil, []string{"pbx2 warning"}, ""},
		{"level", map[string]any{"level": []string{"ERROR"}}, nil, []string{"Failed to authenticate"}, ""},
		{"levels", map[string]any{"level": []string{"error", "WARNING"}}, nil, []string{"Failed to authenticate", "pbx2 warning"}, ""},
		{"endpoint", map[string]any{"endpoint": "1001"}, nil, []string{dialLine, "pbx2 warning"}, ""},
		{"endpoint on one pbx", map[string]any{"endpoint": "1001", "pbx": "pbx1"}, nil, []string{dialLine}, ""},
		{"channel", map[string]any{"channel": "PJSIP/1002-00000002"}, nil, []string{"Failed to authenticate"}, ""},
		{"source", map[string]any{"source": "res_pjsip_session.c"}, nil, []string{"Session timeout reached"}, ""},
		{"text, any case", map[string]any{"text": "TIMEOUT"}, nil, []string{"Session timeout reached"}, ""},
		{"call id", map[string]any{"call": "C-00000002"}, nil, []string{"Failed to authenticate"}, ""},
		{"live call by linkedid", map[string]any{"call": "1700000000.1"}, nil, []string{dialLine, "Session timeout reached", "PJSIP/1003-00000003 is ringing"}, ""},
		{"live call by a channel's uniqueid", map[string]any{"call": "1700000000.2"}, nil, []string{dialLine, "Session timeout reached", "PJSIP/1003-00000003 is ringing"}, ""},
		{"call and level", map[string]any{"call": "1700000000.1", "level": []string{"NOTICE"}}, nil, []string{"Session timeout reached"}, ""},
		{"finished call", map[string]any{"call": "1600000000.5"}, nil, []string{"Failed to authenticate"}, ""},
		{"unknown call", map[string]any{"call": "1500000000.9"}, nil, nil, "not_found"},
		{"call on another pbx", map[string]any{"call": "1700000000.1", "pbx": "pbx2"}, nil, nil, "not_found"},
		{"backlog of 3", map[string]any{"pbx": "pbx1", "text": "filler"}, intp(3), []string{"filler 147", "filler 148", "filler 149"}, ""},
		{"backlog 0", nil, intp(0), nil, ""},
		{"default backlog", map[string]any{"text": "filler"}, nil, nil, ""}, // checked below: 150
		{"nothing matches", map[string]any{"text": "no such text"}, nil, nil, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "c" + strconv.Itoa(i)
			got, m := subscribe(t, ws, id, tc.filter, tc.backlog)
			if tc.errCode != "" {
				if m.Type != "error" || m.Code != tc.errCode {
					t.Fatalf("%+v, want error %s", m, tc.errCode)
				}
				return
			}
			if m.Type != "logsSubscribed" {
				t.Fatalf("%+v", m)
			}
			if tc.name == "default backlog" {
				if len(got) != 150 || got[0].Message != "filler 0" {
					t.Fatalf("%d entries from %v", len(got), got[0])
				}
			} else if !slices.Equal(messages(got), tc.want) {
				t.Fatalf("backlog %q, want %q", messages(got), tc.want)
			}
			for _, e := range got {
				if e.PbxID == "" || e.File != "/var/log/asterisk/full" || e.Level == "" || e.StreamSeq == "" {
					t.Fatalf("entry lacks pbx_id, file, level or stream_seq: %+v", e)
				}
			}
			ws.send(map[string]any{"type": "unsubscribeLogs", "id": id})
		})
	}

	// Live: after the backlog, every new matching line once, in order.
	// One connection with three subscriptions.
	ws = g.dial(t, tokAcme, "")
	ws.next()
	all, _ := subscribe(t, ws, "all", nil, intp(2))
	errs, _ := subscribe(t, ws, "errors", map[string]any{"pbx": "pbx1", "level": []string{"ERROR"}}, intp(1))
	calls, _ := subscribe(t, ws, "call", map[string]any{"call": "1700000000.1"}, intp(1))
	if !slices.Equal(messages(all), []string{"PJSIP/1003-00000003 is ringing", "second line of the batch"}) ||
		!slices.Equal(messages(errs), []string{"Failed to authenticate"}) || !slices.Equal(messages(calls), []string{"PJSIP/1003-00000003 is ringing"}) {
		t.Fatalf("backlogs %q %q %q", messages(all), messages(errs), messages(calls))
	}
	lastSeq, _ := strconv.ParseUint(all[1].StreamSeq, 10, 64)
	var seqs []uint64
	pub := func(pbx, level string, l ...*pb.LogLine) {
		seqs = append(seqs, publishLogs(t, g, "acme", pbx, level, l...))
	}
	pub("pbx1", "ERROR", line("live error 1", "", "", ""))
	publishLogs(t, g, "beta", "pbx1", "ERROR", line("BETA live", "", "", ""))
	pub("pbx1", "NOTICE", line("live notice", "", "", ""))
	pub("pbx2", "ERROR", line("pbx2 error", "", "", ""))
	// A new call id tied to the call by a line naming its channel, then a
	// line with that id only.
	pub("pbx1", "VERBOSE", line("Transfer started", "1001", "PJSIP/1001-00000001", "C-0000000a"), line("live error 2 (not ERROR level)", "", "", ""))
	pub("pbx1", "WARNING", line("Attended transfer", "", "", "C-0000000a"))
	pub("pbx1", "ERROR", line("live error 2", "", "", ""))
	want := map[string][]string{
		"all":    {"live error 1", "live notice", "pbx2 error", "Transfer started", "live error 2 (not ERROR level)", "Attended transfer", "live error 2"},
		"errors": {"live error 1", "live error 2"},
		"call":   {"Transfer started", "Attended transfer"},
	}
	got := map[string][]entryJSON{}
	for len(got["all"]) < 7 || len(got["errors"]) < 2 || len(got["call"]) < 2 {
		m := ws.next()
		if m.Type != "logs" || m.Backlog {
			t.Fatalf("unexpected %+v", m)
		}
		got[m.ID] = append(got[m.ID], entriesOf(t, m)...)
	}
	for id, w := range want {
		if !slices.Equal(messages(got[id]), w) {
			t.Errorf("%s: live %q, want %q", id, messages(got[id]), w)
		}
	}
	// No gap or repeat between backlog and live: the stream sequences
	// of "all" are those published, after the backlog's.
	var liveSeqs []uint64
	for _, e := range got["all"] {
		s, _ := strconv.ParseUint(e.StreamSeq, 10, 64)
		if len(liveSeqs) == 0 || liveSeqs[len(liveSeqs)-1] != s {
			liveSeqs = append(liveSeqs, s)
		}
	}
	if !slices.Equal(liveSeqs, seqs) || seqs[0] <= lastSeq {
		t.Errorf("live sequences %v, published %v after %d", liveSeqs, seqs, lastSeq)
	}

	// Unsubscribed: nothing more of it, the others go on.
	ws.send(`{"type":"unsubscribeLogs","id":"all"}`)
	ws.send(`{"type":"unsubscribeLogs","id":"call"}`)
	ws.send(`{"type":"ping"}`)
	ws.nextOf("pong", "")
	publishLogs(t, g, "acme", "pbx1", "ERROR", line("after unsubscribe", "1001", "PJSIP/1001-00000001", "C-0000000a"))
	m := ws.next()
	if m.Type != "logs" || m.ID != "errors" || !slices.Equal(messages(entriesOf(t, m)), []string{"after unsubscribe"}) {
		t.Fatalf("after unsubscribing: %+v", m)
	}
	ws.send(`{"type":"ping"}`)
	if m := ws.next(); m.Type != "pong" {
		t.Fatalf("unsubscribed lines arrived: %+v", m)
	}
	if n := g.metric(t, "pbxpulse_gateway_log_subscriptions"); n != 1 {
		t.Errorf("%v log subscriptions, want 1", n)
	}

	// Another tenant's token reads its own stream only; a tenant without
	// logs gets not_found.
	beta := g.dial(t, tokBeta, "")
	beta.next()
	if got, _ := subscribe(t, beta, "b", nil, nil); !slices.Equal(messages(got), []string{"BETA error", "BETA live"}) {
		t.Errorf("beta's backlog %q", messages(got))
	}
	gamma := g.dial(t, tokGamma, "")
	gamma.next()
	if _, m := subscribe(t, gamma, "g", nil, nil); m.Type != "error" || m.Code != "not_found" {
		t.Errorf("gamma: %+v", m)
	}
}
