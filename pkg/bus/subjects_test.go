package bus

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func TestEventSubject(t *testing.T) {
	cases := []struct {
		ev   *pb.Event
		want string
	}{
		{&pb.Event{Payload: &pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{}}}, "pbx.acme.pbx1.evt.call.channel_created"},
		{&pb.Event{Payload: &pb.Event_ChannelHungUp{ChannelHungUp: &pb.ChannelHungUp{}}}, "pbx.acme.pbx1.evt.call.channel_hangup"},
		{&pb.Event{Payload: &pb.Event_ContactStatus{ContactStatus: &pb.ContactStatus{}}}, "pbx.acme.pbx1.evt.endpoint.contact"},
		{&pb.Event{Payload: &pb.Event_PbxConnection{PbxConnection: &pb.PbxConnection{}}}, "pbx.acme.pbx1.evt.pbx.connection"},
		{&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: &pb.TrunkRegistration{}}}, "pbx.acme.pbx1.evt.trunk.registration"},
		{&pb.Event{Payload: &pb.Event_QueueCaller{QueueCaller: &pb.QueueCaller{}}}, "pbx.acme.pbx1.evt.queue.caller"},
		{&pb.Event{Payload: &pb.Event_AriEvent{AriEvent: &pb.AriEvent{Type: "PlaybackStarted"}}}, "pbx.acme.pbx1.evt.ari.playbackstarted"},
		{&pb.Event{Payload: &pb.Event_AriEvent{AriEvent: &pb.AriEvent{Type: "x.>"}}}, "pbx.acme.pbx1.evt.ari.unknown"},
		{&pb.Event{Payload: &pb.Event_LogLine{LogLine: &pb.LogLine{Level: "WARNING"}}}, "pbx.acme.pbx1.log.warning"},
		{&pb.Event{Payload: &pb.Event_LogLine{LogLine: &pb.LogLine{Level: "a.b"}}}, "pbx.acme.pbx1.log.unknown"},
		{&pb.Event{Payload: &pb.Event_LogBatch{LogBatch: &pb.LogBatch{Level: "DEBUG"}}}, "pbx.acme.pbx1.log.debug"},
		{&pb.Event{Payload: &pb.Event_LogBatch{LogBatch: &pb.LogBatch{}}}, "pbx.acme.pbx1.log.unknown"},
		{&pb.Event{Payload: &pb.Event_LogBatch{LogBatch: &pb.LogBatch{Level: "MY_LEVEL2"}}}, "pbx.acme.pbx1.log.my_level2"},
		{&pb.Event{Payload: &pb.Event_LogStats{LogStats: &pb.LogStats{}}}, "pbx.acme.pbx1.logstats"},
		{&pb.Event{Payload: &pb.Event_SecurityEvent{SecurityEvent: &pb.SecurityEvent{Event: "InvalidPassword"}}}, "pbx.acme.pbx1.evt.security.invalidpassword"},
		{&pb.Event{Payload: &pb.Event_SecurityEvent{SecurityEvent: &pb.SecurityEvent{Event: "Bad Name"}}}, "pbx.acme.pbx1.evt.security.unknown"},
	}
	for _, tc := range cases {
		tc.ev.Tenant, tc.ev.PbxId = "acme", "pbx1"
		got, err := EventSubject(tc.ev)
		if err != nil || got != tc.want {
			t.Errorf("%T: %q %v, want %q", tc.ev.Payload, got, err, tc.want)
		}
	}
	for _, level := range []string{"WARNING", "a.b", "", "MY_LEVEL2"} {
		ev := &pb.Event{Tenant: "acme", PbxId: "pbx1", Payload: &pb.Event_LogBatch{LogBatch: &pb.LogBatch{Level: level}}}
		if want, _ := EventSubject(ev); LogSubject("acme", "pbx1", level) != want {
			t.Errorf("LogSubject(%q) = %q, want %q", level, LogSubject("acme", "pbx1", level), want)
		}
	}
	if _, err := EventSubject(&pb.Event{Tenant: "acme", PbxId: "p"}); err == nil {
		t.Error("an event without payload got a subject")
	}
}

// Every payload of the contract has a subject, and no two share one: a new
// payload added to events.proto without a subject fails here.
func TestEveryPayloadHasASubject(t *testing.T) {
	od := (&pb.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	seen := map[string]protoreflect.Name{}
	for i := 0; i < od.Fields().Len(); i++ {
		fd := od.Fields().Get(i)
		ev := &pb.Event{}
		m := ev.ProtoReflect()
		m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		d, typ := Kind(ev)
		if d == "" {
			t.Errorf("payload %s has no subject", fd.Name())
			continue
		}
		if d == DomainARI || d == DomainLog || d == DomainSecurity {
			continue // the type token comes from the payload
		}
		if prev, dup := seen[d+"."+typ]; dup {
			t.Errorf("payloads %s and %s share subject %s.%s", prev, fd.Name(), d, typ)
		}
		seen[d+"."+typ] = fd.Name()
	}
}

// Log and log-count subjects belong to the tenant's log stream, events to
// the event stream: a subject in neither would be refused, one in both
// cannot exist.
func TestStreamsCoverTheirSubjects(t *testing.T) {
	cases := []struct {
		name    string
		subject string
		logs    bool
		events  bool
	}{
		{"log line", "pbx.acme.pbx1.log.notice", true, false},
		{"log counts", LogStatsSubject("acme", "pbx1"), true, false},
		{"security event", "pbx.acme.pbx1.evt.security.invalidpassword", false, true},
		{"other tenant's log", "pbx.other.pbx1.log.notice", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := false
			for _, f := range LogStreamSubjects("acme") {
				logs = logs || subjectMatch(f, tc.subject)
			}
			events := subjectMatch(EventsFilter, tc.subject)
			if logs != tc.logs || events != tc.events {
				t.Errorf("%s: in logs %v (want %v), in events %v (want %v)", tc.subject, logs, tc.logs, events, tc.events)
			}
		})
	}
}

// subjectMatch reports whether a NATS filter matches subject.
func subjectMatch(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}
