package normalize

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pbxpulse/pbxpulse/pkg/ami"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
	"github.com/pbxpulse/pbxpulse/pkg/projection"
)

// capturedSession normalizes the whole captured AMI session, each event
// stamped with the time it was received (the capture's chat log), as the
// collector stamps events that carry no EventTV.
func capturedSession(t *testing.T) []*pb.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtures, "ami-events.messages.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*pb.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			T      float64 `json:"t"`
			Raw    string  `json:"raw"`
			Banner bool    `json:"banner"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line.Banner {
			continue
		}
		r := ami.NewReader(strings.NewReader(line.Raw))
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("%q: %v", line.Raw, err)
		}
		e := Event(m)
		if e == nil {
			continue
		}
		e.Tenant, e.PbxId = "acme", "pbx1"
		if e.PbxTime == nil {
			sec, frac := math.Modf(line.T)
			e.PbxTime = timestamppb.New(time.Unix(int64(sec), int64(frac*1e9)))
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHistoryMatchesAsteriskCDR replays the captured session through the
// normalizer and the projection and checks the call history against the
// CDR Asterisk itself wrote for the same calls (logs/cdr-Master.csv in the
// captures: who called whom, disposition, duration and billsec).
func TestHistoryMatchesAsteriskCDR(t *testing.T) {
	want := []struct {
		linkedid              string
		caller, callee        string
		disposition, hangupBy string
		cause                 int32
		ring, talk            float64 // Asterisk: duration-billsec and billsec
		channels              []string
	}{
		{"1795288171.0", "1001", "1002", "answered", "1001", 16, 1, 6, []string{"PJSIP/1001-00000000", "PJSIP/1002-00000001"}},
		{"1795288180.2", "1001", "600", "answered", "1001", 0, 0, 6, []string{"PJSIP/1001-00000002"}},
		{"1795288188.3", "1001", "1003", "no_answer", "", 16, 20, 0, []string{"PJSIP/1001-00000003", "PJSIP/1003-00000004"}},
		{"1795288210.5", "1001", "1004", "busy", "1004", 17, 0, 0, []string{"PJSIP/1001-00000005", "PJSIP/1004-00000006"}},
		{"1795288212.7", "1001", "700", "answered", "1001", 0, 0, 6, []string{"PJSIP/1001-00000007"}},
	}
	v := projection.New("acme", nil, nil)
	var recs []*pb.CallRecord
	for _, e := range capturedSession(t) {
		v.Apply(e)
		for _, ch := range v.TakeChanges() {
			if h := ch.GetHistory(); h != nil {
				recs = append(recs, h)
			}
		}
	}
	if len(recs) != len(want) {
		t.Fatalf("%d history records, want %d: %v", len(recs), len(want), recs)
	}
	for i, c := range want {
		r := recs[i]
		t.Run(c.linkedid, func(t *testing.T) {
			if r.Linkedid != c.linkedid || r.CallerNum != c.caller || r.CalleeNum != c.callee || r.Disposition != c.disposition || r.HangupBy != c.hangupBy || r.HangupCause != c.cause {
				t.Errorf("record %s %s->%s %s by %q cause %d; want %s %s->%s %s by %q cause %d", r.Linkedid,
					r.CallerNum, r.CalleeNum, r.Disposition, r.HangupBy, r.HangupCause, c.linkedid, c.caller, c.callee, c.disposition, c.hangupBy, c.cause)
			}
			// Asterisk's CDR counts whole seconds; the events carry microseconds.
			if math.Abs(r.TalkSeconds-c.talk) > 1 || math.Abs(r.RingSeconds-c.ring) > 1.5 {
				t.Errorf("ring %.2fs talk %.2fs; Asterisk's CDR says ring %.0fs talk %.0fs", r.RingSeconds, r.TalkSeconds, c.ring, c.talk)
			}
			if (r.AnsweredAt != nil) != (c.disposition == "answered") || r.EndedAt == nil || r.StartedAt == nil {
				t.Errorf("times: started %v answered %v ended %v", r.StartedAt, r.AnsweredAt, r.EndedAt)
			}
			if r.Direction != "internal" || !slices.Equal(r.Channels, c.channels) {
				t.Errorf("direction %q channels %v; want internal %v", r.Direction, r.Channels, c.channels)
			}
		})
	}
	if n := len(v.Snapshot(0).Calls); n != 0 {
		t.Errorf("%d calls still live after the hangups", n)
	}
}
