package projection

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

var t0 = time.Date(2026, 11, 21, 19, 9, 31, 0, time.UTC)

type step struct {
	after   time.Duration
	payload any
}

func ev(pbx string, s step) *pb.Event {
	e := &pb.Event{Tenant: "acme", PbxId: pbx, PbxTime: timestamppb.New(t0.Add(s.after))}
	switch p := s.payload.(type) {
	case *pb.EndpointState:
		e.Payload = &pb.Event_EndpointState{EndpointState: p}
	case *pb.ContactStatus:
		e.Payload = &pb.Event_ContactStatus{ContactStatus: p}
	case *pb.ChannelCreated:
		e.Payload = &pb.Event_ChannelCreated{ChannelCreated: p}
	case *pb.ChannelStateChanged:
		e.Payload = &pb.Event_ChannelStateChanged{ChannelStateChanged: p}
	case *pb.ChannelHungUp:
		e.Payload = &pb.Event_ChannelHungUp{ChannelHungUp: p}
	case *pb.BridgeEnter:
		e.Payload = &pb.Event_BridgeEnter{BridgeEnter: p}
	case *pb.DialEnd:
		e.Payload = &pb.Event_DialEnd{DialEnd: p}
	case *pb.ChannelsSnapshot:
		e.Payload = &pb.Event_ChannelsSnapshot{ChannelsSnapshot: p}
	case *pb.PbxConnection:
		e.Payload = &pb.Event_PbxConnection{PbxConnection: p}
	}
	return e
}

func ch(name, uid, linked string, state int32, num, name2 string) *pb.Channel {
	return &pb.Channel{Name: name, Uniqueid: uid, Linkedid: linked, State: state, CallerNum: num, CallerName: name2, Exten: "1002"}
}

func endpoints() []step {
	return []step{
		{0, &pb.EndpointState{Name: "1001", Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_EXTENSION, DeviceState: "Not in use", ContactUris: []string{"sip:1001@127.0.0.1:5061"}}},
		{0, &pb.EndpointState{Name: "1002", Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_EXTENSION, DeviceState: "Not in use", ContactUris: []string{"sip:1002@127.0.0.1:5062"}}},
	}
}

func TestCalls(t *testing.T) {
	a := ch("PJSIP/1001-00000000", "1.0", "1.0", 4, "1001", "Ext 1001")
	b := ch("PJSIP/1002-00000001", "1.1", "1.0", 5, "1002", "Ext 1002")
	up := func(c *pb.Channel) *pb.Channel { c = proto.Clone(c).(*pb.Channel); c.State = 6; return c }
	cases := []struct {
		name              string
		steps             []step
		wantCalls         int
		wantState         string
		wantCallee        string
		wantAnswered      bool
		wantEndpointState string
	}{
		{"ringing", []step{{1, &pb.ChannelCreated{Channel: a}}, {2, &pb.ChannelCreated{Channel: b}}}, 1, "ringing", "1002", false, "in_call"},
		{"answered and bridged", []step{
			{1, &pb.ChannelCreated{Channel: a}}, {2, &pb.ChannelCreated{Channel: b}},
			{3, &pb.ChannelStateChanged{Channel: up(b)}}, {3, &pb.ChannelStateChanged{Channel: up(a)}},
			{4, &pb.BridgeEnter{BridgeId: "br", Channel: up(b)}}, {4, &pb.BridgeEnter{BridgeId: "br", Channel: up(a)}},
			{5, &pb.DialEnd{Caller: up(a), Callee: up(b), DialStatus: "ANSWER"}},
		}, 1, "bridged", "1002", true, "in_call"},
		{"busy then gone", []step{
			{1, &pb.ChannelCreated{Channel: a}}, {2, &pb.ChannelCreated{Channel: b}},
			{3, &pb.ChannelHungUp{Channel: b, Cause: 17}},
			{3, &pb.DialEnd{Caller: a, Callee: b, DialStatus: "BUSY"}}, // after the callee's Hangup: must not resurrect it
			{4, &pb.ChannelHungUp{Channel: a, Cause: 17}},
		}, 0, "", "", false, "online"},
		{"echo: one channel answered by an application", []step{
			{1, &pb.ChannelCreated{Channel: ch("PJSIP/1001-00000002", "2.0", "2.0", 4, "1001", "Ext 1001")}},
			{2, &pb.ChannelStateChanged{Channel: ch("PJSIP/1001-00000002", "2.0", "2.0", 6, "1001", "Ext 1001")}},
		}, 1, "up", "1002", true, "in_call"},
		{"resync snapshot closes ended calls", []step{
			{1, &pb.ChannelCreated{Channel: a}}, {2, &pb.ChannelCreated{Channel: b}},
			{10, &pb.ChannelsSnapshot{}},
		}, 0, "", "", false, "online"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := New("acme", nil, nil)
			for _, s := range append(endpoints(), tc.steps...) {
				v.Apply(ev("pbx1", s))
			}
			snap := v.Snapshot(1)
			if len(snap.Calls) != tc.wantCalls {
				t.Fatalf("%d calls, want %d: %v", len(snap.Calls), tc.wantCalls, snap.Calls)
			}
			if tc.wantCalls == 1 {
				c := snap.Calls[0]
				if c.State != tc.wantState || c.CalleeNum != tc.wantCallee || c.CallerNum != "1001" || (c.AnsweredAt != nil) != tc.wantAnswered {
					t.Errorf("call %v", c)
				}
			}
			if st := snap.Endpoints[0].Status; st != tc.wantEndpointState {
				t.Errorf("1001 status %q, want %q", st, tc.wantEndpointState)
			}
		})
	}
}

func TestContactsAndChanges(t *testing.T) {
	v := New("acme", nil, nil)
	for _, s := range endpoints() {
		v.Apply(ev("pbx1", s))
	}
	v.TakeChanges()
	v.Apply(ev("pbx1", step{1, &pb.ContactStatus{Endpoint: "1001", Uri: "sip:1001@127.0.0.1:5061", Status: "Removed"}}))
	changes := v.TakeChanges()
	if len(changes) != 1 || changes[0].GetEndpoint().GetStatus() != "online" || len(changes[0].GetEndpoint().Contacts) != 0 {
		// Device state still says "Not in use" until its own event comes.
		t.Fatalf("changes %v", changes)
	}
	if len(v.TakeChanges()) != 0 {
		t.Fatal("changes not forgotten")
	}
	// A number keeps its leading zero through the views.
	v.Apply(ev("pbx1", step{2, &pb.ChannelCreated{Channel: ch("PJSIP/1001-0000000a", "9.0", "9.0", 4, "0800123", "<b>x</b>")}}))
	c := v.Snapshot(2).Calls[0]
	if c.CallerNum != "0800123" || c.CallerName != "<b>x</b>" {
		t.Fatalf("caller %q %q", c.CallerNum, c.CallerName)
	}
}

// ARI's endpoint state is partial: it must not wipe the contacts, kind and
// device state the full listing gave.
func TestPartialEndpointStateKeepsListing(t *testing.T) {
	v := New("acme", nil, nil)
	for _, s := range endpoints() {
		v.Apply(ev("pbx1", s))
	}
	v.Apply(ev("pbx1", step{1, &pb.EndpointState{Name: "1001", Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "online", Partial: true}}))
	var got *pb.EndpointView
	for _, e := range v.Snapshot(1).Endpoints {
		if e.Name == "1001" {
			got = e
		}
	}
	if got == nil || len(got.Contacts) != 1 || got.Kind != pb.EndpointKind_ENDPOINT_KIND_EXTENSION || got.DeviceState != "Not in use" {
		t.Fatalf("endpoint after a partial state: %v", got)
	}
}
