package projection

// This file tests what the projector's exactly-once restart rests on: the
// dedupe window (Seen) decides the same after Take and Load, and views
// rebuilt from a stored snapshot continue exactly as views that never
// stopped.

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func TestSeenDuplicate(t *testing.T) {
	type check struct {
		seq  uint64
		id   string
		want bool
	}
	cases := []struct {
		name   string
		window uint64
		checks []check
	}{
		{"first time is new", 10, []check{{1, "a", false}, {2, "b", false}}},
		{"again within the window", 10, []check{{1, "a", false}, {2, "a", true}, {10, "a", true}}},
		// The window counts stream sequences: seq 11 is ten after 1.
		{"again just out of the window", 10, []check{{1, "a", false}, {10, "a", true}, {11, "a", false}, {12, "a", true}}},
		// A duplicate does not renew the id: the window runs from when it was applied.
		{"a duplicate does not extend the window", 10, []check{{1, "a", false}, {9, "a", true}, {11, "a", false}}},
		{"gaps in the sequence", 10, []check{{5, "a", false}, {100, "b", false}, {101, "a", false}, {105, "a", true}}},
		{"ids without an id are never duplicates", 10, []check{{1, "", false}, {2, "", false}}},
		{"window 0 turns it off", 0, []check{{1, "a", false}, {2, "a", false}}},
		{"window 1", 1, []check{{1, "a", false}, {2, "a", false}, {2, "b", false}, {3, "b", false}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSeen(tc.window)
			for _, c := range tc.checks {
				if got := s.Duplicate(c.seq, c.id); got != c.want {
					t.Errorf("Duplicate(%d, %q) = %v, want %v", c.seq, c.id, got, c.want)
				}
			}
		})
	}
}

// Memory stays bounded by the window however long the stream.
func TestSeenEviction(t *testing.T) {
	const window = 100
	s := NewSeen(window)
	for seq := uint64(1); seq <= 100000; seq++ {
		s.Duplicate(seq, fmt.Sprint("id-", seq))
		if seq%1000 == 0 {
			s.Take()
		}
		if len(s.ids) > window || len(s.order)-s.head > window || len(s.order) > 2*window+1 {
			t.Fatalf("at %d: %d ids, %d entries (head %d) for a window of %d", seq, len(s.ids), len(s.order), s.head, window)
		}
	}
	// The newest are still known; the evicted are new again.
	if !s.Duplicate(100001, "id-99999") {
		t.Error("an id 2 sequences old is forgotten")
	}
	if s.Duplicate(100002, "id-99000") {
		t.Error("an id 1000 sequences old is remembered")
	}
}

func TestSeenTake(t *testing.T) {
	s := NewSeen(10)
	if b := s.Take(); len(b) != 0 {
		t.Fatalf("take of nothing: %x", b)
	}
	s.Duplicate(1, "a")
	s.Duplicate(2, "a") // a duplicate is not recorded again
	s.Duplicate(3, "")  // nor an event without an id
	s.Duplicate(4, "b")
	if b := s.Take(); len(b) != 32 {
		t.Fatalf("take: %d bytes, want two entries of 16", len(b))
	}
	if b := s.Take(); len(b) != 0 {
		t.Fatalf("second take: %x", b)
	}
}

// A projector that stops after any commit, loads what the commits stored
// (as store.ReadSeen returns it: the commits whose last sequence is within
// the window) and goes on, decides every later event as one that never
// stopped, and stores the same records.
func TestSeenTakeLoadRoundTrip(t *testing.T) {
	for _, window := range []uint64{1, 7, 50} {
		t.Run(fmt.Sprint("window ", window), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(4, window))
			type msg struct {
				seq uint64
				id  string
			}
			var stream []msg
			seq := uint64(0)
			for range 2000 {
				seq += 1 + uint64(rng.IntN(3)) // other tenants' messages leave gaps
				id := fmt.Sprint("ev-", rng.IntN(120))
				if rng.IntN(10) == 0 {
					id = ""
				}
				stream = append(stream, msg{seq, id})
			}
			// Commits of 1 to 20 messages.
			var ends []int
			for i := 0; i < len(stream); {
				i = min(len(stream), i+1+rng.IntN(20))
				ends = append(ends, i)
			}
			type record struct {
				lastSeq uint64
				ids     []byte
			}
			live := NewSeen(window)
			var want []bool
			var stored []record
			start := 0
			for _, end := range ends {
				for _, m := range stream[start:end] {
					want = append(want, live.Duplicate(m.seq, m.id))
				}
				if b := live.Take(); len(b) > 0 {
					stored = append(stored, record{stream[end-1].seq, b})
				}
				start = end
			}
			// With a window of 1 nothing can be a duplicate: sequences grow.
			if window > 1 && !slices.Contains(want, true) || !slices.Contains(want, false) {
				t.Fatal("the stream has no duplicates or no new ids: the test proves nothing")
			}
			for c, end := range ends {
				pos := stream[end-1].seq
				s := NewSeen(window)
				for _, r := range stored {
					if r.lastSeq <= pos && r.lastSeq > pos-min(pos, window) {
						s.Load(r.ids, pos)
					}
				}
				var next []record
				start := end
				for _, e := range ends[c+1:] {
					for i, m := range stream[start:e] {
						if got := s.Duplicate(m.seq, m.id); got != want[start+i] {
							t.Fatalf("restarted after seq %d: Duplicate(%d, %q) = %v, the live run said %v", pos, m.seq, m.id, got, want[start+i])
						}
					}
					if b := s.Take(); len(b) > 0 {
						next = append(next, record{stream[e-1].seq, b})
					}
					start = e
				}
				var after []record
				for _, r := range stored {
					if r.lastSeq > pos {
						after = append(after, r)
					}
				}
				if !slices.EqualFunc(next, after, func(a, b record) bool { return a.lastSeq == b.lastSeq && bytes.Equal(a.ids, b.ids) }) {
					t.Fatalf("restarted after seq %d: stored records differ from the live run's", pos)
				}
			}
		})
	}
}

// restartScenario is a stream that goes through everything the views do:
// trunks with registration flaps and round trips, internal, inbound and
// outbound calls, hold, blind and attended transfers, every disposition, a
// caller hanging up first, queues with answers and abandons across a
// midnight in New York, a resync (ChannelsSnapshot and QueuesSnapshot), and
// two PBXs. Calls are live through most of it, some on hold, transferred
// or half hung up.
func restartScenario() []*pb.Event {
	var evs []*pb.Event
	on := func(pbx string, steps ...at) {
		for _, s := range steps {
			evs = append(evs, event(pbx, s.after, s.p))
		}
	}
	p1 := func(steps ...at) { on("pbx1", steps...) }
	br := func(c *pb.Channel, id string) *pb.Channel { return with(c, func(c *pb.Channel) { c.BridgeId = id }) }
	up := func(c *pb.Channel) *pb.Channel { return inState(c, 6) }
	contact := func(after time.Duration, status string, rtt int64) at {
		return at{after, &pb.ContactStatus{Endpoint: "carrier", Uri: "sip:sbc.carrier.example:5060", Status: status, RoundtripUsec: rtt, RoundtripKnown: rtt > 0}}
	}
	// A PJSIP endpoint whose reachability changes also gets a PeerStatus,
	// right after the ContactStatus (docs/asterisk-fields.md, PeerStatus).
	pjsipPeer := func(after time.Duration, status string) at {
		return at{after, &pb.PeerStatus{Name: "carrier", Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: status}}
	}
	reg := func(after time.Duration, status, cause string) at {
		return at{after, &pb.TrunkRegistration{Name: "carrier", ClientUri: "sip:me@sbc.carrier.example", ServerUri: "sip:sbc.carrier.example", Status: status, Cause: cause}}
	}
	queueCall := func(after time.Duration, a pb.QueueCaller_Action, c *pb.Channel, hold uint32) at {
		return at{after, &pb.QueueCaller{Action: a, Queue: "support", Channel: c, HoldTime: hold}}
	}
	agent := func(after time.Duration, a pb.QueueAgent_Action, iface string, c *pb.Channel, hold uint32) at {
		return at{after, &pb.QueueAgent{Action: a, Queue: "support", Interface: iface, Caller: c, HoldTime: hold}}
	}
	oldsip := &pb.EndpointState{Name: "oldsip", Technology: pb.Technology_TECHNOLOGY_SIP, Kind: pb.EndpointKind_ENDPOINT_KIND_TRUNK, Status: "OK (5 ms)"}

	// Connect, list, qualify.
	on("pbx1", at{0, &pb.PbxConnection{State: pb.PbxConnection_STATE_CONNECTED, Banner: "Asterisk Call Manager/9.0.0"}})
	on("pbx2", at{0, &pb.PbxConnection{State: pb.PbxConnection_STATE_CONNECTED, Banner: "Asterisk Call Manager/11.0.0"}})
	p1(pbxEndpoints()...)
	p1(at{0, oldsip})
	on("pbx2", pbxEndpoints()...)
	p1(at{0, &pb.QueueSummary{Queue: "support", Strategy: "ringall", ServiceLevel: 20}},
		at{0, &pb.QueueMember{Queue: "support", Name: "Alice", Interface: "PJSIP/1001", Status: 1, Membership: "dynamic"}},
		at{0, &pb.QueueMember{Queue: "support", Name: "Bob", Interface: "PJSIP/1002", Status: 1, Paused: true, PausedReason: "lunch"}},
		reg(0, "Registered", ""),
		contact(secs(1), "Reachable", 20000),
		pjsipPeer(secs(1), "Reachable"),
		at{secs(2), &pb.PeerStatus{Name: "oldsip", Technology: pb.Technology_TECHNOLOGY_SIP, Status: "Reachable", RoundtripMs: 12}},
		at{secs(3), &pb.ContactStatus{Endpoint: "1001", Uri: "sip:1001@10.0.0.1:5060", Status: "Reachable", RoundtripUsec: 700, RoundtripKnown: true}})

	// Call 1.0: 1001 -> 1002, held, blind-transferred by 1002 to 1003.
	cRing := chn("PJSIP/1003-00000002", "1.2", "1.0", 5, "1003", "Ext 1003", "")
	p1(answered()...)
	p1(at{secs(10), &pb.ChannelHold{Channel: br(bUp, "br1"), Held: true}},
		at{secs(10), &pb.DeviceState{Device: "PJSIP/1002", State: "ONHOLD"}},
		at{secs(15), &pb.ChannelHold{Channel: br(bUp, "br1"), Held: false}},
		at{secs(20), &pb.Transfer{Kind: pb.Transfer_KIND_BLIND, Result: "Success", Transferer: br(bUp, "br1"), Transferee: br(aUp, "br1"), Extension: "1003"}})
	p1(hangup(secs(20), br(bUp, "br1"), 16)...)
	p1(at{secs(20), &pb.BridgeLeave{BridgeId: "br1", Channel: br(aUp, "br1")}},
		at{secs(21), &pb.DialBegin{Caller: aUp, Callee: cRing}},
		at{secs(21), &pb.DeviceState{Device: "PJSIP/1003", State: "RINGING"}},
		at{secs(25), &pb.ChannelStateChanged{Channel: up(cRing)}},
		at{secs(25), &pb.DialEnd{Caller: aUp, Callee: up(cRing), DialStatus: "ANSWER"}},
		at{secs(25), &pb.BridgeEnter{BridgeId: "br2", Channel: up(cRing)}},
		at{secs(25), &pb.BridgeEnter{BridgeId: "br2", Channel: aUp}},
		at{secs(26), &pb.DeviceState{Device: "PJSIP/1003", State: "INUSE"}},
		contact(secs(30), "Reachable", 21000))

	// Call 2.0: inbound through the trunk into the queue, answered by Bob.
	tIn := chn("PJSIP/carrier-00000010", "2.0", "2.0", 4, "+4930123456", "Berlin Office", "500")
	xIn := chn("PJSIP/1002-00000011", "2.1", "2.0", 5, "1002", "Ext 1002", "")
	p1(at{secs(30), &pb.ChannelCreated{Channel: tIn}},
		at{secs(31), &pb.ChannelStateChanged{Channel: up(tIn)}},
		queueCall(secs(31), pb.QueueCaller_ACTION_JOIN, up(tIn), 0),
		agent(secs(33), pb.QueueAgent_ACTION_CALLED, "PJSIP/1002", up(tIn), 0),
		at{secs(33), &pb.DialBegin{Caller: up(tIn), Callee: xIn}},
		at{secs(40), &pb.ChannelStateChanged{Channel: up(xIn)}},
		agent(secs(40), pb.QueueAgent_ACTION_CONNECT, "PJSIP/1002", up(tIn), 9),
		queueCall(secs(40), pb.QueueCaller_ACTION_LEAVE, up(tIn), 0),
		at{secs(40), &pb.DialEnd{Caller: up(tIn), Callee: up(xIn), DialStatus: "ANSWER"}},
		at{secs(40), &pb.BridgeEnter{BridgeId: "br3", Channel: up(xIn)}},
		at{secs(40), &pb.BridgeEnter{BridgeId: "br3", Channel: up(tIn)}})

	// Call 2.5: inbound, waits, abandons.
	ab := chn("PJSIP/carrier-00000015", "2.5", "2.5", 6, "+4940555", "", "500")
	p1(at{secs(50), &pb.ChannelCreated{Channel: ab}},
		queueCall(secs(50), pb.QueueCaller_ACTION_JOIN, ab, 0),
		contact(secs(61), "Reachable", 22000),
		at{secs(80), &pb.ChannelHangupRequest{Channel: ab, Cause: 16}},
		queueCall(secs(80), pb.QueueCaller_ACTION_ABANDON, ab, 30),
		queueCall(secs(80), pb.QueueCaller_ACTION_LEAVE, ab, 30),
		at{secs(80), &pb.ChannelHungUp{Channel: ab, Cause: 16, CauseText: "Normal Clearing"}})

	// Call 3.0: 1004 out through the trunk, busy.
	oOut := chn("PJSIP/1004-00000020", "3.0", "3.0", 4, "1004", "Ext 1004", "0049301234")
	tOut := chn("PJSIP/carrier-00000021", "3.1", "3.0", 5, "", "", "")
	p1(at{secs(90), &pb.ChannelCreated{Channel: oOut}},
		at{secs(90), &pb.DialBegin{Caller: oOut, Callee: tOut}},
		contact(secs(90), "Reachable", 23000),
		at{secs(92), &pb.ChannelHungUp{Channel: tOut, Cause: 17, CauseText: "User busy"}},
		at{secs(92), &pb.DialEnd{Caller: oOut, Callee: tOut, DialStatus: "BUSY"}},
		at{secs(93), &pb.ChannelHangupRequest{Channel: oOut, Cause: 17, Soft: true}},
		at{secs(93), &pb.ChannelHungUp{Channel: oOut, Cause: 17, CauseText: "User busy"}})

	// pbx2: 1003 talks to 1001, consults 1004 and joins them.
	orig := chn("PJSIP/1001-00000000", "1.0", "1.0", 6, "1001", "Ext 1001", "1003")
	oT := chn("PJSIP/1003-00000002", "1.2", "1.0", 6, "1003", "Ext 1003", "")
	sT := chn("PJSIP/1003-00000003", "1.3", "1.3", 6, "1003", "Ext 1003", "1004")
	tgt := chn("PJSIP/1004-00000004", "1.4", "1.3", 6, "1004", "Ext 1004", "")
	on("pbx2", at{secs(100), &pb.ChannelCreated{Channel: inState(orig, 4)}},
		at{secs(101), &pb.DialBegin{Caller: inState(orig, 4), Callee: inState(oT, 5)}},
		at{secs(104), &pb.ChannelStateChanged{Channel: oT}}, at{secs(104), &pb.ChannelStateChanged{Channel: orig}},
		at{secs(104), &pb.BridgeEnter{BridgeId: "brA", Channel: oT}}, at{secs(104), &pb.BridgeEnter{BridgeId: "brA", Channel: orig}},
		at{secs(110), &pb.ChannelHold{Channel: br(oT, "brA"), Held: true}},
		at{secs(111), &pb.ChannelCreated{Channel: inState(sT, 4)}},
		at{secs(112), &pb.DialBegin{Caller: inState(sT, 4), Callee: inState(tgt, 5)}},
		at{secs(115), &pb.ChannelStateChanged{Channel: tgt}}, at{secs(115), &pb.ChannelStateChanged{Channel: sT}},
		at{secs(115), &pb.BridgeEnter{BridgeId: "brB", Channel: tgt}}, at{secs(115), &pb.BridgeEnter{BridgeId: "brB", Channel: sT}},
		at{secs(130), &pb.Transfer{Kind: pb.Transfer_KIND_ATTENDED, Result: "Success", Transferer: br(oT, "brA"), SecondTransferer: br(sT, "brB"),
			Transferee: br(orig, "brA"), Target: br(tgt, "brB"), DestType: "Bridge", DestBridgeId: "brB"}})
	on("pbx2", hungUpBy(secs(130), br(oT, "brA"), 16)...)
	on("pbx2", hungUpBy(secs(130), br(sT, "brB"), 16)...)
	on("pbx2", at{secs(130), &pb.BridgeLeave{BridgeId: "brA", Channel: br(orig, "brA")}},
		at{secs(130), &pb.BridgeEnter{BridgeId: "brB", Channel: orig}})

	// Call 6.0: 1004 rings 1001 (already in call 1.0), no answer.
	in6 := chn("PJSIP/1004-00000060", "6.0", "6.0", 4, "1004", "Ext 1004", "1001")
	ring6 := chn("PJSIP/1001-00000061", "6.1", "6.0", 5, "1001", "Ext 1001", "")
	p1(at{secs(140), &pb.ChannelCreated{Channel: in6}},
		at{secs(141), &pb.DialBegin{Caller: in6, Callee: ring6}},
		contact(secs(150), "Reachable", 24000),
		at{secs(160), &pb.DialEnd{Caller: in6, Callee: ring6, DialStatus: "NOANSWER"}},
		at{secs(160), &pb.ChannelHungUp{Channel: ring6, Cause: 19, CauseText: "User alerting, no answer"}},
		at{secs(170), &pb.ChannelHangupRequest{Channel: in6, Cause: 16}},
		at{secs(170), &pb.ChannelHungUp{Channel: in6, Cause: 16}})

	// Call 12.0: 1002 (also in call 2.0) -> 1004; the caller hangs up first.
	p12 := chn("PJSIP/1002-00000120", "12.0", "12.0", 4, "1002", "Ext 1002", "1004")
	q12 := chn("PJSIP/1004-00000121", "12.1", "12.0", 5, "1004", "Ext 1004", "")
	p1(at{secs(180), &pb.ChannelCreated{Channel: p12}},
		at{secs(181), &pb.DialBegin{Caller: p12, Callee: q12}},
		at{secs(185), &pb.ChannelStateChanged{Channel: up(q12)}},
		at{secs(185), &pb.ChannelStateChanged{Channel: up(p12)}},
		at{secs(185), &pb.BridgeEnter{BridgeId: "br12", Channel: up(q12)}},
		at{secs(185), &pb.BridgeEnter{BridgeId: "br12", Channel: up(p12)}},
		contact(secs(186), "Unreachable", 0),
		pjsipPeer(secs(186), "Unreachable"))
	p1(hangup(secs(200), br(up(p12), "br12"), 16)...)
	p1(contact(secs(201), "Reachable", 30000),
		pjsipPeer(secs(201), "Reachable"),
		at{secs(202), &pb.CallerIdChanged{Channel: with(br(up(q12), "br12"), func(c *pb.Channel) { c.ConnectedNum, c.ConnectedName = "1002", "Ext 1002" })}},
		reg(secs(210), "Rejected", "403 Forbidden"),
		at{secs(220), &pb.PeerStatus{Name: "oldsip", Technology: pb.Technology_TECHNOLOGY_SIP, Status: "Unreachable"}},
		at{secs(240), &pb.PeerStatus{Name: "oldsip", Technology: pb.Technology_TECHNOLOGY_SIP, Status: "Lagged", RoundtripMs: 900}},
		contact(secs(260), "Reachable", 31000),
		reg(secs(300), "Registered", ""))
	p1(hungUpBy(secs(301), br(up(q12), "br12"), 16)...)

	// Call 7.0: 1003 (in call 1.0 too) gives up ringing 1004; call 8.0:
	// 1004 cannot reach 1009.
	c7 := chn("PJSIP/1003-00000070", "7.0", "7.0", 4, "1003", "Ext 1003", "1004")
	d7 := chn("PJSIP/1004-00000071", "7.1", "7.0", 5, "1004", "Ext 1004", "")
	c8 := chn("PJSIP/1004-00000080", "8.0", "8.0", 4, "1004", "Ext 1004", "1009")
	p1(at{secs(310), &pb.ChannelCreated{Channel: c7}},
		at{secs(311), &pb.DialBegin{Caller: c7, Callee: d7}},
		at{secs(312), &pb.ChannelCreated{Channel: c8}},
		at{secs(312), &pb.DialBegin{Caller: c8}},
		at{secs(312), &pb.DialEnd{Caller: c8, DialStatus: "CHANUNAVAIL"}},
		at{secs(313), &pb.ChannelHungUp{Channel: c8, Cause: 20, CauseText: "Subscriber absent"}},
		at{secs(318), &pb.ChannelHangupRequest{Channel: c7, Cause: 16}},
		at{secs(318), &pb.DialEnd{Caller: c7, Callee: d7, DialStatus: "CANCEL"}},
		at{secs(318), &pb.ChannelHungUp{Channel: d7, Cause: 16}},
		at{secs(318), &pb.ChannelHungUp{Channel: c7, Cause: 16}})

	// Call 13.0: 1001 (in call 1.0 too) at the echo test; it ends while the
	// link is down, so only the resync's listing says so.
	echo := chn("PJSIP/1001-00000130", "13.0", "13.0", 6, "1001", "Ext 1001", "*43")
	p1(at{secs(400), &pb.ChannelCreated{Channel: echo}},
		at{secs(500), &pb.PbxConnection{State: pb.PbxConnection_STATE_DISCONNECTED, Detail: "read tcp: connection reset", Attempt: 1}},
		at{secs(600), &pb.PbxConnection{State: pb.PbxConnection_STATE_RESYNCING}})
	p1(pbxEndpoints()...)
	p1(at{secs(600), oldsip})
	// The listing: 1.0 and 2.0 go on, 13.0 is gone, 14.0 and 15.0 are new.
	n14 := br(chn("PJSIP/1003-00000141", "14.1", "14.0", 6, "1003", "Ext 1003", ""), "br14")
	m14 := br(chn("PJSIP/1004-00000140", "14.0", "14.0", 6, "1004", "Ext 1004", "1003"), "br14")
	q15 := with(chn("PJSIP/carrier-00000150", "15.0", "15.0", 6, "+4989777", "Munich", "500"), func(c *pb.Channel) { c.Application = "Queue" })
	dur := func(c *pb.Channel, d int64) *pb.Channel {
		return with(c, func(c *pb.Channel) { c.DurationSeconds = d })
	}
	p1(at{secs(600), &pb.ChannelsSnapshot{Channels: []*pb.Channel{
		dur(br(aUp, "br2"), 599), dur(br(up(cRing), "br2"), 575),
		dur(br(up(tIn), "br3"), 570), dur(br(up(xIn), "br3"), 560),
		dur(n14, 90), dur(m14, 100),
		dur(q15, 20),
	}}},
		at{secs(600), &pb.QueuesSnapshot{
			Queues: []*pb.QueueSummary{{Queue: "support", Strategy: "ringall", ServiceLevel: 20}},
			Members: []*pb.QueueMember{
				{Queue: "support", Name: "Alice", Interface: "PJSIP/1001", Status: 2, Membership: "dynamic"},
				{Queue: "support", Name: "Carol", Interface: "PJSIP/1003", Status: 2},
			},
			Callers: []*pb.QueueCaller{{Queue: "support", Channel: q15, Position: 1, HoldTime: 20}},
		}},
		at{secs(600), &pb.PbxConnection{State: pb.PbxConnection_STATE_CONNECTED, Banner: "Asterisk Call Manager/9.0.0"}},
		at{secs(610), &pb.ChannelHold{Channel: n14, Held: true}},
		at{secs(620), &pb.ChannelRenamed{Channel: br(up(xIn), "br3"), NewName: "PJSIP/1002-00000011<MASQ>"}},
		contact(secs(630), "Reachable", 32000))
	on("pbx2", at{secs(640), &pb.ChannelsSnapshot{Channels: []*pb.Channel{br(orig, "brB"), br(tgt, "brB")}}})

	// After midnight in New York (t0 is 14:09 there): the queue's day
	// starts again when caller 15.0 is answered, long after it joined.
	night := 10 * time.Hour
	a15 := chn("PJSIP/1001-00000151", "15.1", "15.0", 5, "1001", "Ext 1001", "")
	p1(agent(night, pb.QueueAgent_ACTION_CONNECT, "PJSIP/1001", q15, 36000-580),
		queueCall(night, pb.QueueCaller_ACTION_LEAVE, q15, 0),
		at{night, &pb.DialBegin{Caller: q15, Callee: a15}},
		at{night + secs(1), &pb.ChannelStateChanged{Channel: up(a15)}},
		at{night + secs(1), &pb.BridgeEnter{BridgeId: "br15", Channel: up(a15)}},
		at{night + secs(1), &pb.BridgeEnter{BridgeId: "br15", Channel: q15}},
		contact(night+secs(2), "Reachable", 33000))
	// 2.0 and 1.0 end; 14.0 (on hold), 15.0 and pbx2's calls stay.
	xMasq := br(with(up(xIn), func(c *pb.Channel) { c.Name = "PJSIP/1002-00000011<MASQ>" }), "br3")
	p1(hangup(night+secs(10), br(up(tIn), "br3"), 16)...)
	p1(hungUpBy(night+secs(10), xMasq, 16)...)
	p1(agent(night+secs(10), pb.QueueAgent_ACTION_COMPLETE, "PJSIP/1001", up(tIn), 0))
	p1(hangup(night+secs(20), br(aUp, "br2"), 16)...)
	p1(hungUpBy(night+secs(20), br(up(cRing), "br2"), 16)...)
	c16 := chn("PJSIP/carrier-00000160", "16.0", "16.0", 6, "+331", "", "500")
	p1(at{night + secs(30), &pb.ChannelCreated{Channel: c16}},
		queueCall(night+secs(30), pb.QueueCaller_ACTION_JOIN, c16, 0),
		contact(night+secs(40), "Reachable", 34000))
	return evs
}

// growing returns the rows that only grow of a batch's changes: the
// history rows, then the trunk health rows. They go to two tables, so only
// the order within each counts; a batch reports all of its history before
// its trunk health.
func growing(changes []*pb.Change) []*pb.Change {
	var out []*pb.Change
	for _, c := range changes {
		if c.GetHistory() != nil {
			out = append(out, c)
		}
	}
	for _, c := range changes {
		if c.GetTrunkHealth() != nil {
			out = append(out, c)
		}
	}
	return out
}

// byTable orders rows from growing as two tables: history, then trunk
// health, each in stream order.
func byTable(rows []*pb.Change) []*pb.Change {
	out := slices.Clone(rows)
	slices.SortStableFunc(out, func(a, b *pb.Change) int {
		ha, hb := a.GetHistory() != nil, b.GetHistory() != nil
		switch {
		case ha && !hb:
			return -1
		case hb && !ha:
			return 1
		}
		return 0
	})
	return out
}

// rowStore keeps the live-view rows that TakeChanges reports, as the
// projector's tables do.
type rowStore map[string]proto.Message

func (s rowStore) apply(changes []*pb.Change) {
	for _, c := range changes {
		switch r := c.Row.(type) {
		case *pb.Change_Pbx:
			s["1/"+r.Pbx.PbxId] = r.Pbx
		case *pb.Change_Endpoint:
			s["2/"+r.Endpoint.PbxId+"/"+r.Endpoint.Name] = r.Endpoint
		case *pb.Change_Call:
			s["3/"+r.Call.PbxId+"/"+r.Call.Linkedid] = r.Call
		case *pb.Change_CallRemoved:
			delete(s, "3/"+r.CallRemoved.PbxId+"/"+r.CallRemoved.Linkedid)
		case *pb.Change_Registration:
			s["4/"+r.Registration.PbxId+"/"+r.Registration.Key] = r.Registration
		case *pb.Change_Queue:
			s["5/"+r.Queue.PbxId+"/"+r.Queue.Queue] = r.Queue
		}
	}
}

// snapshot reads the rows back as store.ReadSnapshot does, in Snapshot's order.
func (s rowStore) snapshot() *pb.Snapshot {
	out := &pb.Snapshot{Tenant: "acme"}
	for _, k := range sortedKeys(s) {
		m := proto.Clone(s[k])
		switch r := m.(type) {
		case *pb.PbxView:
			out.Pbxs = append(out.Pbxs, r)
		case *pb.EndpointView:
			out.Endpoints = append(out.Endpoints, r)
		case *pb.CallView:
			out.Calls = append(out.Calls, r)
		case *pb.TrunkRegistrationView:
			out.Registrations = append(out.Registrations, r)
		case *pb.QueueView:
			out.Queues = append(out.Queues, r)
		}
	}
	return out
}

// protoDiff lists the fields in which two messages differ, by path.
func protoDiff(path string, a, b protoreflect.Message) []string {
	var out []string
	fields := a.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		p := path + "." + string(f.Name())
		switch {
		case f.IsList():
			la, lb := a.Get(f).List(), b.Get(f).List()
			if la.Len() != lb.Len() {
				out = append(out, fmt.Sprintf("%s: %d items, want %d", p, lb.Len(), la.Len()))
			}
			for j := range min(la.Len(), lb.Len()) {
				q := fmt.Sprintf("%s[%d]", p, j)
				if f.Kind() == protoreflect.MessageKind {
					out = append(out, protoDiff(q, la.Get(j).Message(), lb.Get(j).Message())...)
				} else if !la.Get(j).Equal(lb.Get(j)) {
					out = append(out, fmt.Sprintf("%s: %v, want %v", q, lb.Get(j), la.Get(j)))
				}
			}
		case f.IsMap():
			if !a.Get(f).Equal(b.Get(f)) {
				out = append(out, p+": maps differ")
			}
		case f.Kind() == protoreflect.MessageKind:
			if a.Has(f) != b.Has(f) {
				out = append(out, fmt.Sprintf("%s: set %v, want set %v", p, b.Has(f), a.Has(f)))
			} else if a.Has(f) {
				out = append(out, protoDiff(p, a.Get(f).Message(), b.Get(f).Message())...)
			}
		default:
			if !a.Get(f).Equal(b.Get(f)) {
				out = append(out, fmt.Sprintf("%s: %v, want %v", p, b.Get(f), a.Get(f)))
			}
		}
	}
	return out
}

// diffRows compares two row lists, want first, and describes the first
// row in which they part (later rows are usually shifted by it).
func diffRows(want, got []*pb.Change) []string {
	var out []string
	if len(want) != len(got) {
		out = append(out, fmt.Sprintf("%d rows, want %d", len(got), len(want)))
	}
	for i := range max(len(want), len(got)) {
		switch {
		case i >= len(got):
			return append(out, fmt.Sprintf("row[%d] missing: %v", i, want[i]))
		case i >= len(want):
			return append(out, fmt.Sprintf("row[%d] extra: %v", i, got[i]))
		case !proto.Equal(want[i], got[i]):
			out = append(out, fmt.Sprintf("row[%d] is %v\n  want %v", i, got[i], want[i]))
			return append(out, protoDiff(fmt.Sprintf("row[%d]", i), want[i].ProtoReflect(), got[i].ProtoReflect())...)
		}
	}
	return out
}

func describe(e *pb.Event) string {
	return fmt.Sprintf("%s %T at %s", e.PbxId, e.Payload, e.PbxTime.AsTime().Sub(t0))
}

// Views reloaded from a stored snapshot after any event, and fed the rest
// of the stream, end exactly where views fed the whole stream end: the
// same live rows and the same history and trunk health rows. The
// projector's exactly-once restart and its rebuild rest on this.
func TestRestartFromSnapshotIsDeterministic(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	evs := restartScenario()

	full := New("acme", nil, loc)
	var wantRows []*pb.Change
	for _, e := range evs {
		full.Apply(e)
		wantRows = append(wantRows, growing(full.TakeChanges())...)
	}
	want := full.Snapshot(0)
	checkScenarioCoverage(t, evs, loc, wantRows)

	for _, batch := range []int{1, 2, 3, 4} {
		t.Run(fmt.Sprint("commits of ", batch), func(t *testing.T) {
			prefix := New("acme", nil, loc)
			var prefixRows []*pb.Change
			rows := rowStore{}
			failures, points := 0, 0
			for k := 0; k <= len(evs); k++ {
				if k > 0 {
					prefix.Apply(evs[k-1])
				}
				if k%batch != 0 && k != len(evs) {
					continue // a projector only stops after a commit
				}
				points++
				changes := prefix.TakeChanges()
				prefixRows = append(prefixRows, growing(changes)...)
				rows.apply(changes)
				snap := prefix.Snapshot(0)
				// What the commits stored is what the views hold.
				if d := protoDiff("snapshot", snap.ProtoReflect(), rows.snapshot().ProtoReflect()); len(d) > 0 {
					t.Fatalf("after event %d (%s) the changed rows are not the views:\n%s", k, describe(evs[max(k-1, 0)]), strings.Join(d, "\n"))
				}
				b, err := proto.Marshal(snap)
				if err != nil {
					t.Fatal(err)
				}
				stored := &pb.Snapshot{}
				if err := proto.Unmarshal(b, stored); err != nil {
					t.Fatal(err)
				}
				// store.ReadSnapshot reads calls by start, not by key.
				slices.SortStableFunc(stored.Calls, func(a, b *pb.CallView) int {
					return a.StartedAt.AsTime().Compare(b.StartedAt.AsTime())
				})
				v := New("acme", stored, loc)
				got := slices.Clone(prefixRows)
				for i, e := range evs[k:] {
					v.Apply(e)
					if (k+i+1)%batch == 0 || k+i+1 == len(evs) {
						got = append(got, growing(v.TakeChanges())...)
					}
				}
				d := protoDiff("snapshot", want.ProtoReflect(), v.Snapshot(0).ProtoReflect())
				d = append(d, diffRows(byTable(wantRows), byTable(got))...)
				if len(d) > 0 {
					failures++
					if failures <= 3 {
						t.Errorf("restarted after event %d (%s), next %s:\n%s", k, describe(evs[max(k-1, 0)]), describe(evs[min(k, len(evs)-1)]), strings.Join(d, "\n"))
					}
				}
			}
			if failures > 0 {
				t.Errorf("%d of %d restart points differ", failures, points)
			}
		})
	}
}

// checkScenarioCoverage makes sure the scenario goes through what it
// claims to, so that the restart test cannot pass by testing nothing.
func checkScenarioCoverage(t *testing.T, evs []*pb.Event, loc *time.Location, rows []*pb.Change) {
	t.Helper()
	seen := map[string]bool{}
	v := New("acme", nil, loc)
	for _, e := range evs {
		v.Apply(e)
		v.TakeChanges()
		s := v.Snapshot(0)
		for _, c := range s.Calls {
			seen["live call on hold"] = seen["live call on hold"] || len(c.Held) > 0
			seen["live call with a transfer"] = seen["live call with a transfer"] || len(c.Transfers) > 0
			seen["live call with dial statuses"] = seen["live call with dial statuses"] || len(c.DialStatuses) > 0
			seen["live call with hangup_by"] = seen["live call with hangup_by"] || c.HangupBy != ""
			seen["live call with a hangup cause"] = seen["live call with a hangup cause"] || c.HangupCause != 0
			seen["live call in a queue"] = seen["live call in a queue"] || c.Queue != ""
			seen["live inbound call"] = seen["live inbound call"] || c.Direction == "inbound"
			seen["live outbound call"] = seen["live outbound call"] || c.Direction == "outbound"
			seen["live call without its first channel"] = seen["live call without its first channel"] ||
				!slices.ContainsFunc(c.Channels, func(ch *pb.Channel) bool { return ch.Uniqueid == c.Linkedid })
		}
		for _, q := range s.Queues {
			seen["queue with callers"] = seen["queue with callers"] || len(q.Callers) > 0
			seen["queue with counters"] = seen["queue with counters"] || q.AnsweredToday > 0 && q.AbandonedToday > 0
		}
		for _, e := range s.Endpoints {
			seen["endpoint in two calls"] = seen["endpoint in two calls"] || len(e.Calls) > 1
			seen["trunk with a sample time"] = seen["trunk with a sample time"] || e.LastHealthSample != nil
		}
	}
	for _, r := range rows {
		if h := r.GetHistory(); h != nil {
			seen["history "+h.Disposition] = true
			seen["history with a transfer"] = seen["history with a transfer"] || len(h.Transfers) > 0
			seen["history of a queue call"] = seen["history of a queue call"] || h.Queue != ""
		}
		if h := r.GetTrunkHealth(); h != nil {
			seen["health "+h.Kind] = true
		}
	}
	final := v.Snapshot(0)
	seen["queue day rolled over"] = slices.ContainsFunc(final.Queues, func(q *pb.QueueView) bool { return q.Day == "2026-11-22" })
	for _, want := range []string{
		"live call on hold", "live call with a transfer", "live call with dial statuses", "live call with hangup_by",
		"live call with a hangup cause", "live call in a queue", "live inbound call", "live outbound call",
		"live call without its first channel", "queue with callers", "queue with counters", "endpoint in two calls",
		"trunk with a sample time", "history answered", "history busy", "history no_answer", "history cancelled", "history failed", "history with a transfer",
		"history of a queue call", "health registration", "health roundtrip", "queue day rolled over",
	} {
		if !seen[want] {
			t.Errorf("the scenario has no %s", want)
		}
	}
}

// hashID is persisted: it must stay hash/fnv's FNV-1a.
func TestHashIDIsFNV1a(t *testing.T) {
	for _, id := range []string{"", "a", "01JDZ3Q9V5X7K2M4N6P8R0T2W4", "ünïcode-id", "1772438400.123"} {
		h := fnv.New64a()
		h.Write([]byte(id))
		if got, want := hashID(id), h.Sum64(); got != want {
			t.Errorf("hashID(%q) = %x, want %x", id, got, want)
		}
	}
}
