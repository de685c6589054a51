package normalize

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/ari"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

const ariCaptures = "../../../../testdata/asterisk/22.10.1"

// ariLines returns the lines of a capture file.
func ariLines(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join(ariCaptures, path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ariPhase returns the ARI events of one phase, numbered as a connection would.
func ariPhase(t testing.TB, phase string) []ari.Event {
	t.Helper()
	var out []ari.Event
	for i, line := range ariLines(t, "ari/by-phase/"+phase+".ari.jsonl") {
		ev, err := ari.Parse(line)
		if err != nil {
			t.Fatalf("%s line %d: %v", phase, i+1, err)
		}
		ev.Seq = uint64(i + 1)
		out = append(out, ev)
	}
	return out
}

// ariAllFrames returns every frame of the websocket capture.
func ariAllFrames(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, line := range ariLines(t, "ari/ari-ws.messages.jsonl") {
		var m struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, []byte(m.Text))
	}
	return out
}

func ariReplay(a *ARI, evs []ari.Event) []*pb.Event {
	var out []*pb.Event
	for _, ev := range evs {
		out = append(out, a.Event(ev)...)
	}
	return append(out, a.Flush()...)
}

// amiPhase normalizes the AMI events session of one phase.
func amiPhase(t testing.TB, phase string) []*pb.Event {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(ariCaptures, "ami/by-phase", phase+".ami.raw"))
	if err != nil {
		t.Fatal(err)
	}
	r := ami.NewReader(bytes.NewReader(raw))
	var out []*pb.Event
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := Event(m); e != nil {
			out = append(out, e)
		}
	}
}

// amiLinkedid is the Linkedid AMI's first Newchannel of a phase reports.
func amiLinkedid(t *testing.T, phase string) string {
	for _, e := range amiPhase(t, phase) {
		if c := e.GetChannelCreated(); c != nil {
			return c.Channel.Linkedid
		}
	}
	t.Fatalf("%s: no Newchannel", phase)
	return ""
}

func payloadKind(e *pb.Event) string {
	m := e.ProtoReflect()
	f := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload"))
	if f == nil {
		return ""
	}
	return string(f.Name())
}

// ariCall is what happened in one call (one linkedid), from the events.
type ariCall struct {
	linkedid  string
	channels  []string
	from, to  string
	up        int
	bridged   bool
	dial      string
	causes    []int32
	stasis    []string
	hungUpBy  string
	hangupReq int
}

func (c ariCall) String() string {
	return fmt.Sprintf("linkedid=%s channels=%v %s->%s up=%d bridged=%v dial=%s causes=%v by=%s stasis=%v",
		c.linkedid, c.channels, c.from, c.to, c.up, c.bridged, c.dial, c.causes, c.hungUpBy, c.stasis)
}

func ariCalls(evs []*pb.Event) []string {
	var order []string
	calls := map[string]*ariCall{}
	get := func(id string) *ariCall {
		c := calls[id]
		if c == nil {
			c = &ariCall{linkedid: id}
			calls[id] = c
			order = append(order, id)
		}
		return c
	}
	for _, e := range evs {
		l := e.GetRefs().GetLinkedid()
		switch p := e.Payload.(type) {
		case *pb.Event_ChannelCreated:
			c := get(l)
			ch := p.ChannelCreated.Channel
			if len(c.channels) == 0 {
				c.from, c.to = ch.CallerNum, ch.Exten
			}
			c.channels = append(c.channels, ch.Uniqueid)
		case *pb.Event_ChannelStateChanged:
			if p.ChannelStateChanged.Channel.State == 6 {
				get(l).up++
			}
		case *pb.Event_DialEnd:
			get(l).dial = p.DialEnd.DialStatus
		case *pb.Event_BridgeEnter:
			get(l).bridged = true
		case *pb.Event_ChannelHangupRequest:
			if c := get(l); c.hungUpBy == "" && !p.ChannelHangupRequest.Soft {
				c.hungUpBy = ami.EndpointOfChannel(p.ChannelHangupRequest.Channel.Name)
			}
		case *pb.Event_ChannelHungUp:
			c := get(l)
			c.causes = append(c.causes, p.ChannelHungUp.Cause)
		case *pb.Event_StasisApp:
			s := "end"
			if p.StasisApp.Started {
				s = "start"
			}
			get(l).stasis = append(get(l).stasis, s+" "+p.StasisApp.Application)
		}
	}
	var out []string
	for _, id := range order {
		if id != "" {
			out = append(out, calls[id].String())
		}
	}
	return out
}

// TestARIReplayCalls replays each captured call phase through the ARI
// normalizer and checks what the PBX did. The linkedid ARI cannot send is
// inferred, and must be the one AMI reported for the same call.
func TestARIReplayCalls(t *testing.T) {
	cases := []struct {
		phase, linkedid string
		want            string
	}{
		// 1001 calls 1002: two channels in one call, both answered, bridged,
		// 1001 hangs up, both end Normal Clearing.
		{"call_answered", "1795288171.0", "channels=[1795288171.0 1795288171.1] 1001->1002 up=2 bridged=true dial=ANSWER causes=[16 16] by=1001 stasis=[]"},
		// 1004 answers 486: DialEnd BUSY, both legs 17 User busy.
		{"call_busy", "1795288210.5", "channels=[1795288210.5 1795288210.6] 1001->1004 up=0 bridged=false dial=BUSY causes=[17 17] by=1004 stasis=[]"},
		// 1003 rings out the 20 s timeout: NOANSWER, callee cancelled (0).
		{"call_noanswer", "1795288188.3", "channels=[1795288188.3 1795288188.4] 1001->1003 up=0 bridged=false dial=NOANSWER causes=[0 16] by= stasis=[]"},
		// Echo: one channel, answered by the dialplan.
		{"call_echo", "1795288180.2", "channels=[1795288180.2] 1001->600 up=1 bridged=false dial= causes=[0] by=1001 stasis=[]"},
		// Stasis(monitor-app): the app answers; StasisStart then StasisEnd.
		{"call_stasis", "1795288212.7", "channels=[1795288212.7] 1001->700 up=1 bridged=false dial= causes=[0] by=1001 stasis=[start monitor-app end monitor-app]"},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			if l := amiLinkedid(t, tc.phase); l != tc.linkedid {
				t.Fatalf("AMI Linkedid %s, table says %s", l, tc.linkedid)
			}
			a := &ARI{}
			got := ariCalls(ariReplay(a, ariPhase(t, tc.phase)))
			want := []string{"linkedid=" + tc.linkedid + " " + tc.want}
			if !slices.Equal(got, want) {
				t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			if n := a.linked.len(); n != 0 {
				t.Errorf("%d linkedids still remembered after every channel was destroyed", n)
			}
		})
	}
}

func TestARIReplayStasisDetails(t *testing.T) {
	var stasis []*pb.StasisApp
	var raw []string
	for _, e := range ariReplay(&ARI{}, ariPhase(t, "call_stasis")) {
		switch p := e.Payload.(type) {
		case *pb.Event_StasisApp:
			stasis = append(stasis, p.StasisApp)
			if e.Refs.Uniqueid != "1795288212.7" || e.Refs.Linkedid != "1795288212.7" || e.Refs.Endpoint != "1001" {
				t.Errorf("stasis refs %v", e.Refs)
			}
		case *pb.Event_AriEvent:
			raw = append(raw, p.AriEvent.Type)
			if strings.HasPrefix(p.AriEvent.Type, "Playback") && (e.Refs.Uniqueid != "1795288212.7" || e.Refs.Linkedid != "1795288212.7") {
				t.Errorf("%s refs %v (target_uri names the channel)", p.AriEvent.Type, e.Refs)
			}
			if !json.Valid(p.AriEvent.Json) || e.PbxTime == nil {
				t.Errorf("%s: json or pbx_time missing", p.AriEvent.Type)
			}
		}
	}
	if len(stasis) != 2 || !stasis[0].Started || stasis[1].Started || stasis[0].Args == nil && len(stasis[0].Args) != 0 ||
		stasis[0].Channel.State != 4 || stasis[1].Channel.State != 6 || stasis[0].Application != "monitor-app" {
		t.Errorf("stasis %v", stasis)
	}
	want := []string{"ChannelDialplan", "ChannelDialplan", "PlaybackStarted", "PlaybackFinished"}
	if !slices.Equal(raw, want) {
		t.Errorf("raw events %v, want %v", raw, want)
	}
}

func TestARIReplayEndpoints(t *testing.T) {
	facts := func(evs []*pb.Event) []string {
		var out []string
		for _, e := range evs {
			switch p := e.Payload.(type) {
			case *pb.Event_ContactStatus:
				c := p.ContactStatus
				out = append(out, fmt.Sprintf("contact %s %s %s rtt=%d/%v", c.Endpoint, c.Status, c.Uri, c.RoundtripUsec, c.RoundtripKnown))
			case *pb.Event_PeerStatus:
				out = append(out, "peer "+p.PeerStatus.Name+" "+p.PeerStatus.Status+" "+p.PeerStatus.Technology.String())
			case *pb.Event_DeviceState:
				out = append(out, "device "+p.DeviceState.Device+" "+p.DeviceState.State+" ep="+e.Refs.Endpoint)
			default:
				out = append(out, "unexpected "+payloadKind(e))
			}
		}
		return out
	}
	cases := []struct {
		phase string
		want  []string
	}{
		// In the websocket's order (which differs from AMI's).
		{"register", []string{
			"device PJSIP/1001 NOT_INUSE ep=1001", "peer 1001 Reachable TECHNOLOGY_PJSIP", "contact 1001 NonQualified sip:1001@127.0.0.1:5061 rtt=0/false",
			"peer 1002 Reachable TECHNOLOGY_PJSIP", "contact 1002 NonQualified sip:1002@127.0.0.1:5062 rtt=0/false", "device PJSIP/1002 NOT_INUSE ep=1002",
			"peer 1003 Reachable TECHNOLOGY_PJSIP", "device PJSIP/1003 NOT_INUSE ep=1003", "contact 1003 NonQualified sip:1003@127.0.0.1:5063 rtt=0/false",
			"device PJSIP/1004 NOT_INUSE ep=1004", "device Queue:support_avail NOT_INUSE ep=", "peer 1004 Reachable TECHNOLOGY_PJSIP",
			"contact 1004 NonQualified sip:1004@127.0.0.1:5064 rtt=0/false",
		}},
		// 1003 REGISTERs with Expires: 0.
		{"unregister", []string{"peer 1003 Unreachable TECHNOLOGY_PJSIP", "device PJSIP/1003 UNAVAILABLE ep=1003", "contact 1003 Removed sip:1003@127.0.0.1:5063 rtt=0/false"}},
		// 1004's contact expires.
		{"expiry", []string{
			"peer 1004 Unreachable TECHNOLOGY_PJSIP", "contact 1004 Removed sip:1004@127.0.0.1:5064 rtt=0/false",
			"device PJSIP/1004 UNAVAILABLE ep=1004", "device Queue:support_avail INUSE ep=",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			got := facts(ariReplay(&ARI{}, ariPhase(t, tc.phase)))
			if !slices.Equal(got, tc.want) {
				t.Errorf("facts:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// ariFact is one fact of an event in source-neutral form: (payload type,
// uniqueid, linkedid, state, hangup cause) as asked, plus a detail that
// pins the rest of what the payload says.
type ariFact struct {
	kind               string
	uniqueid, linkedid string
	state, cause       int32
	detail             string
}

func ariFactOf(e *pb.Event) ariFact {
	f := ariFact{kind: payloadKind(e)}
	var ch *pb.Channel
	switch p := e.Payload.(type) {
	case *pb.Event_ChannelCreated:
		ch = p.ChannelCreated.Channel
	case *pb.Event_ChannelStateChanged:
		ch = p.ChannelStateChanged.Channel
	case *pb.Event_CallerIdChanged:
		ch = p.CallerIdChanged.Channel
		f.detail = ch.ConnectedNum + "/" + ch.ConnectedName
	case *pb.Event_ChannelHungUp:
		ch, f.cause, f.detail = p.ChannelHungUp.Channel, p.ChannelHungUp.Cause, p.ChannelHungUp.CauseText
	case *pb.Event_ChannelHangupRequest:
		ch, f.cause, f.detail = p.ChannelHangupRequest.Channel, p.ChannelHangupRequest.Cause, fmt.Sprint("soft=", p.ChannelHangupRequest.Soft)
	case *pb.Event_DialBegin:
		ch = p.DialBegin.Caller
		f.detail = p.DialBegin.Callee.GetUniqueid() + "/" + p.DialBegin.Callee.GetLinkedid() + " " + p.DialBegin.DialString
	case *pb.Event_DialEnd:
		ch = p.DialEnd.Caller
		f.detail = p.DialEnd.Callee.GetUniqueid() + "/" + p.DialEnd.Callee.GetLinkedid() + " " + p.DialEnd.DialStatus
	case *pb.Event_BridgeEnter:
		ch = p.BridgeEnter.Channel
		f.detail = fmt.Sprint(p.BridgeEnter.BridgeId, " ", p.BridgeEnter.BridgeType, " ", p.BridgeEnter.NumChannels)
	case *pb.Event_BridgeLeave:
		ch = p.BridgeLeave.Channel
		f.detail = fmt.Sprint(p.BridgeLeave.BridgeId, " ", p.BridgeLeave.NumChannels)
	case *pb.Event_ChannelVarSet:
		ch = p.ChannelVarSet.Channel
		f.detail = p.ChannelVarSet.Variable + "=" + p.ChannelVarSet.Value
	case *pb.Event_ChannelHold:
		ch = p.ChannelHold.Channel
	case *pb.Event_Dtmf:
		ch = p.Dtmf.Channel
	case *pb.Event_BridgeLifecycle:
		b := p.BridgeLifecycle
		f.detail = fmt.Sprint(b.Action, " ", b.BridgeId, " ", b.BridgeType, " ", b.Technology, " ", b.NumChannels)
	case *pb.Event_DeviceState:
		f.detail = p.DeviceState.Device + " " + p.DeviceState.State
	case *pb.Event_ContactStatus:
		c := p.ContactStatus
		f.detail = c.Endpoint + " " + c.Aor + " " + c.Uri + " " + c.Status
	case *pb.Event_PeerStatus:
		f.detail = p.PeerStatus.Name + " " + p.PeerStatus.Status
	}
	if ch != nil {
		f.uniqueid, f.linkedid, f.state = ch.Uniqueid, ch.Linkedid, ch.State
	}
	return f
}

// TestARIMatchesAMI: for each phase captured on both interfaces, the facts
// the ARI normalizer derives equal those the AMI normalizer derives from
// the AMI session of the same phase, for every payload type both sources
// produce. Whole payloads are compared too.
//
// Exceptions found on the captures (not compared, by payload type):
//   - trunk_registration, queue_member: AMI only (ARI has no Registry or
//     QueueMemberStatus event).
//   - stasis_app, ari_event: ARI only (AMI has no StasisStart; ChannelDialplan
//     and Playback* are kept raw).
//
// Everything else matches exactly, including the callee's linkedid on its
// ChannelCreated and its first CallerIdChanged — ARI sends those before
// the Dial that tells it, which is why the normalizer holds them back — and
// the ChannelHangupRequest counts (AMI HangupRequest + SoftHangupRequest vs
// ARI's one type with "soft").
func TestARIMatchesAMI(t *testing.T) {
	phases := []string{"call_answered", "call_busy", "call_noanswer", "call_echo", "call_stasis", "register", "unregister", "expiry"}
	amiEv, ariEv := map[string][]*pb.Event{}, map[string][]*pb.Event{}
	amiKinds, ariKinds := map[string]bool{}, map[string]bool{}
	for _, ph := range phases {
		amiEv[ph] = amiPhase(t, ph)
		ariEv[ph] = ariReplay(&ARI{}, ariPhase(t, ph))
		for _, e := range amiEv[ph] {
			amiKinds[payloadKind(e)] = true
		}
		for _, e := range ariEv[ph] {
			ariKinds[payloadKind(e)] = true
		}
	}
	var shared, onlyAMI, onlyARI []string
	for k := range amiKinds {
		if ariKinds[k] {
			shared = append(shared, k)
		} else {
			onlyAMI = append(onlyAMI, k)
		}
	}
	for k := range ariKinds {
		if !amiKinds[k] {
			onlyARI = append(onlyARI, k)
		}
	}
	slices.Sort(shared)
	slices.Sort(onlyAMI)
	slices.Sort(onlyARI)
	t.Logf("compared: %v; AMI only: %v; ARI only: %v", shared, onlyAMI, onlyARI)
	for _, k := range onlyAMI {
		if k != "trunk_registration" && k != "queue_member" {
			t.Errorf("the AMI normalizer produces %s but the ARI one does not: a new exception to explain", k)
		}
	}
	for _, k := range onlyARI {
		if k != "stasis_app" && k != "ari_event" {
			t.Errorf("the ARI normalizer produces %s but the AMI one does not: a new exception to explain", k)
		}
	}
	for _, k := range []string{"channel_created", "channel_state_changed", "channel_hung_up", "dial_begin", "dial_end", "bridge_enter", "bridge_leave", "contact_status", "device_state"} {
		if !slices.Contains(shared, k) {
			t.Errorf("%s not compared", k)
		}
	}
	for _, ph := range phases {
		t.Run(ph, func(t *testing.T) {
			var fa, fr, pa, pr []string
			for _, src := range []struct {
				evs         []*pb.Event
				facts, text *[]string
			}{{amiEv[ph], &fa, &pa}, {ariEv[ph], &fr, &pr}} {
				for _, e := range src.evs {
					if !slices.Contains(shared, payloadKind(e)) {
						continue
					}
					*src.facts = append(*src.facts, fmt.Sprintf("%+v", ariFactOf(e)))
					// Whole events, envelope refs included. AMI events carry
					// no timestamp (pbx_time is the receive time then), ARI's
					// do: pbx_time is the one expected difference.
					e = proto.Clone(e).(*pb.Event)
					e.PbxTime = nil
					*src.text = append(*src.text, prototext.MarshalOptions{}.Format(e))
				}
			}
			for _, l := range [][]string{fa, fr, pa, pr} {
				slices.Sort(l)
			}
			if !slices.Equal(fa, fr) {
				t.Errorf("facts differ\nAMI only:\n  %s\nARI only:\n  %s", strings.Join(minus(fa, fr), "\n  "), strings.Join(minus(fr, fa), "\n  "))
			}
			if !slices.Equal(pa, pr) {
				t.Errorf("payloads differ\nAMI only:\n  %s\nARI only:\n  %s", strings.Join(minus(pa, pr), "\n  "), strings.Join(minus(pr, pa), "\n  "))
			}
		})
	}
}

// minus is the multiset difference a - b.
func minus(a, b []string) []string {
	n := map[string]int{}
	for _, s := range b {
		n[s]++
	}
	var out []string
	for _, s := range a {
		if n[s] > 0 {
			n[s]--
			continue
		}
		out = append(out, s)
	}
	return out
}

// TestARIWithAMI: when AMI follows the same PBX, ARI adds only what AMI
// cannot see.
func TestARIWithAMI(t *testing.T) {
	var got []string
	for _, ph := range []string{"register", "call_answered", "call_echo", "call_noanswer", "call_busy", "call_stasis", "unregister", "expiry"} {
		a := &ARI{WithAMI: true}
		for _, e := range ariReplay(a, ariPhase(t, ph)) {
			s := payloadKind(e)
			if p := e.GetAriEvent(); p != nil {
				s += " " + p.Type
			}
			if p := e.GetStasisApp(); p != nil {
				s += fmt.Sprint(" started=", p.Started, " linkedid=", p.Channel.Linkedid)
			}
			got = append(got, s)
		}
	}
	want := []string{
		"stasis_app started=true linkedid=1795288212.7", "ari_event PlaybackStarted", "ari_event PlaybackFinished",
		"stasis_app started=false linkedid=1795288212.7",
	}
	if !slices.Equal(got, want) {
		t.Errorf("with AMI: %v\nwant %v", got, want)
	}
}

// TestARIEveryCapturedFrame runs the whole websocket capture through one
// normalizer, in both modes: every event has a subject and encodes, every
// event has pbx_time, and nothing is held back at the end.
func TestARIEveryCapturedFrame(t *testing.T) {
	for _, withAMI := range []bool{false, true} {
		a := &ARI{WithAMI: withAMI}
		n := 0
		for i, f := range ariAllFrames(t) {
			ev, err := ari.Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			ev.Seq = uint64(i + 1)
			for _, e := range a.Event(ev) {
				n++
				ariCheckEvent(t, e)
				if e.PbxTime == nil {
					t.Errorf("frame %d: no pbx_time", i+1)
				}
			}
		}
		if len(a.Flush()) != 0 || len(a.pending) != 0 {
			t.Error("events still held at the end of the capture")
		}
		if a.linked.len() != 0 {
			t.Errorf("%d linkedids remembered after every channel was destroyed", a.linked.len())
		}
		t.Logf("withAMI=%v: %d events from 204 frames", withAMI, n)
	}
}

func ariCheckEvent(t testing.TB, e *pb.Event) {
	t.Helper()
	e = proto.Clone(e).(*pb.Event)
	e.Tenant, e.PbxId, e.Id = "t", "p", "id"
	if _, err := bus.EventSubject(e); err != nil {
		t.Fatalf("no subject: %v", err)
	}
	if _, err := proto.Marshal(e); err != nil {
		t.Fatalf("not encodable: %v", err)
	}
	if e.Refs == nil {
		t.Fatalf("%s without refs", payloadKind(e))
	}
}

// --- synthetic events: only keys of the captures or of events.json ---

// ariChannelJSON is a captured channel object with id, name and state replaced.
func ariChannelJSON(t *testing.T, id, name, state string) map[string]any {
	t.Helper()
	var ev struct {
		Channel map[string]any `json:"channel"`
	}
	if err := json.Unmarshal(ariLines(t, "ari/by-phase/call_answered.ari.jsonl")[0], &ev); err != nil {
		t.Fatal(err)
	}
	ev.Channel["id"], ev.Channel["name"], ev.Channel["state"] = id, name, state
	return ev.Channel
}

var ariT0 = time.Date(2026, 11, 21, 19, 30, 0, 0, time.UTC)

// ariEvent builds an event of type typ at t0+at with the given fields.
func ariEvent(t *testing.T, typ string, at time.Duration, fields map[string]any) ari.Event {
	t.Helper()
	m := map[string]any{
		"type": typ, "application": "monitor-app", "asterisk_id": "02:00:00:00:00:01",
		"timestamp": ariT0.Add(at).Format("2006-01-02T15:04:05.000-0700"),
	}
	for k, v := range fields {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ari.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func ariSummary(evs []*pb.Event) []string {
	var out []string
	for _, e := range evs {
		s := payloadKind(e) + " " + e.GetRefs().GetUniqueid() + "/" + e.GetRefs().GetLinkedid()
		if d := e.GetDialBegin(); d != nil {
			s += fmt.Sprint(" caller=", d.Caller.GetUniqueid(), " callee=", d.Callee.GetUniqueid(), "/", d.Callee.GetLinkedid())
		}
		out = append(out, s)
	}
	return out
}

func expectEvents(t *testing.T, what string, got []*pb.Event, want ...string) {
	t.Helper()
	if g := ariSummary(got); !slices.Equal(g, want) {
		t.Errorf("%s:\n  %s\nwant:\n  %s", what, strings.Join(g, "\n  "), strings.Join(want, "\n  "))
	}
	for _, e := range got {
		ariCheckEvent(t, e)
	}
}

func TestARIChannelWithoutDialReleasedByWindowOrFlush(t *testing.T) {
	a := &ARI{}
	down := ariChannelJSON(t, "9.1", "PJSIP/1001-00000009", "Down")
	expectEvents(t, "created Down", a.Event(ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": down})))
	expectEvents(t, "varset", a.Event(ariEvent(t, "ChannelVarset", 10*time.Millisecond, map[string]any{"channel": down, "variable": "X", "value": "1"})))
	dev := map[string]any{"device_state": map[string]any{"name": "PJSIP/1001", "state": "INUSE"}}
	expectEvents(t, "within the window", a.Event(ariEvent(t, "DeviceStateChanged", time.Second, dev)), "device_state /")
	expectEvents(t, "after the window", a.Event(ariEvent(t, "DeviceStateChanged", 3*time.Second, dev)),
		"channel_created 9.1/9.1", "channel_var_set 9.1/9.1", "device_state /")

	a = &ARI{}
	a.Event(ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": down}))
	expectEvents(t, "flush", a.Flush(), "channel_created 9.1/9.1")

	// Ringing without a Dial naming a caller: no Dial is coming.
	a = &ARI{}
	a.Event(ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": down}))
	ringing := ariChannelJSON(t, "9.1", "PJSIP/1001-00000009", "Ringing")
	expectEvents(t, "ringing", a.Event(ariEvent(t, "ChannelStateChange", 0, map[string]any{"channel": ringing})),
		"channel_created 9.1/9.1", "channel_state_changed 9.1/9.1")
}

func TestARIDialWithoutCaller(t *testing.T) {
	// An originate: the dialed channel has no caller; its call is its own.
	a := &ARI{}
	down := ariChannelJSON(t, "9.2", "PJSIP/1002-0000000a", "Down")
	a.Event(ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": down}))
	got := a.Event(ariEvent(t, "Dial", 0, map[string]any{"peer": down, "dialstatus": "", "dialstring": "PJSIP/1002"}))
	expectEvents(t, "dial", got, "channel_created 9.2/9.2", "dial_begin 9.2/9.2 caller= callee=9.2/9.2")
	if got[1].GetDialBegin().Caller != nil {
		t.Error("caller invented")
	}
}

func TestARILocalChannels(t *testing.T) {
	// Dial(Local/100@internal): both halves of the Local channel and what
	// its ;2 half dials belong to the caller's call.
	a := &ARI{}
	caller := ariChannelJSON(t, "8.1", "PJSIP/1001-00000010", "Ring")
	one := ariChannelJSON(t, "8.2", "Local/100@internal-00000001;1", "Down")
	two := ariChannelJSON(t, "8.3", "Local/100@internal-00000001;2", "Down")
	peer := ariChannelJSON(t, "8.4", "PJSIP/1002-00000011", "Down")
	var got []*pb.Event
	for _, ev := range []ari.Event{
		ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": caller}),
		ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": one}),
		ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": two}),
		ariEvent(t, "Dial", 0, map[string]any{"caller": caller, "peer": one, "dialstatus": "", "dialstring": "100@internal"}),
		ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": peer}),
		ariEvent(t, "Dial", 0, map[string]any{"caller": two, "peer": peer, "dialstatus": "", "dialstring": "1002"}),
		ariEvent(t, "Dial", 0, map[string]any{"caller": two, "peer": peer, "dialstatus": "RINGING"}),
		ariEvent(t, "Dial", 0, map[string]any{"caller": two, "peer": peer, "dialstatus": "CANCEL"}),
	} {
		got = append(got, a.Event(ev)...)
	}
	expectEvents(t, "local", got,
		"channel_created 8.1/8.1", "channel_created 8.2/8.1", "channel_created 8.3/8.1",
		"dial_begin 8.1/8.1 caller=8.1 callee=8.2/8.1",
		"channel_created 8.4/8.1", "dial_begin 8.3/8.1 caller=8.3 callee=8.4/8.1",
		"dial_end 8.3/8.1")
}

func TestARIBounds(t *testing.T) {
	a := &ARI{MaxTracked: 3}
	for i := range 10 {
		caller := ariChannelJSON(t, fmt.Sprint("7.", 2*i), "PJSIP/1001-1", "Ring")
		peer := ariChannelJSON(t, fmt.Sprint("7.", 2*i+1), "PJSIP/1002-1", "Down")
		a.Event(ariEvent(t, "Dial", 0, map[string]any{"caller": caller, "peer": peer, "dialstatus": ""}))
	}
	if n := a.linked.len(); n != 3 {
		t.Errorf("%d linkedids remembered, max 3", n)
	}
	if a.Linkedid("7.19") != "7.18" || a.Linkedid("7.1") != "7.1" {
		t.Errorf("kept the wrong entries: 7.19->%s 7.1->%s", a.Linkedid("7.19"), a.Linkedid("7.1"))
	}

	a = &ARI{MaxPending: 2, MaxHeld: 2}
	var got []*pb.Event
	for i := range 3 {
		ch := ariChannelJSON(t, fmt.Sprint("6.", i), "PJSIP/1003-1", "Down")
		got = append(got, a.Event(ariEvent(t, "ChannelCreated", 0, map[string]any{"channel": ch}))...)
	}
	expectEvents(t, "max pending", got, "channel_created 6.0/6.0")
	ch := ariChannelJSON(t, "6.2", "PJSIP/1003-1", "Down")
	got = nil
	for range 2 {
		got = append(got, a.Event(ariEvent(t, "ChannelConnectedLine", 0, map[string]any{"channel": ch}))...)
	}
	expectEvents(t, "max held", got, "channel_created 6.2/6.2", "caller_id_changed 6.2/6.2", "caller_id_changed 6.2/6.2")
}

// TestARIUncapturedTypes maps the event types the capture does not contain,
// built from documented keys only.
func TestARIUncapturedTypes(t *testing.T) {
	up := ariChannelJSON(t, "5.1", "PJSIP/1001-00000020", "Up")
	other := ariChannelJSON(t, "5.2", "PJSIP/1002-00000021", "Up")
	third := ariChannelJSON(t, "5.3", "PJSIP/1003-00000022", "Up")
	bridge := map[string]any{
		"id": "b-1", "technology": "simple_bridge", "bridge_type": "mixing", "bridge_class": "basic",
		"creator": "", "name": "", "channels": []string{"5.1", "5.2"}, "creationtime": "2026-11-21T19:30:00.000+0000", "video_mode": "none",
	}
	endpoint := map[string]any{"technology": "PJSIP", "resource": "1001", "state": "online", "channel_ids": []string{"5.1"}}
	cases := []struct {
		typ    string
		fields map[string]any
		check  func(t *testing.T, e *pb.Event)
	}{
		{"ChannelHold", map[string]any{"channel": up, "musicclass": "default"}, func(t *testing.T, e *pb.Event) {
			if h := e.GetChannelHold(); !h.GetHeld() || h.MusicClass != "default" || e.Refs.Uniqueid != "5.1" {
				t.Errorf("%v", e)
			}
		}},
		{"ChannelUnhold", map[string]any{"channel": up}, func(t *testing.T, e *pb.Event) {
			if h := e.GetChannelHold(); h == nil || h.Held {
				t.Errorf("%v", e)
			}
		}},
		{"ChannelDtmfReceived", map[string]any{"channel": up, "digit": "5", "duration_ms": 120}, func(t *testing.T, e *pb.Event) {
			if d := e.GetDtmf(); d.GetDigit() != "5" || d.DurationMs != 120 || d.Direction != "Received" {
				t.Errorf("%v", e)
			}
		}},
		{"ChannelCallerId", map[string]any{"channel": up, "caller_presentation": 0, "caller_presentation_txt": "Presentation Allowed, Not Screened"}, func(t *testing.T, e *pb.Event) {
			if c := e.GetCallerIdChanged(); c.GetChannel().GetCallerNum() != "1001" {
				t.Errorf("%v", e)
			}
		}},
		{"BridgeBlindTransfer", map[string]any{"channel": up, "transferee": other, "exten": "1003", "context": "internal", "result": "Success", "is_external": false, "bridge": bridge}, func(t *testing.T, e *pb.Event) {
			tr := e.GetTransfer()
			if tr.GetKind() != pb.Transfer_KIND_BLIND || tr.Transferer.Uniqueid != "5.1" || tr.Transferee.Uniqueid != "5.2" ||
				tr.Extension != "1003" || tr.Context != "internal" || tr.Result != "Success" || tr.BridgeId != "b-1" || e.Refs.Uniqueid != "5.1" {
				t.Errorf("%v", e)
			}
		}},
		{"BridgeAttendedTransfer", map[string]any{
			"transferer_first_leg": up, "transferer_second_leg": third, "transferee": other, "transfer_target": third,
			"result": "Success", "is_external": false, "transferer_first_leg_bridge": bridge, "destination_type": "bridge",
			"destination_bridge": "b-1",
		}, func(t *testing.T, e *pb.Event) {
			tr := e.GetTransfer()
			if tr.GetKind() != pb.Transfer_KIND_ATTENDED || tr.Transferer.Uniqueid != "5.1" || tr.SecondTransferer.Uniqueid != "5.3" ||
				tr.Target.Uniqueid != "5.3" || tr.DestType != "bridge" || tr.DestBridgeId != "b-1" || tr.BridgeId != "b-1" {
				t.Errorf("%v", e)
			}
		}},
		{"EndpointStateChange", map[string]any{"endpoint": endpoint}, func(t *testing.T, e *pb.Event) {
			s := e.GetEndpointState()
			if s.GetName() != "1001" || s.Technology != pb.Technology_TECHNOLOGY_PJSIP || s.Status != "online" || s.ActiveChannels != 1 || e.Refs.Endpoint != "1001" {
				t.Errorf("%v", e)
			}
		}},
		{"PeerStatusChange", map[string]any{"endpoint": map[string]any{"technology": "IAX2", "resource": "iaxtrunk", "channel_ids": []string{}},
			"peer": map[string]any{"peer_status": "Reachable", "address": "127.0.0.1", "port": "4569", "time": "12"}}, func(t *testing.T, e *pb.Event) {
			p := e.GetPeerStatus()
			if p.GetName() != "iaxtrunk" || p.Technology != pb.Technology_TECHNOLOGY_IAX2 || p.Address != "127.0.0.1:4569" || p.RoundtripMs != 12 {
				t.Errorf("%v", e)
			}
		}},
		{"ContactStatusChange", map[string]any{"endpoint": endpoint, "contact_info": map[string]any{
			"uri": "sip:1001@127.0.0.1:5061", "contact_status": "Reachable", "aor": "1001", "roundtrip_usec": "1534"}}, func(t *testing.T, e *pb.Event) {
			if c := e.GetContactStatus(); c.GetRoundtripUsec() != 1534 || !c.RoundtripKnown || c.Status != "Reachable" {
				t.Errorf("%v", e)
			}
		}},
		{"ChannelEnteredBridge", map[string]any{"bridge": bridge}, func(t *testing.T, e *pb.Event) {
			if r := e.GetAriEvent(); r.GetType() != "ChannelEnteredBridge" || e.Refs.BridgeId != "b-1" {
				t.Errorf("entered bridge without channel: %v", e)
			}
		}},
		{"ChannelUserevent", map[string]any{"eventname": "Foo", "channel": up, "userevent": map[string]any{}}, func(t *testing.T, e *pb.Event) {
			if r := e.GetAriEvent(); r.GetType() != "ChannelUserevent" || e.Refs.Uniqueid != "5.1" || e.Refs.Endpoint != "1001" {
				t.Errorf("%v", e)
			}
		}},
		{"PbxpulseFutureEvent", map[string]any{"channel": up}, func(t *testing.T, e *pb.Event) {
			if r := e.GetAriEvent(); r.GetType() != "PbxpulseFutureEvent" || e.Refs.Uniqueid != "5.1" || !json.Valid(r.Json) {
				t.Errorf("%v", e)
			}
		}},
		// A known type whose JSON does not fit is kept raw, not lost.
		{"ChannelDestroyed", map[string]any{"channel": up, "cause": "sixteen", "cause_txt": "Normal Clearing"}, func(t *testing.T, e *pb.Event) {
			if r := e.GetAriEvent(); r.GetType() != "ChannelDestroyed" {
				t.Errorf("%v", e)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			got := (&ARI{}).Event(ariEvent(t, tc.typ, 0, tc.fields))
			if len(got) != 1 {
				t.Fatalf("%d events", len(got))
			}
			ariCheckEvent(t, got[0])
			if got[0].PbxTime.AsTime() != ariT0 {
				t.Errorf("pbx_time %v", got[0].PbxTime.AsTime())
			}
			tc.check(t, got[0])
		})
	}

	// Nothing for: a global variable (as AMI), an intermediate dial state,
	// and a frame that carried an error.
	a := &ARI{}
	for _, ev := range []ari.Event{
		ariEvent(t, "ChannelVarset", 0, map[string]any{"variable": "GLOBAL_X", "value": "1"}),
		ariEvent(t, "Dial", 0, map[string]any{"caller": up, "peer": other, "dialstatus": "PROGRESS"}),
		ariEvent(t, "Dial", 0, map[string]any{"caller": up, "peer": other, "dialstatus": "PROCEEDING"}),
		{Err: &ari.FrameError{Reason: "test"}},
	} {
		if got := a.Event(ev); len(got) != 0 {
			t.Errorf("%s: %v", ev.Type, got)
		}
	}
}

func TestARIState(t *testing.T) {
	for s, want := range map[string]int32{
		"Down": 0, "Rsrvd": 1, "Rsrved": 1, "OffHook": 2, "Dialing": 3, "Ring": 4, "Ringing": 5, "Up": 6,
		"Busy": 7, "Dialing Offhook": 8, "Pre-ring": 9, "Unknown (65542)": 65542, "Unknown": 0, "": 0,
	} {
		if got := ariState(s); got != want {
			t.Errorf("ariState(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestARISnapshot converts the REST reads taken in mid-call.
func TestARISnapshot(t *testing.T) {
	var chs []ari.Channel
	var brs []ari.Bridge
	for path, v := range map[string]any{"ari/rest/incall-channels.json": &chs, "ari/rest/incall-bridges.json": &brs} {
		b, err := os.ReadFile(filepath.Join(ariCaptures, path))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	// The events up to the moment of the reads taught the dial.
	a := &ARI{}
	for _, ev := range ariPhase(t, "call_answered") {
		if ev.Type == "ChannelHangupRequest" {
			break
		}
		a.Event(ev)
	}
	now := time.Date(2026, 11, 21, 19, 9, 35, 0, time.UTC) // the answer's Date header
	got := a.Snapshot(chs, brs, now)
	if len(got) != 2 {
		t.Fatalf("%d channels", len(got))
	}
	for i, want := range []struct{ id, app string }{{"1795288171.0", "Dial"}, {"1795288171.1", "AppDial"}} {
		c := got[i]
		if c.Uniqueid != want.id || c.Linkedid != "1795288171.0" || c.Application != want.app || c.State != 6 ||
			c.BridgeId != "6cbe9d93-ecb3-4118-b752-e8724c14b787" || c.DurationSeconds != 3 {
			t.Errorf("channel %d: %v", i, c)
		}
	}
}
