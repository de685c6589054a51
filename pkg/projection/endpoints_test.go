package projection

import (
	"fmt"
	"testing"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func TestTrunkRegistrationFlaps(t *testing.T) {
	reg := func(status, cause string) *pb.TrunkRegistration {
		return &pb.TrunkRegistration{Name: "carrier", Technology: pb.Technology_TECHNOLOGY_PJSIP,
			ClientUri: "sip:me@sbc.carrier.example", ServerUri: "sip:sbc.carrier.example", Status: status, Cause: cause}
	}
	cases := []struct {
		name       string
		step       at
		wantSample bool
		wantKey    string
	}{
		{"first registration", at{0, reg("Registered", "")}, true, "sip:me@sbc.carrier.example"},
		{"re-registration", at{secs(60), reg("Registered", "")}, false, "sip:me@sbc.carrier.example"},
		{"rejected", at{secs(120), reg("Rejected", "403 Forbidden")}, true, "sip:me@sbc.carrier.example"},
		{"rejected again", at{secs(180), reg("Rejected", "403 Forbidden")}, false, "sip:me@sbc.carrier.example"},
		{"rejected for another cause", at{secs(240), reg("Rejected", "408 Request Timeout")}, true, "sip:me@sbc.carrier.example"},
		{"unregistered", at{secs(300), reg("Unregistered", "")}, true, "sip:me@sbc.carrier.example"},
		{"registered again", at{secs(360), reg("Registered", "")}, true, "sip:me@sbc.carrier.example"},
		// AMI's Registry event does not name the registration: the flap
		// stays under the name the listing gave.
		{"unnamed event", at{secs(380), &pb.TrunkRegistration{ClientUri: "sip:me@sbc.carrier.example", ServerUri: "sip:sbc.carrier.example", Status: "Rejected", Cause: "401"}}, true, "sip:me@sbc.carrier.example"},
		// Without a client URI (chan_sip, IAX2) the registration is named by its trunk.
		{"keyed by name", at{secs(400), &pb.TrunkRegistration{Name: "iax-trunk", Technology: pb.Technology_TECHNOLOGY_IAX2, Status: "Registered"}}, true, "iax-trunk"},
	}
	r := newRun(t, nil)
	var samples int
	for _, tc := range cases {
		r.apply(tc.step)
		want := tc.step.p.(*pb.TrunkRegistration)
		var got *pb.TrunkRegistrationView
		for _, c := range r.changes {
			if g := c.GetRegistration(); g != nil {
				got = g
			}
		}
		if got == nil || got.Key != tc.wantKey || got.Status != want.Status || got.Cause != want.Cause ||
			got.ClientUri != want.ClientUri || got.ServerUri != want.ServerUri || !sameTime(got.UpdatedAt, ts(tc.step.after)) {
			t.Errorf("%s: registration row %v", tc.name, got)
		}
		if tc.wantSample {
			samples++
		}
		if len(r.health) != samples {
			t.Fatalf("%s: %d health samples, want %d: %v", tc.name, len(r.health), samples, r.health)
		}
		if tc.wantSample {
			s := r.health[len(r.health)-1]
			trunk := want.Name
			if trunk == "" {
				trunk = "carrier"
			}
			if s.Kind != "registration" || s.Trunk != trunk || s.Status != want.Status || s.Cause != want.Cause || !sameTime(s.At, ts(tc.step.after)) || s.PbxId != "pbx1" {
				t.Errorf("%s: sample %v", tc.name, s)
			}
		}
	}
	if regs := r.v.Snapshot(0).Registrations; len(regs) != 2 {
		t.Errorf("%d registrations, want 2: %v", len(regs), regs)
	}
}

func TestTrunkRoundTripSampling(t *testing.T) {
	const uri = "sip:sbc.carrier.example:5060"
	cases := []struct {
		name       string
		after      int // seconds after t0
		status     string
		rtt        int64
		wantSample bool
	}{
		{"first qualify", 0, "Reachable", 20000, true},
		{"10 s later", 10, "Reachable", 21000, false},
		{"59 s after the sample", 59, "Reachable", 22000, false},
		{"a minute after the sample", 60, "Reachable", 23000, true},
		{"one second after that", 61, "Reachable", 24000, false},
		{"unreachable: a status change is always sampled", 90, "Unreachable", 0, true},
		{"still unreachable", 95, "Unreachable", 0, false},
		{"reachable again", 100, "Reachable", 30000, true},
		{"30 s later", 130, "Reachable", 31000, false},
		{"60 s after the last", 160, "Reachable", 32000, true},
	}
	r := newRun(t, nil).apply(pbxEndpoints()...)
	var samples int
	for _, tc := range cases {
		r.apply(at{secs(tc.after), &pb.ContactStatus{Endpoint: "carrier", Aor: "carrier", Uri: uri, Status: tc.status, RoundtripUsec: tc.rtt, RoundtripKnown: tc.rtt > 0}},
			// An extension's round trips never enter the trunk history.
			at{secs(tc.after), &pb.ContactStatus{Endpoint: "1001", Uri: "sip:1001@10.0.0.1:5060", Status: tc.status, RoundtripUsec: tc.rtt, RoundtripKnown: tc.rtt > 0}})
		if tc.wantSample {
			samples++
		}
		if len(r.health) != samples {
			t.Fatalf("%s: %d samples, want %d: %v", tc.name, len(r.health), samples, r.health)
		}
		e := r.endpoint("carrier")
		if tc.wantSample {
			s := r.health[len(r.health)-1]
			if s.Kind != "roundtrip" || s.Trunk != "carrier" || s.Status != tc.status || !sameTime(s.At, ts(secs(tc.after))) {
				t.Errorf("%s: sample %v", tc.name, s)
			}
			// An unreachable contact's event carries no round trip
			// (RoundtripUsec: 0); what a sample of it says is not checked here.
			if tc.rtt > 0 && s.RoundtripUsec != tc.rtt {
				t.Errorf("%s: sample round trip %d, want %d", tc.name, s.RoundtripUsec, tc.rtt)
			}
			if !sameTime(e.LastHealthSample, s.At) {
				t.Errorf("%s: last sample %s, want %s", tc.name, showTime(e.LastHealthSample), showTime(s.At))
			}
		}
		wantReach := map[string]string{"Reachable": "reachable", "Unreachable": "unreachable"}[tc.status]
		if e.Reachability != wantReach || e.Registration != "registered" || len(e.Contacts) != 1 || e.Contacts[0].Status != tc.status {
			t.Errorf("%s: reachability %q registration %q contacts %v", tc.name, e.Reachability, e.Registration, e.Contacts)
		}
	}
	if e := r.endpoint("1001"); e.LastHealthSample != nil {
		t.Errorf("an extension has a health sample time: %s", showTime(e.LastHealthSample))
	}
}

// chan_sip and IAX2 trunks report reachability and round trip in PeerStatus.
func TestPeerTrunkSampling(t *testing.T) {
	cases := []struct {
		name       string
		after      int
		status     string
		rttMs      int64
		wantReach  string
		wantSample bool
	}{
		{"reachable as listed: sampled for its round trip", 0, "Reachable", 12, "reachable", true},
		{"30 s later", 30, "Reachable", 13, "reachable", false},
		{"unreachable", 45, "Unreachable", 0, "unreachable", true},
		{"still unreachable", 50, "Unreachable", 0, "unreachable", false},
		{"lagged is reachable", 70, "Lagged", 900, "reachable", true},
		{"unmonitored", 75, "Unmonitored", 0, "unknown", true},
	}
	r := newRun(t, nil).apply(at{0, &pb.EndpointState{Name: "oldsip", Technology: pb.Technology_TECHNOLOGY_SIP, Kind: pb.EndpointKind_ENDPOINT_KIND_TRUNK,
		Status: "OK (5 ms)", Address: "192.0.2.7:5060", Description: "legacy carrier"}})
	if e := r.endpoint("oldsip"); e.Reachability != "reachable" || e.Address != "192.0.2.7:5060" || e.Status != "online" {
		t.Fatalf("listed peer: reachability %q address %q status %q", e.Reachability, e.Address, e.Status)
	}
	var samples int
	for _, tc := range cases {
		r.apply(at{secs(tc.after), &pb.PeerStatus{Name: "oldsip", Technology: pb.Technology_TECHNOLOGY_SIP, Status: tc.status, RoundtripMs: tc.rttMs}},
			at{secs(tc.after), &pb.PeerStatus{Name: "not-listed", Status: tc.status, RoundtripMs: tc.rttMs}})
		if tc.wantSample {
			samples++
		}
		if len(r.health) != samples {
			t.Fatalf("%s: %d samples, want %d: %v", tc.name, len(r.health), samples, r.health)
		}
		if tc.wantSample {
			if s := r.health[len(r.health)-1]; s.Status != tc.status || s.RoundtripUsec != tc.rttMs*1000 || s.Trunk != "oldsip" {
				t.Errorf("%s: sample %v", tc.name, s)
			}
		}
		if e := r.endpoint("oldsip"); e.Reachability != tc.wantReach || e.Address != "192.0.2.7:5060" {
			t.Errorf("%s: reachability %q address %q", tc.name, e.Reachability, e.Address)
		}
	}
}

// An endpoint lists every call it is in, however many at once, and its
// status says what the busiest of its channels is doing.
func TestEndpointCallsAndStatus(t *testing.T) {
	in5 := chn("PJSIP/1003-00000050", "5.0", "5.0", 4, "1003", "Ext 1003", "1001")
	ring5 := chn("PJSIP/1001-00000051", "5.1", "5.0", 5, "1001", "Ext 1001", "")
	in6 := chn("PJSIP/1004-00000060", "6.0", "6.0", 6, "1004", "Ext 1004", "1001")
	up6 := chn("PJSIP/1001-00000061", "6.1", "6.0", 6, "1001", "Ext 1001", "")
	out7 := chn("PJSIP/1001-00000070", "7.0", "7.0", 4, "1001", "Ext 1001", "*97")
	self8 := chn("PJSIP/1001-00000080", "8.0", "8.0", 6, "1001", "Ext 1001", "1001")
	self8b := chn("PJSIP/1001-00000081", "8.1", "8.0", 6, "1001", "Ext 1001", "")
	cases := []struct {
		name     string
		steps    []at
		calls    string
		channels uint32
		status   string
	}{
		{"rung by 1003", []at{{secs(1), &pb.ChannelCreated{Channel: in5}}, {secs(1), &pb.DialBegin{Caller: in5, Callee: ring5}}}, "[5.0]", 1, "ringing"},
		{"and in a call with 1004", []at{{secs(2), &pb.ChannelCreated{Channel: in6}}, {secs(2), &pb.ChannelCreated{Channel: up6}}}, "[5.0 6.0]", 2, "in_call"},
		{"holds 1004 while 1003 rings", []at{{secs(3), &pb.ChannelHold{Channel: up6, Held: true}}}, "[5.0 6.0]", 2, "on_hold"},
		{"and dials out", []at{{secs(4), &pb.ChannelCreated{Channel: out7}}}, "[5.0 6.0 7.0]", 3, "in_call"},
		{"calls itself", []at{{secs(5), &pb.ChannelCreated{Channel: self8}}, {secs(5), &pb.ChannelCreated{Channel: self8b}}}, "[5.0 6.0 7.0 8.0]", 5, "in_call"},
		{"one leg of the self call goes", []at{{secs(6), &pb.ChannelHungUp{Channel: self8b, Cause: 16}}}, "[5.0 6.0 7.0 8.0]", 4, "in_call"},
		{"the self call ends", []at{{secs(6), &pb.ChannelHungUp{Channel: self8, Cause: 16}}}, "[5.0 6.0 7.0]", 3, "in_call"},
		{"the dial out fails", []at{{secs(7), &pb.ChannelHungUp{Channel: out7, Cause: 1}}}, "[5.0 6.0]", 2, "on_hold"},
		// 1003's call goes on (to voicemail, say) without 1001.
		{"stops ringing", []at{{secs(8), &pb.ChannelHungUp{Channel: ring5, Cause: 19}}}, "[6.0]", 1, "on_hold"},
		{"unholds", []at{{secs(9), &pb.ChannelHold{Channel: up6, Held: false}}}, "[6.0]", 1, "in_call"},
		// A rename keeps the channel in the endpoint's count.
		{"renamed", []at{{secs(10), &pb.ChannelRenamed{Channel: up6, NewName: "PJSIP/1001-00000061<ZOMBIE>"}}}, "[6.0]", 1, "in_call"},
		{"hangs up", []at{{secs(11), &pb.ChannelHungUp{Channel: with(up6, func(c *pb.Channel) { c.Name += "<ZOMBIE>" }), Cause: 16}}}, "[]", 0, "online"},
	}
	r := newRun(t, nil).apply(pbxEndpoints()...)
	for _, tc := range cases {
		r.apply(tc.steps...)
		e := r.endpoint("1001")
		if fmt.Sprint(e.Calls) != tc.calls || e.ActiveChannels != tc.channels || e.Status != tc.status {
			t.Errorf("%s: calls %v channels %d status %q, want %s %d %q", tc.name, e.Calls, e.ActiveChannels, e.Status, tc.calls, tc.channels, tc.status)
		}
		changed := false
		for _, c := range r.changes {
			if g := c.GetEndpoint(); g != nil && g.Name == "1001" {
				changed = true
			}
		}
		if !changed {
			t.Errorf("%s: 1001 not among the changed rows", tc.name)
		}
	}
	if e := r.endpoint("1003"); fmt.Sprint(e.Calls) != "[5.0]" || e.Status != "in_call" {
		t.Errorf("1003: calls %v status %q", e.Calls, e.Status)
	}
	if e := r.endpoint("1004"); fmt.Sprint(e.Calls) != "[6.0]" || e.Status != "in_call" {
		t.Errorf("1004: calls %v status %q", e.Calls, e.Status)
	}
}

func TestEndpointStatusWithoutCalls(t *testing.T) {
	const uri = "sip:1001@10.0.0.1:5060"
	cases := []struct {
		name                        string
		step                        at
		status, registration, reach string
	}{
		{"listed", at{}, "online", "registered", "unknown"},
		{"reachable", at{secs(1), &pb.ContactStatus{Endpoint: "1001", Uri: uri, Status: "Reachable", RoundtripUsec: 900, RoundtripKnown: true}}, "online", "registered", "reachable"},
		{"in use", at{secs(2), &pb.DeviceState{Device: "PJSIP/1001", State: "INUSE"}}, "in_call", "registered", "reachable"},
		{"on hold", at{secs(3), &pb.DeviceState{Device: "PJSIP/1001", State: "ONHOLD"}}, "on_hold", "registered", "reachable"},
		{"ringing", at{secs(4), &pb.DeviceState{Device: "PJSIP/1001", State: "RINGINUSE"}}, "ringing", "registered", "reachable"},
		{"not a device of an endpoint", at{secs(5), &pb.DeviceState{Device: "Queue:support_avail", State: "UNAVAILABLE"}}, "ringing", "registered", "reachable"},
		{"unknown device state: the contacts say", at{secs(6), &pb.DeviceState{Device: "PJSIP/1001", State: "UNKNOWN"}}, "online", "registered", "reachable"},
		{"unreachable", at{secs(7), &pb.ContactStatus{Endpoint: "1001", Uri: uri, Status: "Unreachable"}}, "offline", "registered", "unreachable"},
		{"second contact", at{secs(8), &pb.ContactStatus{Aor: "1001", Uri: "sip:1001@10.0.0.2:5060", Status: "Reachable", RoundtripKnown: true, RoundtripUsec: 800}}, "online", "registered", "reachable"},
		{"first removed", at{secs(9), &pb.ContactStatus{Endpoint: "1001", Uri: uri, Status: "Removed"}}, "online", "registered", "reachable"},
		{"none left", at{secs(10), &pb.ContactStatus{Endpoint: "1001", Uri: "sip:1001@10.0.0.2:5060", Status: "Removed"}}, "unknown", "unregistered", "unknown"},
		{"unavailable", at{secs(11), &pb.DeviceState{Device: "PJSIP/1001", State: "UNAVAILABLE"}}, "offline", "unregistered", "unknown"},
		// The listing is the truth about contacts.
		{"listed again", at{secs(12), &pb.EndpointState{Name: "1001", Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_EXTENSION,
			DeviceState: "Not in use", ContactUris: []string{uri}}}, "online", "registered", "unknown"},
	}
	r := newRun(t, nil).apply(pbxEndpoints()...)
	for _, tc := range cases {
		if tc.step.p != nil {
			r.apply(tc.step)
		}
		e := r.endpoint("1001")
		if e.Status != tc.status || e.Registration != tc.registration || e.Reachability != tc.reach {
			t.Errorf("%s: status %q registration %q reachability %q, want %q %q %q", tc.name, e.Status, e.Registration, e.Reachability, tc.status, tc.registration, tc.reach)
		}
	}
}

// PJSIP reports a contact's reachability twice: ContactStatus, then
// PeerStatus for the endpoint. Whether the PeerStatus is a change (a
// health sample) must not depend on whether the projector's batch ended
// between the two: a restart or a rebuild batches differently.
func TestPJSIPPeerStatusDoesNotDependOnBatches(t *testing.T) {
	const uri = "sip:sbc.carrier.example:5060"
	steps := []at{
		{secs(1), &pb.ContactStatus{Endpoint: "carrier", Uri: uri, Status: "Reachable", RoundtripUsec: 20000, RoundtripKnown: true}},
		{secs(1), &pb.PeerStatus{Name: "carrier", Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Reachable"}},
		{secs(90), &pb.ContactStatus{Endpoint: "carrier", Uri: uri, Status: "Unreachable"}},
		{secs(90), &pb.PeerStatus{Name: "carrier", Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Unreachable"}},
		{secs(95), &pb.ContactStatus{Endpoint: "carrier", Uri: uri, Status: "Reachable", RoundtripUsec: 30000, RoundtripKnown: true}},
		{secs(95), &pb.PeerStatus{Name: "carrier", Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Reachable"}},
	}
	var want string
	for _, batch := range []int{1, 2, len(steps)} {
		r := newRun(t, nil).apply(pbxEndpoints()...)
		for i := 0; i < len(steps); i += batch {
			r.apply(steps[i:min(i+batch, len(steps))]...)
		}
		got := fmt.Sprint(r.health)
		if batch == 1 {
			want = got
			if len(r.health) != 3 {
				t.Errorf("one event per batch: %d samples, want one per contact change: %v", len(r.health), r.health)
			}
			continue
		}
		if got != want {
			t.Errorf("batches of %d: samples\n%s\nwant (one event per batch)\n%s", batch, got, want)
		}
		if e := r.endpoint("carrier"); e.Reachability != "reachable" {
			t.Errorf("batches of %d: reachability %q", batch, e.Reachability)
		}
	}
}
