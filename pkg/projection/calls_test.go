package projection

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// event wraps any payload the projection reads into an event of pbx at
// t0+after (the helper ev in projection_test.go knows only some of them).
func event(pbx string, after time.Duration, p proto.Message) *pb.Event {
	e := &pb.Event{Tenant: "acme", PbxId: pbx, PbxTime: timestamppb.New(t0.Add(after))}
	switch p := p.(type) {
	case *pb.PbxConnection:
		e.Payload = &pb.Event_PbxConnection{PbxConnection: p}
	case *pb.EndpointState:
		e.Payload = &pb.Event_EndpointState{EndpointState: p}
	case *pb.ContactStatus:
		e.Payload = &pb.Event_ContactStatus{ContactStatus: p}
	case *pb.PeerStatus:
		e.Payload = &pb.Event_PeerStatus{PeerStatus: p}
	case *pb.DeviceState:
		e.Payload = &pb.Event_DeviceState{DeviceState: p}
	case *pb.TrunkRegistration:
		e.Payload = &pb.Event_TrunkRegistration{TrunkRegistration: p}
	case *pb.ChannelCreated:
		e.Payload = &pb.Event_ChannelCreated{ChannelCreated: p}
	case *pb.ChannelStateChanged:
		e.Payload = &pb.Event_ChannelStateChanged{ChannelStateChanged: p}
	case *pb.CallerIdChanged:
		e.Payload = &pb.Event_CallerIdChanged{CallerIdChanged: p}
	case *pb.ChannelRenamed:
		e.Payload = &pb.Event_ChannelRenamed{ChannelRenamed: p}
	case *pb.DialBegin:
		e.Payload = &pb.Event_DialBegin{DialBegin: p}
	case *pb.DialEnd:
		e.Payload = &pb.Event_DialEnd{DialEnd: p}
	case *pb.BridgeEnter:
		e.Payload = &pb.Event_BridgeEnter{BridgeEnter: p}
	case *pb.BridgeLeave:
		e.Payload = &pb.Event_BridgeLeave{BridgeLeave: p}
	case *pb.ChannelHold:
		e.Payload = &pb.Event_ChannelHold{ChannelHold: p}
	case *pb.Transfer:
		e.Payload = &pb.Event_Transfer{Transfer: p}
	case *pb.ChannelHangupRequest:
		e.Payload = &pb.Event_ChannelHangupRequest{ChannelHangupRequest: p}
	case *pb.ChannelHungUp:
		e.Payload = &pb.Event_ChannelHungUp{ChannelHungUp: p}
	case *pb.ChannelsSnapshot:
		e.Payload = &pb.Event_ChannelsSnapshot{ChannelsSnapshot: p}
	case *pb.QueueSummary:
		e.Payload = &pb.Event_QueueSummary{QueueSummary: p}
	case *pb.QueueMember:
		e.Payload = &pb.Event_QueueMember{QueueMember: p}
	case *pb.QueueCaller:
		e.Payload = &pb.Event_QueueCaller{QueueCaller: p}
	case *pb.QueueAgent:
		e.Payload = &pb.Event_QueueAgent{QueueAgent: p}
	case *pb.QueuesSnapshot:
		e.Payload = &pb.Event_QueuesSnapshot{QueuesSnapshot: p}
	default:
		panic(fmt.Sprintf("event: no payload for %T", p))
	}
	return e
}

// at is one event of a scenario: its payload and when, after t0, it happens.
type at struct {
	after time.Duration
	p     proto.Message
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }

// run applies events to fresh views and keeps every row that only grows.
type run struct {
	t       *testing.T
	v       *Views
	history []*pb.CallRecord
	health  []*pb.TrunkHealthSample
	changes []*pb.Change // of the last apply
}

func newRun(t *testing.T, loc *time.Location) *run {
	t.Helper()
	return &run{t: t, v: New("acme", nil, loc)}
}

// apply applies events of pbx1 as one batch and takes its changes.
func (r *run) apply(steps ...at) *run {
	return r.applyOn("pbx1", steps...)
}

func (r *run) applyOn(pbx string, steps ...at) *run {
	for _, s := range steps {
		r.v.Apply(event(pbx, s.after, s.p))
	}
	r.changes = r.v.TakeChanges()
	for _, c := range r.changes {
		switch row := c.Row.(type) {
		case *pb.Change_History:
			r.history = append(r.history, row.History)
		case *pb.Change_TrunkHealth:
			r.health = append(r.health, row.TrunkHealth)
		}
	}
	return r
}

func (r *run) call(linkedid string) *pb.CallView {
	for _, c := range r.v.Snapshot(0).Calls {
		if c.PbxId == "pbx1" && c.Linkedid == linkedid {
			return c
		}
	}
	return nil
}

func (r *run) mustCall(linkedid string) *pb.CallView {
	r.t.Helper()
	c := r.call(linkedid)
	if c == nil {
		r.t.Fatalf("no call %s; calls: %v", linkedid, r.v.Snapshot(0).Calls)
	}
	return c
}

func (r *run) endpoint(name string) *pb.EndpointView {
	r.t.Helper()
	for _, e := range r.v.Snapshot(0).Endpoints {
		if e.PbxId == "pbx1" && e.Name == name {
			return e
		}
	}
	r.t.Fatalf("no endpoint %s", name)
	return nil
}

// record returns the one history record of a call.
func (r *run) record(linkedid string) *pb.CallRecord {
	r.t.Helper()
	var found *pb.CallRecord
	for _, h := range r.history {
		if h.Linkedid == linkedid {
			if found != nil {
				r.t.Fatalf("call %s entered the history twice: %v and %v", linkedid, found, h)
			}
			found = h
		}
	}
	if found == nil {
		r.t.Fatalf("call %s is not in the history (%d records)", linkedid, len(r.history))
	}
	return found
}

func chn(name, uid, linked string, state int32, num, cname, exten string) *pb.Channel {
	return &pb.Channel{Name: name, Uniqueid: uid, Linkedid: linked, State: state, CallerNum: num, CallerName: cname, Exten: exten}
}

// with returns a copy of c changed by f.
func with(c *pb.Channel, f func(*pb.Channel)) *pb.Channel {
	c = proto.Clone(c).(*pb.Channel)
	f(c)
	return c
}

func inState(c *pb.Channel, state int32) *pb.Channel {
	return with(c, func(c *pb.Channel) { c.State = state })
}

func ts(after time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(after)) }

func sameTime(a, b *timestamppb.Timestamp) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.AsTime().Equal(b.AsTime())
}

func showTime(x *timestamppb.Timestamp) string {
	if x == nil {
		return "nil"
	}
	return x.AsTime().Sub(t0).String()
}

// pbxEndpoints lists four extensions and a trunk, as the collector's
// endpoint listing does on connect.
func pbxEndpoints() []at {
	ext := func(n string) at {
		return at{0, &pb.EndpointState{Name: n, Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_EXTENSION,
			DeviceState: "Not in use", ContactUris: []string{"sip:" + n + "@10.0.0.1:5060"}}}
	}
	return []at{
		ext("1001"), ext("1002"), ext("1003"), ext("1004"),
		{0, &pb.EndpointState{Name: "carrier", Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_TRUNK,
			DeviceState: "Not in use", ContactUris: []string{"sip:sbc.carrier.example:5060"}}},
	}
}

// Channels of an internal call 1001 -> 1002 (Linkedid 1.0).
var (
	aRing = chn("PJSIP/1001-00000000", "1.0", "1.0", 4, "1001", "Ext 1001", "1002")
	bRing = chn("PJSIP/1002-00000001", "1.1", "1.0", 5, "1002", "Ext 1002", "")
	aUp   = inState(aRing, 6)
	bUp   = inState(bRing, 6)
)

// answered is 1001 calling 1002, answered at 5s and bridged.
func answered() []at {
	return []at{
		{secs(1), &pb.ChannelCreated{Channel: aRing}},
		{secs(2), &pb.DialBegin{Caller: aRing, Callee: bRing}},
		{secs(5), &pb.ChannelStateChanged{Channel: bUp}},
		{secs(5), &pb.ChannelStateChanged{Channel: aUp}},
		{secs(5), &pb.DialEnd{Caller: aUp, Callee: bUp, DialStatus: "ANSWER"}},
		{secs(5), &pb.BridgeEnter{BridgeId: "br1", Channel: bUp}},
		{secs(5), &pb.BridgeEnter{BridgeId: "br1", Channel: aUp}},
	}
}

// hangup is a channel hanging up on its own (a BYE from its phone): the
// request, leaving the bridge, and the hangup.
func hangup(after time.Duration, c *pb.Channel, cause int32) []at {
	return []at{
		{after, &pb.ChannelHangupRequest{Channel: c, Cause: cause}},
		{after, &pb.BridgeLeave{BridgeId: c.BridgeId, Channel: c}},
		{after, &pb.ChannelHungUp{Channel: c, Cause: cause, CauseText: causeText[cause]}},
	}
}

// hungUpBy is the other side of a hangup: the bridge asks it softly.
func hungUpBy(after time.Duration, c *pb.Channel, cause int32) []at {
	return []at{
		{after, &pb.ChannelHangupRequest{Channel: c, Cause: cause, Soft: true}},
		{after, &pb.BridgeLeave{BridgeId: c.BridgeId, Channel: c}},
		{after, &pb.ChannelHungUp{Channel: c, Cause: cause, CauseText: causeText[cause]}},
	}
}

var causeText = map[int32]string{
	0: "Unknown", 1: "Unallocated (unassigned) number", 16: "Normal Clearing", 17: "User busy",
	18: "No user responding", 19: "User alerting, no answer", 20: "Subscriber absent", 21: "Call Rejected",
	34: "Circuit/channel congestion",
}

func cat(parts ...[]at) []at {
	var out []at
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestCallDirectionThroughTrunk(t *testing.T) {
	// Inbound: the call's first channel is on the trunk.
	tIn := chn("PJSIP/carrier-00000010", "2.0", "2.0", 4, "+4930123456", "Berlin Office", "100")
	xIn := chn("PJSIP/1001-00000011", "2.1", "2.0", 5, "1001", "Ext 1001", "")
	// Outbound: a later channel is on the trunk; the trunk leg has no
	// caller ID of its own, so the callee is the number dialled.
	oOut := chn("PJSIP/1001-00000020", "3.0", "3.0", 4, "1001", "Ext 1001", "0049301234")
	tOut := chn("PJSIP/carrier-00000021", "3.1", "3.0", 5, "", "", "")
	inbound := []at{
		{secs(1), &pb.ChannelCreated{Channel: tIn}},
		{secs(2), &pb.DialBegin{Caller: tIn, Callee: xIn}},
		{secs(6), &pb.ChannelStateChanged{Channel: inState(xIn, 6)}},
		{secs(6), &pb.ChannelStateChanged{Channel: inState(tIn, 6)}},
		{secs(6), &pb.DialEnd{Caller: inState(tIn, 6), Callee: inState(xIn, 6), DialStatus: "ANSWER"}},
	}
	outbound := []at{
		{secs(1), &pb.ChannelCreated{Channel: oOut}},
		{secs(2), &pb.DialBegin{Caller: oOut, Callee: tOut}},
		{secs(9), &pb.ChannelStateChanged{Channel: inState(tOut, 6)}},
		{secs(9), &pb.ChannelStateChanged{Channel: inState(oOut, 6)}},
	}
	cases := []struct {
		name       string
		listTrunk  bool
		steps      []at
		end        []at
		linkedid   string
		wantDir    string
		wantTrunk  string
		wantCaller string
		wantCallee string
		wantAnswer time.Duration
		wantParty  []string
	}{
		{"inbound", true, inbound, cat(hangup(secs(66), inState(tIn, 6), 16), hungUpBy(secs(66), inState(xIn, 6), 16)),
			"2.0", "inbound", "carrier", "+4930123456", "1001", secs(6), []string{"carrier", "1001"}},
		{"outbound", true, outbound, cat(hangup(secs(39), inState(oOut, 6), 16), hungUpBy(secs(39), inState(tOut, 6), 16)),
			"3.0", "outbound", "carrier", "1001", "0049301234", secs(9), []string{"1001", "carrier"}},
		// The trunk hangs up first: the call stays outbound through it.
		{"outbound, trunk leg gone first", true, outbound, cat(hangup(secs(39), inState(tOut, 6), 16), hungUpBy(secs(40), inState(oOut, 6), 16)),
			"3.0", "outbound", "carrier", "1001", "0049301234", secs(9), []string{"1001", "carrier"}},
		// Without the listing saying "carrier" is a trunk it is just another endpoint.
		{"trunk not listed", false, inbound, cat(hangup(secs(66), inState(tIn, 6), 16), hungUpBy(secs(66), inState(xIn, 6), 16)),
			"2.0", "internal", "", "+4930123456", "1001", secs(6), []string{"carrier", "1001"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, nil)
			for _, s := range pbxEndpoints() {
				if s.p.(*pb.EndpointState).Kind == pb.EndpointKind_ENDPOINT_KIND_TRUNK && !tc.listTrunk {
					continue
				}
				r.apply(s)
			}
			r.apply(tc.steps...)
			c := r.mustCall(tc.linkedid)
			if c.Direction != tc.wantDir || c.Trunk != tc.wantTrunk || c.CallerNum != tc.wantCaller || c.CalleeNum != tc.wantCallee {
				t.Errorf("live call: direction %q trunk %q caller %q callee %q, want %q %q %q %q",
					c.Direction, c.Trunk, c.CallerNum, c.CalleeNum, tc.wantDir, tc.wantTrunk, tc.wantCaller, tc.wantCallee)
			}
			if c.State != "up" || !sameTime(c.AnsweredAt, ts(tc.wantAnswer)) {
				t.Errorf("live call: state %q answered %s, want up at %s", c.State, showTime(c.AnsweredAt), tc.wantAnswer)
			}
			r.apply(tc.end...)
			if r.call(tc.linkedid) != nil {
				t.Fatalf("call %s still live after its hangups", tc.linkedid)
			}
			h := r.record(tc.linkedid)
			if h.Direction != tc.wantDir || h.Trunk != tc.wantTrunk || h.CallerNum != tc.wantCaller || h.CalleeNum != tc.wantCallee {
				t.Errorf("history: direction %q trunk %q caller %q callee %q, want %q %q %q %q",
					h.Direction, h.Trunk, h.CallerNum, h.CalleeNum, tc.wantDir, tc.wantTrunk, tc.wantCaller, tc.wantCallee)
			}
			if h.Disposition != "answered" || fmt.Sprint(h.Parties) != fmt.Sprint(tc.wantParty) {
				t.Errorf("history: disposition %q parties %v, want answered %v", h.Disposition, h.Parties, tc.wantParty)
			}
			if h.RingSeconds != (tc.wantAnswer - secs(1)).Seconds() {
				t.Errorf("ring %vs, want %v", h.RingSeconds, (tc.wantAnswer - secs(1)).Seconds())
			}
		})
	}
}

func TestHoldAndUnhold(t *testing.T) {
	r := newRun(t, nil).apply(pbxEndpoints()...).apply(answered()...)
	bBr := with(bUp, func(c *pb.Channel) { c.BridgeId = "br1" })
	cases := []struct {
		name           string
		step           at
		wantState      string
		wantHeld       []string
		want1001, want string // endpoint statuses of 1001 and 1002
	}{
		{"bridged", at{secs(6), &pb.ChannelStateChanged{Channel: bBr}}, "bridged", nil, "in_call", "in_call"},
		// The channel named is the phone that asked for the hold.
		{"hold", at{secs(10), &pb.ChannelHold{Channel: bBr, Held: true, MusicClass: "default"}}, "on_hold", []string{"1.1"}, "in_call", "on_hold"},
		{"hold again changes nothing", at{secs(11), &pb.ChannelHold{Channel: bBr, Held: true}}, "on_hold", []string{"1.1"}, "in_call", "on_hold"},
		{"a state change keeps the hold", at{secs(12), &pb.CallerIdChanged{Channel: bBr}}, "on_hold", []string{"1.1"}, "in_call", "on_hold"},
		{"unhold", at{secs(20), &pb.ChannelHold{Channel: bBr, Held: false}}, "bridged", nil, "in_call", "in_call"},
		{"unhold again changes nothing", at{secs(21), &pb.ChannelHold{Channel: bBr, Held: false}}, "bridged", nil, "in_call", "in_call"},
		{"hold by the caller", at{secs(30), &pb.ChannelHold{Channel: aUp, Held: true}}, "on_hold", []string{"1.0"}, "on_hold", "in_call"},
		{"both on hold", at{secs(31), &pb.ChannelHold{Channel: bBr, Held: true}}, "on_hold", []string{"1.0", "1.1"}, "on_hold", "on_hold"},
		// A held channel that hangs up is no longer held.
		{"held channel hangs up", at{secs(40), &pb.ChannelHungUp{Channel: bBr, Cause: 16}}, "on_hold", []string{"1.0"}, "on_hold", "online"},
		{"hold of an unknown channel is ignored", at{secs(41), &pb.ChannelHold{Channel: chn("PJSIP/1003-00000099", "9.9", "9.9", 6, "1003", "", ""), Held: true}},
			"on_hold", []string{"1.0"}, "on_hold", "online"},
	}
	for _, tc := range cases {
		// The steps build on each other: one run, checked after each.
		r.apply(tc.step)
		c := r.mustCall("1.0")
		if c.State != tc.wantState || fmt.Sprint(c.Held) != fmt.Sprint(tc.wantHeld) {
			t.Errorf("%s: call state %q held %v, want %q %v", tc.name, c.State, c.Held, tc.wantState, tc.wantHeld)
		}
		if s1, s2 := r.endpoint("1001").Status, r.endpoint("1002").Status; s1 != tc.want1001 || s2 != tc.want {
			t.Errorf("%s: endpoints 1001 %q 1002 %q, want %q %q", tc.name, s1, s2, tc.want1001, tc.want)
		}
	}
	r.apply(at{secs(50), &pb.ChannelHungUp{Channel: aUp, Cause: 16}})
	if h := r.record("1.0"); h.Disposition != "answered" || h.TalkSeconds != 45 {
		t.Errorf("history after a call on hold: %v", h)
	}
	if s := r.endpoint("1001").Status; s != "online" {
		t.Errorf("1001 after the call: %q", s)
	}
}

func TestTransfers(t *testing.T) {
	aBr := with(aUp, func(c *pb.Channel) { c.BridgeId = "br1" })
	bBr := with(bUp, func(c *pb.Channel) { c.BridgeId = "br1" })
	t.Run("blind", func(t *testing.T) {
		// 1002 answers 1001 and sends it on to 1003 (docs/asterisk-fields.md,
		// BlindTransfer): the transferee keeps its Linkedid and dials 1003.
		cRing := chn("PJSIP/1003-00000002", "1.2", "1.0", 5, "1003", "Ext 1003", "")
		r := newRun(t, nil).apply(pbxEndpoints()...).apply(answered()...)
		r.apply(at{secs(20), &pb.Transfer{Kind: pb.Transfer_KIND_BLIND, Result: "Success", Transferer: bBr, Transferee: aBr,
			Context: "internal", Extension: "1003", BridgeId: "br1"}})
		c := r.mustCall("1.0")
		want := &pb.TransferRecord{Kind: "blind", By: "1002", To: "1003", Result: "Success", At: ts(secs(20))}
		if len(c.Transfers) != 1 || !proto.Equal(c.Transfers[0], want) {
			t.Fatalf("transfers %v, want %v", c.Transfers, want)
		}
		if c.State != "bridged" {
			t.Errorf("state %q while both are still bridged", c.State)
		}
		r.apply(hungUpBy(secs(20), bBr, 16)...)
		r.apply(at{secs(20), &pb.BridgeLeave{BridgeId: "br1", Channel: aBr}},
			at{secs(21), &pb.DialBegin{Caller: aUp, Callee: cRing}})
		c = r.mustCall("1.0")
		if c.State != "transferred" || c.CallerNum != "1001" || c.CalleeNum != "1003" {
			t.Errorf("after the transfer: state %q caller %q callee %q, want transferred 1001 1003", c.State, c.CallerNum, c.CalleeNum)
		}
		r.apply(at{secs(25), &pb.ChannelStateChanged{Channel: inState(cRing, 6)}},
			at{secs(25), &pb.BridgeEnter{BridgeId: "br2", Channel: inState(cRing, 6)}},
			at{secs(25), &pb.BridgeEnter{BridgeId: "br2", Channel: aUp}})
		if c = r.mustCall("1.0"); c.State != "bridged" || c.BridgeId != "br2" {
			t.Errorf("bridged with the target: state %q bridge %q", c.State, c.BridgeId)
		}
		r.apply(hangup(secs(85), with(inState(cRing, 6), func(c *pb.Channel) { c.BridgeId = "br2" }), 16)...)
		r.apply(hungUpBy(secs(85), with(aUp, func(c *pb.Channel) { c.BridgeId = "br2" }), 16)...)
		h := r.record("1.0")
		if len(h.Transfers) != 1 || !proto.Equal(h.Transfers[0], want) {
			t.Errorf("history transfers %v, want %v", h.Transfers, want)
		}
		if h.HangupBy != "1003" || h.Disposition != "answered" || fmt.Sprint(h.Parties) != "[1001 1002 1003]" {
			t.Errorf("history: hangup by %q disposition %q parties %v", h.HangupBy, h.Disposition, h.Parties)
		}
		if fmt.Sprint(h.Channels) != "[PJSIP/1001-00000000 PJSIP/1002-00000001 PJSIP/1003-00000002]" {
			t.Errorf("history channels %v", h.Channels)
		}
		if h.TalkSeconds != 80 || h.RingSeconds != 4 {
			t.Errorf("ring %v talk %v, want 4 and 80", h.RingSeconds, h.TalkSeconds)
		}
	})
	t.Run("attended", func(t *testing.T) {
		// 1003 talks to 1001 (call 1.0), consults 1004 (call 1.3), and
		// joins them (the AttendedTransfer capture in docs/asterisk-fields.md).
		orig := chn("PJSIP/1001-00000000", "1.0", "1.0", 6, "1001", "Ext 1001", "1003")
		oT := chn("PJSIP/1003-00000002", "1.2", "1.0", 6, "1003", "Ext 1003", "")
		sT := chn("PJSIP/1003-00000003", "1.3", "1.3", 6, "1003", "Ext 1003", "1004")
		tgt := chn("PJSIP/1004-00000004", "1.4", "1.3", 6, "1004", "Ext 1004", "")
		br := func(c *pb.Channel, id string) *pb.Channel { return with(c, func(c *pb.Channel) { c.BridgeId = id }) }
		r := newRun(t, nil).apply(pbxEndpoints()...)
		r.apply(at{secs(1), &pb.ChannelCreated{Channel: inState(orig, 4)}},
			at{secs(2), &pb.DialBegin{Caller: inState(orig, 4), Callee: inState(oT, 5)}},
			at{secs(4), &pb.ChannelStateChanged{Channel: oT}}, at{secs(4), &pb.ChannelStateChanged{Channel: orig}},
			at{secs(4), &pb.BridgeEnter{BridgeId: "brA", Channel: oT}}, at{secs(4), &pb.BridgeEnter{BridgeId: "brA", Channel: orig}},
			at{secs(10), &pb.ChannelHold{Channel: br(oT, "brA"), Held: true}},
			at{secs(11), &pb.ChannelCreated{Channel: inState(sT, 4)}},
			at{secs(12), &pb.DialBegin{Caller: inState(sT, 4), Callee: inState(tgt, 5)}},
			at{secs(15), &pb.ChannelStateChanged{Channel: tgt}}, at{secs(15), &pb.ChannelStateChanged{Channel: sT}},
			at{secs(15), &pb.BridgeEnter{BridgeId: "brB", Channel: tgt}}, at{secs(15), &pb.BridgeEnter{BridgeId: "brB", Channel: sT}})
		if s := r.endpoint("1003"); fmt.Sprint(s.Calls) != "[1.0 1.3]" || s.ActiveChannels != 2 || s.Status != "in_call" {
			t.Errorf("1003 consulting: calls %v channels %d status %q", s.Calls, s.ActiveChannels, s.Status)
		}
		r.apply(at{secs(30), &pb.Transfer{Kind: pb.Transfer_KIND_ATTENDED, Result: "Success",
			Transferer: br(oT, "brA"), SecondTransferer: br(sT, "brB"), Transferee: br(orig, "brA"), Target: br(tgt, "brB"),
			DestType: "Bridge", DestBridgeId: "brB"}})
		want := &pb.TransferRecord{Kind: "attended", By: "1003", To: "1004", Result: "Success", At: ts(secs(30))}
		if c := r.mustCall("1.0"); len(c.Transfers) != 1 || !proto.Equal(c.Transfers[0], want) {
			t.Fatalf("transfers on 1.0: %v, want %v", c.Transfers, want)
		}
		if c := r.mustCall("1.3"); len(c.Transfers) != 0 {
			t.Errorf("the consultation call records the transfer too: %v", c.Transfers)
		}
		// The transferer's two channels go; the transferee joins the target's bridge.
		r.apply(cat(hungUpBy(secs(30), br(oT, "brA"), 16), hungUpBy(secs(30), br(sT, "brB"), 16),
			[]at{{secs(30), &pb.BridgeLeave{BridgeId: "brA", Channel: br(orig, "brA")}},
				{secs(30), &pb.BridgeEnter{BridgeId: "brB", Channel: orig}}})...)
		c := r.mustCall("1.0")
		if c.State != "transferred" || len(c.Held) != 0 || c.CallerNum != "1001" || c.CalleeNum != "1003" || c.BridgeId != "brB" {
			t.Errorf("after the transfer: state %q held %v caller %q callee %q bridge %q", c.State, c.Held, c.CallerNum, c.CalleeNum, c.BridgeId)
		}
		if s := r.endpoint("1003"); len(s.Calls) != 0 || s.ActiveChannels != 0 || s.Status != "online" {
			t.Errorf("1003 after transferring: calls %v channels %d status %q", s.Calls, s.ActiveChannels, s.Status)
		}
		r.apply(hangup(secs(90), br(orig, "brB"), 16)...)
		r.apply(hungUpBy(secs(90), br(tgt, "brB"), 16)...)
		h := r.record("1.0")
		if len(h.Transfers) != 1 || !proto.Equal(h.Transfers[0], want) || h.HangupBy != "1001" || fmt.Sprint(h.Parties) != "[1001 1003]" {
			t.Errorf("history of 1.0: transfers %v hangup by %q parties %v", h.Transfers, h.HangupBy, h.Parties)
		}
		if h := r.record("1.3"); len(h.Transfers) != 0 || fmt.Sprint(h.Parties) != "[1003 1004]" || h.HangupBy != "" {
			t.Errorf("history of 1.3: transfers %v parties %v hangup by %q", h.Transfers, h.Parties, h.HangupBy)
		}
	})
	t.Run("attended without a target names the second leg's number", func(t *testing.T) {
		r := newRun(t, nil).apply(pbxEndpoints()...).apply(answered()...)
		r.apply(at{secs(30), &pb.Transfer{Kind: pb.Transfer_KIND_ATTENDED, Result: "Fail", Transferer: bBr,
			SecondTransferer: with(chn("PJSIP/1002-00000005", "1.5", "1.5", 6, "1002", "", ""), func(c *pb.Channel) { c.ConnectedNum = "1004" })}})
		want := &pb.TransferRecord{Kind: "attended", By: "1002", To: "1004", Result: "Fail", At: ts(secs(30))}
		if c := r.mustCall("1.0"); len(c.Transfers) != 1 || !proto.Equal(c.Transfers[0], want) {
			t.Errorf("transfers %v, want %v", c.Transfers, want)
		}
	})
	t.Run("transfer of unknown channels is ignored", func(t *testing.T) {
		r := newRun(t, nil).apply(pbxEndpoints()...).apply(answered()...)
		r.apply(at{secs(30), &pb.Transfer{Kind: pb.Transfer_KIND_BLIND, Extension: "1003",
			Transferer: chn("PJSIP/1004-00000009", "8.1", "8.0", 6, "1004", "", "")}})
		if c := r.mustCall("1.0"); len(c.Transfers) != 0 {
			t.Errorf("transfers %v", c.Transfers)
		}
	})
}

func TestDispositionFromDialEnd(t *testing.T) {
	cases := []struct {
		status    []string // DialStatus of each DialEnd
		calleeCau int32    // the callee's hangup cause (0: it never hangs up before the caller)
		callerCau int32
		answer    bool
		want      string
		wantCause int32
	}{
		{[]string{"ANSWER"}, 0, 16, true, "answered", 16},
		{[]string{"BUSY"}, 17, 16, false, "busy", 17},
		{[]string{"NOANSWER"}, 19, 16, false, "no_answer", 19},
		{[]string{"CANCEL"}, 0, 0, false, "cancelled", 0},
		{[]string{"CHANUNAVAIL"}, 20, 20, false, "failed", 20},
		{[]string{"CONGESTION"}, 34, 34, false, "failed", 34},
		// A ring group: the best answer any of its legs gave.
		{[]string{"CHANUNAVAIL", "NOANSWER"}, 20, 16, false, "no_answer", 20},
		{[]string{"NOANSWER", "BUSY"}, 19, 16, false, "busy", 19},
		// The dial status beats the cause: a busy callee whose caller
		// clears normally is still busy.
		{[]string{"BUSY"}, 0, 16, false, "busy", 16},
		// Answer beats any failed leg of a ring group.
		{[]string{"NOANSWER", "ANSWER"}, 19, 16, true, "answered", 19},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			r := newRun(t, nil).apply(pbxEndpoints()...)
			r.apply(at{secs(1), &pb.ChannelCreated{Channel: aRing}}, at{secs(2), &pb.DialBegin{Caller: aRing, Callee: bRing}})
			end := secs(20)
			a, b := aRing, bRing
			if tc.answer {
				a, b = aUp, bUp
				r.apply(at{secs(5), &pb.ChannelStateChanged{Channel: bUp}}, at{secs(5), &pb.ChannelStateChanged{Channel: aUp}})
			}
			if tc.calleeCau != 0 {
				// The callee goes before DialEnd, as with BUSY: DialEnd must
				// still count.
				r.apply(at{end, &pb.ChannelHungUp{Channel: b, Cause: tc.calleeCau}})
			}
			for _, s := range tc.status {
				r.apply(at{end, &pb.DialEnd{Caller: a, Callee: b, DialStatus: s}})
			}
			if tc.calleeCau == 0 {
				r.apply(at{end, &pb.ChannelHungUp{Channel: b}})
			}
			r.apply(at{end + secs(1), &pb.ChannelHungUp{Channel: a, Cause: tc.callerCau}})
			h := r.record("1.0")
			if h.Disposition != tc.want || h.HangupCause != tc.wantCause {
				t.Errorf("disposition %q cause %d, want %q %d", h.Disposition, h.HangupCause, tc.want, tc.wantCause)
			}
			wantRing, wantTalk := 20.0, 0.0
			if tc.answer {
				wantRing, wantTalk = 4, 16
			}
			if h.RingSeconds != wantRing || h.TalkSeconds != wantTalk || (h.AnsweredAt != nil) != tc.answer {
				t.Errorf("ring %v talk %v answered %s, want %v %v", h.RingSeconds, h.TalkSeconds, showTime(h.AnsweredAt), wantRing, wantTalk)
			}
			if !sameTime(h.StartedAt, ts(secs(1))) || !sameTime(h.EndedAt, ts(end+secs(1))) {
				t.Errorf("started %s ended %s", showTime(h.StartedAt), showTime(h.EndedAt))
			}
		})
	}
}

func TestDispositionFromHangupCause(t *testing.T) {
	cases := []struct {
		name  string
		cause int32
		up    bool
		want  string
	}{
		{"user busy", 17, false, "busy"},
		{"no user responding", 18, false, "no_answer"},
		{"no answer", 19, false, "no_answer"},
		{"normal clearing before answer", 16, false, "cancelled"},
		{"no cause", 0, false, "cancelled"},
		{"unallocated number", 1, false, "failed"},
		{"rejected", 21, false, "failed"},
		{"congestion", 34, false, "failed"},
		{"answered by an application", 16, true, "answered"},
		{"answered, then a failure cause", 34, true, "answered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, nil).apply(pbxEndpoints()...)
			c := chn("PJSIP/1001-0000000f", "4.0", "4.0", 4, "1001", "Ext 1001", "600")
			r.apply(at{secs(1), &pb.ChannelCreated{Channel: c}})
			if tc.up {
				c = inState(c, 6)
				r.apply(at{secs(3), &pb.ChannelStateChanged{Channel: c}})
			}
			r.apply(at{secs(9), &pb.ChannelHungUp{Channel: c, Cause: tc.cause, CauseText: causeText[tc.cause]}})
			h := r.record("4.0")
			wantText := causeText[tc.cause]
			if tc.cause == 0 {
				wantText = "" // a channel without a cause says nothing about the call
			}
			if h.Disposition != tc.want || h.HangupCause != tc.cause || h.HangupCauseText != wantText {
				t.Errorf("disposition %q cause %d %q, want %q %d", h.Disposition, h.HangupCause, h.HangupCauseText, tc.want, tc.cause)
			}
		})
	}
}

func TestHangupBy(t *testing.T) {
	local := chn("Local/1002@internal-00000000;1", "1.7", "1.0", 6, "", "", "1002")
	cases := []struct {
		name  string
		steps []at
		want  string
	}{
		{"callee hangs up", cat(hangup(secs(30), bUp, 16), hungUpBy(secs(30), aUp, 16)), "1002"},
		{"caller hangs up", cat(hangup(secs(30), aUp, 16), hungUpBy(secs(30), bUp, 16)), "1001"},
		// The bridge's soft request on the caller comes first in the
		// stream; the callee's own request is who hung up.
		{"soft request first", []at{
			{secs(30), &pb.ChannelHangupRequest{Channel: aUp, Cause: 16, Soft: true}},
			{secs(30), &pb.ChannelHangupRequest{Channel: bUp, Cause: 16}},
			{secs(31), &pb.ChannelHangupRequest{Channel: aUp, Cause: 16}},
			{secs(31), &pb.ChannelHungUp{Channel: aUp, Cause: 16}},
			{secs(31), &pb.ChannelHungUp{Channel: bUp, Cause: 16}},
		}, "1002"},
		{"only soft requests", cat(hungUpBy(secs(30), aUp, 16), hungUpBy(secs(30), bUp, 16)), ""},
		{"a local channel", []at{
			{secs(20), &pb.ChannelCreated{Channel: local}},
			{secs(30), &pb.ChannelHangupRequest{Channel: local}},
			{secs(30), &pb.ChannelHungUp{Channel: local}},
			{secs(30), &pb.ChannelHungUp{Channel: aUp, Cause: 16}},
			{secs(30), &pb.ChannelHungUp{Channel: bUp, Cause: 16}},
		}, "Local/1002@internal-00000000;1"},
		{"a request for an unknown channel", []at{
			{secs(30), &pb.ChannelHangupRequest{Channel: chn("PJSIP/1004-00000009", "8.1", "8.0", 6, "1004", "", "")}},
			{secs(30), &pb.ChannelHungUp{Channel: aUp, Cause: 16}},
			{secs(30), &pb.ChannelHungUp{Channel: bUp, Cause: 16}},
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, nil).apply(pbxEndpoints()...).apply(answered()...)
			// Once set, the live call's hangup_by never changes.
			for i, s := range tc.steps {
				r.apply(s)
				if c := r.call("1.0"); c != nil && c.HangupBy != "" && c.HangupBy != tc.want {
					t.Errorf("after step %d: live call hung up by %q, want %q", i, c.HangupBy, tc.want)
				}
			}
			if h := r.record("1.0"); h.HangupBy != tc.want {
				t.Errorf("history: hangup by %q, want %q", h.HangupBy, tc.want)
			}
		})
	}
}

// The call's caller is its first channel; when that channel hangs up first
// the parties must not swap (the callee's channel is all that is left).
func TestCallerHangsUpFirst(t *testing.T) {
	cases := []struct {
		name  string
		steps []at
	}{
		{"answered", answered()},
		{"ringing", []at{{secs(1), &pb.ChannelCreated{Channel: aRing}}, {secs(2), &pb.DialBegin{Caller: aRing, Callee: bRing}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, nil).apply(pbxEndpoints()...).apply(tc.steps...)
			a := r.mustCall("1.0").Channels[0]
			r.apply(at{secs(30), &pb.ChannelHangupRequest{Channel: a, Cause: 16}}, at{secs(30), &pb.ChannelHungUp{Channel: a, Cause: 16}})
			c := r.mustCall("1.0")
			if c.CallerNum != "1001" || c.CallerName != "Ext 1001" || c.CalleeNum != "1002" || c.CalleeName != "Ext 1002" {
				t.Errorf("after the caller left: caller %q %q callee %q %q", c.CallerNum, c.CallerName, c.CalleeNum, c.CalleeName)
			}
			if len(c.Channels) != 1 || c.Channels[0].Uniqueid != "1.1" {
				t.Errorf("channels left: %v", c.Channels)
			}
			// Even a later change of the callee's own caller ID does not
			// make it the caller.
			r.apply(at{secs(31), &pb.CallerIdChanged{Channel: with(r.mustCall("1.0").Channels[0], func(c *pb.Channel) { c.ConnectedNum = "1001" })}})
			if c := r.mustCall("1.0"); c.CallerNum != "1001" || c.CalleeNum != "1002" {
				t.Errorf("after a caller ID change: caller %q callee %q", c.CallerNum, c.CalleeNum)
			}
			r.apply(at{secs(31), &pb.ChannelHungUp{Channel: r.mustCall("1.0").Channels[0], Cause: 16}})
			h := r.record("1.0")
			if h.CallerNum != "1001" || h.CalleeNum != "1002" || h.HangupBy != "1001" || fmt.Sprint(h.Parties) != "[1001 1002]" {
				t.Errorf("history: caller %q callee %q hangup by %q parties %v", h.CallerNum, h.CalleeNum, h.HangupBy, h.Parties)
			}
		})
	}
}

func TestChannelsSnapshot(t *testing.T) {
	lone := chn("PJSIP/1003-00000007", "7.0", "7.0", 6, "1003", "Ext 1003", "*43")
	// A call that started while nobody was watching, listed callee first:
	// its start is its oldest channel's.
	nCallee := with(chn("PJSIP/1004-0000000a", "9.1", "9.0", 6, "1004", "Ext 1004", ""), func(c *pb.Channel) { c.DurationSeconds, c.BridgeId = 40, "br9" })
	nCaller := with(chn("PJSIP/1002-00000009", "9.0", "9.0", 6, "1002", "Ext 1002", "1004"), func(c *pb.Channel) { c.DurationSeconds, c.BridgeId = 50, "br9" })
	r := newRun(t, nil).apply(pbxEndpoints()...).apply(answered()...)
	r.apply(at{secs(10), &pb.ChannelCreated{Channel: lone}})
	r.applyOn("pbx2", at{secs(10), &pb.ChannelCreated{Channel: lone}})
	r.apply(at{secs(100), &pb.ChannelsSnapshot{Channels: []*pb.Channel{with(lone, func(c *pb.Channel) { c.DurationSeconds = 90 }), nCallee, nCaller}}})

	if r.call("1.0") != nil {
		t.Fatal("call 1.0 is not listed but still live")
	}
	var removed []string
	for _, c := range r.changes {
		if k := c.GetCallRemoved(); k != nil {
			removed = append(removed, k.PbxId+"/"+k.Linkedid)
		}
	}
	if fmt.Sprint(removed) != "[pbx1/1.0]" {
		t.Errorf("removed calls %v, want [pbx1/1.0]", removed)
	}
	h := r.record("1.0")
	if !sameTime(h.EndedAt, ts(secs(100))) || h.TalkSeconds != 95 || h.Disposition != "answered" || h.HangupCause != 0 {
		t.Errorf("history of a call the listing ended: ended %s talk %v disposition %q cause %d", showTime(h.EndedAt), h.TalkSeconds, h.Disposition, h.HangupCause)
	}
	if fmt.Sprint(h.Channels) != "[PJSIP/1001-00000000 PJSIP/1002-00000001]" {
		t.Errorf("history channels %v", h.Channels)
	}
	if c := r.mustCall("7.0"); !sameTime(c.StartedAt, ts(secs(10))) || len(c.Channels) != 1 {
		t.Errorf("a listed call keeps its start: %s, %d channels", showTime(c.StartedAt), len(c.Channels))
	}
	n := r.mustCall("9.0")
	if !sameTime(n.StartedAt, ts(secs(50))) {
		t.Errorf("a listed new call starts at %s, want 50s (its oldest channel)", showTime(n.StartedAt))
	}
	if n.CallerNum != "1002" || n.CalleeNum != "1004" || n.State != "bridged" || n.BridgeId != "br9" || n.AnsweredAt == nil || n.Direction != "internal" {
		t.Errorf("listed new call: caller %q callee %q state %q bridge %q answered %s direction %q",
			n.CallerNum, n.CalleeNum, n.State, n.BridgeId, showTime(n.AnsweredAt), n.Direction)
	}
	for _, ch := range n.Channels {
		if ch.DurationSeconds != 0 {
			t.Errorf("channel %s keeps the listing's duration %d: it would change every resync", ch.Name, ch.DurationSeconds)
		}
	}
	if e := r.endpoint("1001"); e.Status != "online" || len(e.Calls) != 0 || e.ActiveChannels != 0 {
		t.Errorf("1001 after the listing: %q %v %d", e.Status, e.Calls, e.ActiveChannels)
	}
	if e := r.endpoint("1002"); e.Status != "in_call" || fmt.Sprint(e.Calls) != "[9.0]" || e.ActiveChannels != 1 {
		t.Errorf("1002 after the listing: %q %v %d", e.Status, e.Calls, e.ActiveChannels)
	}
	// The listing was pbx1's: pbx2's call is untouched.
	var other int
	for _, c := range r.v.Snapshot(0).Calls {
		if c.PbxId == "pbx2" {
			other++
		}
	}
	if other != 1 {
		t.Errorf("pbx2 has %d calls after pbx1's listing, want 1", other)
	}
	// An empty listing ends the rest, in Uniqueid order, at its time.
	r.history = nil
	r.apply(at{secs(200), &pb.ChannelsSnapshot{}})
	var ended []string
	for _, h := range r.history {
		ended = append(ended, h.Linkedid)
		if !sameTime(h.EndedAt, ts(secs(200))) {
			t.Errorf("%s ended at %s", h.Linkedid, showTime(h.EndedAt))
		}
	}
	if fmt.Sprint(ended) != "[7.0 9.0]" {
		t.Errorf("ended by the empty listing: %v", ended)
	}
}

// The order in which CoreShowChannels lists a call's channels is the
// PBX's, not the call's: the call's start must not depend on it.
func TestChannelsSnapshotStartDoesNotDependOnOrder(t *testing.T) {
	x := with(chn("PJSIP/1004-0000000a", "9.1", "9.0", 6, "1004", "Ext 1004", ""), func(c *pb.Channel) { c.DurationSeconds = 40 })
	y := with(chn("PJSIP/1002-00000009", "9.0", "9.0", 6, "1002", "Ext 1002", "1004"), func(c *pb.Channel) { c.DurationSeconds = 50 })
	for _, order := range [][]*pb.Channel{{x, y}, {y, x}} {
		r := newRun(t, nil).apply(pbxEndpoints()...)
		r.apply(at{secs(100), &pb.ChannelsSnapshot{Channels: order}})
		if c := r.mustCall("9.0"); !sameTime(c.StartedAt, ts(secs(50))) {
			t.Errorf("listed %s first: started at %s, want 50s", order[0].Name, showTime(c.StartedAt))
		}
	}
}

// Click-to-call: the originate answers the caller's phone first, then rings
// the callee. The call shows ringing until the callee answers; like
// Asterisk's CDR, it counts as answered from the phone's answer.
func TestOriginatedCallRingsUntilTheCalleeAnswers(t *testing.T) {
	phone := func(state int32) *pb.Channel {
		return chn("PJSIP/1001-00000001", "1.1", "1.1", state, "1001", "Alice", "1002")
	}
	callee := func(state int32) *pb.Channel {
		return chn("PJSIP/1002-00000002", "1.2", "1.1", state, "1002", "Bob", "1002")
	}
	r := newRun(t, nil).apply(
		at{0, &pb.ChannelCreated{Channel: phone(0)}},
		at{secs(1), &pb.ChannelStateChanged{Channel: phone(stateUp)}},
		at{secs(2), &pb.ChannelCreated{Channel: callee(0)}},
		at{secs(2), &pb.ChannelStateChanged{Channel: callee(stateRinging)}},
	)
	if c := r.call("1.1"); c.State != "ringing" || !c.AnsweredAt.AsTime().Equal(t0.Add(secs(1))) {
		t.Fatalf("phone up, callee ringing: state %q answered %v, want ringing, answered at t0+1s", c.State, c.AnsweredAt)
	}
	r.apply(at{secs(5), &pb.ChannelStateChanged{Channel: callee(stateUp)}})
	if c := r.call("1.1"); c.State != "up" {
		t.Fatalf("callee answered: state %q, want up", c.State)
	}
}
