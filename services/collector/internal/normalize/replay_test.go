package normalize

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// story is what a person would say happened in one call, derived only from
// the normalized events: the contract must carry enough to tell it.
type story struct {
	caller, callee string
	channels       int
	answered       bool
	bridged        bool
	dialStatus     string
	causes         []int32 // hangup causes in hangup order
	hungUpBy       string  // endpoint of the first hard hangup request
}

func (s story) String() string {
	return fmt.Sprintf("%s->%s channels=%d answered=%v bridged=%v dial=%s causes=%v by=%s",
		s.caller, s.callee, s.channels, s.answered, s.bridged, s.dialStatus, s.causes, s.hungUpBy)
}

// tell groups events by Linkedid and tells each call's story, in the order
// calls began.
func tell(evs []*pb.Event) []story {
	var order []string
	calls := map[string]*story{}
	get := func(linkedid string) *story {
		s, ok := calls[linkedid]
		if !ok {
			s = &story{}
			calls[linkedid] = s
			order = append(order, linkedid)
		}
		return s
	}
	for _, e := range evs {
		id := e.GetRefs().GetLinkedid()
		switch p := e.Payload.(type) {
		case *pb.Event_ChannelCreated:
			s := get(id)
			s.channels++
			if s.channels == 1 {
				s.caller, s.callee = p.ChannelCreated.Channel.CallerNum, p.ChannelCreated.Channel.Exten
			}
		case *pb.Event_ChannelStateChanged:
			if p.ChannelStateChanged.Channel.State == 6 {
				get(id).answered = true
			}
		case *pb.Event_DialBegin:
			get(id).callee = ami.EndpointOfChannel(p.DialBegin.Callee.GetName())
		case *pb.Event_DialEnd:
			get(id).dialStatus = p.DialEnd.DialStatus
		case *pb.Event_BridgeEnter:
			get(id).bridged = true
		case *pb.Event_ChannelHangupRequest:
			if s := get(id); s.hungUpBy == "" && !p.ChannelHangupRequest.Soft {
				s.hungUpBy = ami.EndpointOfChannel(p.ChannelHangupRequest.Channel.Name)
			}
		case *pb.Event_ChannelHungUp:
			s := get(id)
			s.causes = append(s.causes, p.ChannelHungUp.Cause)
		}
	}
	out := make([]story, 0, len(order))
	for _, id := range order {
		out = append(out, *calls[id])
	}
	return out
}

func normalizePhase(t *testing.T, phase string) []*pb.Event {
	t.Helper()
	var evs []*pb.Event
	for _, m := range readFrames(t, "by-phase/"+phase+".ami.raw", false) {
		if e := Event(m); e != nil {
			evs = append(evs, e)
		}
	}
	return evs
}

// Every captured call scenario, replayed through the normalizer, tells what
// the PBX did (see testdata/asterisk/22.10.1/README.md).
func TestReplayCallScenarios(t *testing.T) {
	cases := []struct {
		phase string
		want  []string
	}{
		// 1001 calls 1002, which rings and answers; 1001 hangs up (its
		// BYE is the HangupRequest); both legs end Normal Clearing.
		{"call_answered", []string{"1001->1002 channels=2 answered=true bridged=true dial=ANSWER causes=[16 16] by=1001"}},
		// 1001 calls 600: Answer + Echo on one channel; 1001 hangs up.
		// Asterisk reports Hangup cause 0 here (the request had 16).
		{"call_echo", []string{"1001->600 channels=1 answered=true bridged=false dial= causes=[0] by=1001"}},
		// 1003 rings until the 20 s Dial timeout: the callee leg is
		// cancelled (cause 0), the caller then cleared; nobody hung up.
		{"call_noanswer", []string{"1001->1003 channels=2 answered=false bridged=false dial=NOANSWER causes=[0 16] by="}},
		// 1004 answers 486 Busy: its leg is hung up with 17 User busy.
		{"call_busy", []string{"1001->1004 channels=2 answered=false bridged=false dial=BUSY causes=[17 17] by=1004"}},
		// 1001 calls 700 -> Stasis, answered by the app; 1001 hangs up.
		{"call_stasis", []string{"1001->700 channels=1 answered=true bridged=false dial= causes=[0] by=1001"}},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			var got []string
			for _, s := range tell(normalizePhase(t, tc.phase)) {
				got = append(got, s.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// facts lists the endpoint-level facts of a phase, one line each.
func facts(evs []*pb.Event) []string {
	var out []string
	for _, e := range evs {
		switch p := e.Payload.(type) {
		case *pb.Event_ContactStatus:
			out = append(out, "contact "+p.ContactStatus.Endpoint+" "+p.ContactStatus.Status+" "+p.ContactStatus.Uri)
		case *pb.Event_PeerStatus:
			out = append(out, "peer "+p.PeerStatus.Name+" "+p.PeerStatus.Status)
		case *pb.Event_TrunkRegistration:
			out = append(out, "registration "+p.TrunkRegistration.ClientUri+" "+p.TrunkRegistration.Status)
		case *pb.Event_QueueMember:
			q := p.QueueMember
			out = append(out, fmt.Sprintf("member %s %s status=%d paused=%v", q.Queue, q.Interface, q.Status, q.Paused))
		}
	}
	return out
}

func TestReplayEndpointScenarios(t *testing.T) {
	cases := []struct {
		phase string
		want  []string
	}{
		// 1001..1004 REGISTER; the trunk's boot-time registration lands
		// here; queue member 1004 becomes available (1 = not in use).
		{"register", []string{
			"peer 1001 Reachable", "contact 1001 NonQualified sip:1001@127.0.0.1:5061",
			"peer 1002 Reachable", "contact 1002 NonQualified sip:1002@127.0.0.1:5062",
			"registration sip:heldout@127.0.0.1:5070 Registered",
			"peer 1003 Reachable", "contact 1003 NonQualified sip:1003@127.0.0.1:5063",
			"peer 1004 Reachable", "member support PJSIP/1004 status=1 paused=false",
			"contact 1004 NonQualified sip:1004@127.0.0.1:5064",
		}},
		// 1003 REGISTERs with Expires: 0.
		{"unregister", []string{"peer 1003 Unreachable", "contact 1003 Removed sip:1003@127.0.0.1:5063"}},
		// 1004's contact expires; as a queue member it becomes unavailable (5).
		{"expiry", []string{
			"peer 1004 Unreachable", "contact 1004 Removed sip:1004@127.0.0.1:5064",
			"member support PJSIP/1004 status=5 paused=false",
		}},
		// PJSIPUnregister then PJSIPRegister: two Unregistered first.
		{"trunk_register", []string{
			"registration sip:heldout@127.0.0.1:5070 Unregistered",
			"registration sip:heldout@127.0.0.1:5070 Unregistered",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			got := facts(normalizePhase(t, tc.phase))
			if !slices.Equal(got, tc.want) {
				t.Errorf("facts:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}
