package normalize

import (
	"bytes"
	"errors"
	"google.golang.org/protobuf/proto"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/staskobzar/goami2"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

const fixtures = "../../../../testdata/asterisk/22.10.1/ami"

func readFrames(t *testing.T, path string, banner bool) []*goami2.Message {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, path))
	if err != nil {
		t.Fatal(err)
	}
	r := ami.NewReader(bytes.NewReader(raw))
	if banner {
		if _, err := r.ReadBanner(); err != nil {
			t.Fatal(err)
		}
	}
	var out []*goami2.Message
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

func kinds(evs []*pb.Event) map[string]int {
	n := map[string]int{}
	for _, e := range evs {
		switch e.Payload.(type) {
		case *pb.Event_ChannelCreated:
			n["created"]++
		case *pb.Event_ChannelStateChanged:
			n["state"]++
		case *pb.Event_ChannelHungUp:
			n["hangup"]++
		case *pb.Event_DialBegin:
			n["dial_begin"]++
		case *pb.Event_DialEnd:
			n["dial_end"]++
		case *pb.Event_BridgeEnter:
			n["bridge_enter"]++
		case *pb.Event_BridgeLeave:
			n["bridge_leave"]++
		case *pb.Event_ContactStatus:
			n["contact"]++
		case *pb.Event_DeviceState:
			n["device"]++
		case *pb.Event_TrunkRegistration:
			n["registry"]++
		case *pb.Event_CallerIdChanged:
			n["callerid"]++
		}
	}
	return n
}

func TestPhases(t *testing.T) {
	cases := []struct {
		phase string
		want  map[string]int
	}{
		{"register", map[string]int{"contact": 4, "device": 5, "registry": 1}},
		{"call_answered", map[string]int{"created": 2, "state": 3, "hangup": 2, "dial_begin": 1, "dial_end": 1, "bridge_enter": 2, "bridge_leave": 2, "device": 4, "registry": 1, "callerid": 2}},
		{"call_busy", map[string]int{"created": 2, "hangup": 2, "dial_begin": 1, "dial_end": 1, "callerid": 2}},
		{"call_echo", map[string]int{"created": 1, "state": 1, "hangup": 1, "device": 2}},
		{"unregister", map[string]int{"contact": 1, "device": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.phase, func(t *testing.T) {
			var evs []*pb.Event
			for _, m := range readFrames(t, "by-phase/"+tc.phase+".ami.raw", false) {
				if e := Event(m); e != nil {
					evs = append(evs, e)
				}
			}
			got := kinds(evs)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: %d, want %d (all: %v)", k, got[k], v, got)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("kinds %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCallAnsweredDetails(t *testing.T) {
	var hangups []*pb.ChannelHungUp
	var created []*pb.Channel
	for _, m := range readFrames(t, "by-phase/call_answered.ami.raw", false) {
		e := Event(m)
		switch p := e.GetPayload().(type) {
		case *pb.Event_ChannelHungUp:
			hangups = append(hangups, p.ChannelHungUp)
		case *pb.Event_ChannelCreated:
			created = append(created, p.ChannelCreated.Channel)
			if e.Refs.Endpoint == "" || e.Refs.Linkedid != "1795288171.0" {
				t.Errorf("refs %v", e.Refs)
			}
		}
	}
	if created[0].ConnectedNum != "" || created[0].CallerNum != "1001" || created[0].Exten != "1002" {
		t.Errorf("caller channel %v: <unknown> must become empty", created[0])
	}
	if hangups[0].Cause != 16 || hangups[0].CauseText != "Normal Clearing" {
		t.Errorf("hangup %v", hangups[0])
	}
}

func TestSecurityEventTime(t *testing.T) {
	// ChallengeSent is not tracked, but EventTV parsing is shared.
	m := goami2.NewMessage()
	m.AddField("Event", "ContactStatus")
	m.AddField("EventTV", "2026-11-21T19:09:15.916+0000")
	e := Event(m)
	if e.PbxTime.AsTime().UnixMilli() != 1795288155916 {
		t.Fatalf("pbx time %v", e.PbxTime.AsTime())
	}
}

func TestClassifyIdleEndpoints(t *testing.T) {
	var c Classifier
	msgs := readFrames(t, "ami-actions-idle.in.raw", true)
	for _, m := range msgs {
		if m.Field("Event") == "OutboundRegistrationDetail" {
			c.NoteRegistration(m)
		}
	}
	want := map[string]pb.EndpointKind{
		"1001": pb.EndpointKind_ENDPOINT_KIND_EXTENSION, "1005": pb.EndpointKind_ENDPOINT_KIND_EXTENSION,
		"provider": pb.EndpointKind_ENDPOINT_KIND_TRUNK,
	}
	seen := 0
	for _, m := range msgs {
		if m.Field("Event") != "EndpointList" {
			continue
		}
		es := EndpointState(m, c.Kind(m))
		if k, ok := want[es.Name]; ok {
			seen++
			if es.Kind != k {
				t.Errorf("%s: %v, want %v", es.Name, es.Kind, k)
			}
		}
		if es.Name == "1001" && (len(es.ContactUris) != 1 || es.ContactUris[0] != "sip:1001@127.0.0.1:5061") {
			t.Errorf("1001 contacts %q", es.ContactUris)
		}
	}
	if seen != 3 {
		t.Fatalf("saw %d of 3 endpoints", seen)
	}
}

func TestContactListItem(t *testing.T) {
	for _, m := range readFrames(t, "ami-actions-idle.in.raw", true) {
		if m.Field("Event") != "ContactList" {
			continue
		}
		c := ContactListItem(m)
		if c.Endpoint != "1001" {
			continue
		}
		if c.Aor != "1001" || c.UserAgent != "sipp-heldout" || c.RoundtripKnown || c.ViaAddress != "127.0.0.1:5061" || c.ExpirationTime != 1795288455 {
			t.Fatalf("contact %v", c)
		}
		return
	}
	t.Fatal("no contact for 1001")
}

func TestContactStatusDetail(t *testing.T) {
	var got *pb.ContactStatus
	for _, m := range readFrames(t, "ami-actions-incall.in.raw", true) {
		if m.Field("Event") == "ContactStatusDetail" {
			got = Event(m).GetContactStatus()
		}
	}
	want := &pb.ContactStatus{Endpoint: "1002", Aor: "1002", Uri: "sip:1002@127.0.0.1:5062", Status: "NonQualified",
		UserAgent: "sipp-heldout", ViaAddress: "127.0.0.1:5062", ExpirationTime: 1795288456}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
