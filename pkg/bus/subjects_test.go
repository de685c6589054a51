package bus

import (
	"testing"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func TestEventSubject(t *testing.T) {
	cases := []struct {
		payload any
		want    string
	}{
		{&pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{}}, "pbx.acme.pbx1.evt.call.channel_created"},
		{&pb.Event_ChannelHungUp{ChannelHungUp: &pb.ChannelHungUp{}}, "pbx.acme.pbx1.evt.call.channel_hangup"},
		{&pb.Event_ContactStatus{ContactStatus: &pb.ContactStatus{}}, "pbx.acme.pbx1.evt.endpoint.contact"},
		{&pb.Event_PbxConnection{PbxConnection: &pb.PbxConnection{}}, "pbx.acme.pbx1.evt.pbx.connection"},
		{&pb.Event_TrunkRegistration{TrunkRegistration: &pb.TrunkRegistration{}}, "pbx.acme.pbx1.evt.trunk.registration"},
		{&pb.Event_LogLine{LogLine: &pb.LogLine{Level: "WARNING"}}, "pbx.acme.pbx1.log.warning"},
		{&pb.Event_LogLine{LogLine: &pb.LogLine{Level: "a.b"}}, "pbx.acme.pbx1.log.unknown"},
	}
	for _, tc := range cases {
		e := &pb.Event{Tenant: "acme", PbxId: "pbx1"}
		switch p := tc.payload.(type) {
		case *pb.Event_ChannelCreated:
			e.Payload = p
		case *pb.Event_ChannelHungUp:
			e.Payload = p
		case *pb.Event_ContactStatus:
			e.Payload = p
		case *pb.Event_PbxConnection:
			e.Payload = p
		case *pb.Event_TrunkRegistration:
			e.Payload = p
		case *pb.Event_LogLine:
			e.Payload = p
		}
		got, err := EventSubject(e)
		if err != nil || got != tc.want {
			t.Errorf("%T: %q %v, want %q", tc.payload, got, err, tc.want)
		}
	}
	if _, err := EventSubject(&pb.Event{Tenant: "acme", PbxId: "p"}); err == nil {
		t.Error("an event without payload got a subject")
	}
}
