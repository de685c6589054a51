package pbxsim

import (
	"slices"
	"testing"
)

// TestScenarios drives each call scenario and checks the key AMI and ARI
// events appear in Asterisk's order, with the values a normalizer relies
// on (Linkedid kept across transfers, the right channels named).
func TestScenarios(t *testing.T) {
	type result struct {
		ami []msg
		ari []ariMsg
	}
	tests := []struct {
		name    string
		run     func(t *testing.T, h *harness) []*Call
		amiSeq  []string
		ariSeq  []string
		check   func(t *testing.T, h *harness, r result, calls []*Call)
		noCheck bool
	}{
		{
			name: "hold and unhold",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.Dial("1001", "1002")
				c.Answer()
				if !c.Hold("1002") || c.Hold("1002") || !c.Unhold("1002") || c.Unhold("1002") {
					t.Error("Hold/Unhold results")
				}
				c.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"BridgeEnter", "BridgeEnter", "Hold", "Unhold", "Hangup", "Hangup"},
			ariSeq: []string{"ChannelEnteredBridge", "ChannelEnteredBridge", "ChannelHold", "ChannelUnhold", "ChannelDestroyed"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				hold := findEvent(r.ami, "Hold")
				if hold.get("Uniqueid") != calls[0].Uniqueids()[1] || hold.get("MusicClass") != "default" {
					t.Errorf("Hold %v", hold)
				}
				a, _ := findARI(r.ari, "ChannelHold")
				if a.str("musicclass") != "default" || a.str("channel", "id") != hold.get("Uniqueid") {
					t.Errorf("ChannelHold %s", a.raw)
				}
			},
		},
		{
			name: "DTMF",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.Dial("1001", "1002")
				c.Answer()
				c.SendDTMF("1001", "12#")
				c.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"DTMFBegin", "DTMFEnd", "DTMFBegin", "DTMFEnd", "DTMFBegin", "DTMFEnd"},
			ariSeq: []string{"ChannelDtmfReceived", "ChannelDtmfReceived", "ChannelDtmfReceived"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				var digits string
				for _, m := range r.ami {
					if m.get("Event") == "DTMFEnd" {
						digits += m.get("Digit")
						if m.get("Direction") != "Received" || m.get("DurationMs") == "" {
							t.Errorf("DTMFEnd %v", m)
						}
					}
				}
				if digits != "12#" {
					t.Errorf("digits %q", digits)
				}
			},
		},
		{
			name: "blind transfer keeps the Linkedid",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.Dial("1001", "1002")
				c.Answer()
				nc := c.BlindTransfer("1002", "1003")
				if nc == nil {
					t.Fatal("no transfer")
				}
				nc.Answer()
				nc.Hangup()
				return []*Call{c, nc}
			},
			amiSeq: []string{"BridgeEnter", "BridgeEnter", "BlindTransfer", "BridgeLeave", "DialBegin", "Hangup", "DialEnd", "BridgeEnter", "Hangup", "Hangup"},
			ariSeq: []string{"BridgeBlindTransfer", "ChannelLeftBridge", "Dial", "ChannelDestroyed", "ChannelEnteredBridge"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				bt := findEvent(r.ami, "BlindTransfer")
				if bt.get("Result") != "Success" || bt.get("Extension") != "1003" || bt.get("Context") != "internal" ||
					bt.get("TransfererChannel") == "" || bt.get("TransfereeLinkedid") != calls[0].Linkedid() {
					t.Errorf("BlindTransfer %v", bt)
				}
				if calls[1].Linkedid() != calls[0].Linkedid() {
					t.Errorf("transferred call Linkedid %s, original %s", calls[1].Linkedid(), calls[0].Linkedid())
				}
				for _, m := range r.ami {
					if m.get("Event") == "Newchannel" && m.get("Linkedid") != calls[0].Linkedid() {
						t.Errorf("new channel outside the call: %v", m)
					}
				}
			},
		},
		{
			name: "attended transfer",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.Dial("1001", "1002")
				c.Answer()
				tr := c.StartAttendedTransfer("1002", "1003")
				tr.Consult().Answer()
				nc := tr.Complete()
				if nc == nil {
					t.Fatal("transfer did not complete")
				}
				if got := nc.Channels(); len(got) != 2 {
					t.Errorf("result call channels %v", got)
				}
				nc.Hangup()
				return []*Call{c, tr.Consult(), nc}
			},
			amiSeq: []string{"Hold", "Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BridgeEnter", "BridgeLeave", "BridgeEnter", "BridgeLeave", "AttendedTransfer", "Hangup", "Hangup", "Hangup", "Hangup"},
			ariSeq: []string{"ChannelHold", "ChannelCreated", "BridgeAttendedTransfer", "ChannelDestroyed"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				at := findEvent(r.ami, "AttendedTransfer")
				if at.get("Result") != "Success" || at.get("DestType") != "Bridge" || at.get("DestBridgeUniqueid") != at.get("SecondBridgeUniqueid") ||
					at.get("TransfereeLinkedid") != calls[0].Linkedid() || at.get("TransferTargetLinkedid") != calls[1].Linkedid() {
					t.Errorf("AttendedTransfer %v", at)
				}
				a, _ := findARI(r.ari, "BridgeAttendedTransfer")
				if a.str("destination_type") != "bridge" || a.str("destination_bridge") != at.get("DestBridgeUniqueid") {
					t.Errorf("BridgeAttendedTransfer %s", a.raw)
				}
			},
		},
		{
			name: "queue call answered by a member",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.CallQueue("1001")
				c.AnswerBy("1005")
				c.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"QueueCallerJoin", "AgentCalled", "DialBegin", "AgentCalled", "DialBegin", "DialEnd", "DialEnd",
				"QueueCallerLeave", "AgentConnect", "BridgeEnter", "BridgeEnter", "AgentComplete", "Hangup", "Hangup"},
			ariSeq: []string{"Dial", "Dial", "ChannelEnteredBridge", "ChannelEnteredBridge", "ChannelDestroyed"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				ac := findEvent(r.ami, "AgentConnect")
				if ac.get("Queue") != "support" || ac.get("Interface") != "PJSIP/1005" || ac.get("MemberName") != "Ext 1005" ||
					ac.get("DestLinkedid") != calls[0].Linkedid() {
					t.Errorf("AgentConnect %v", ac)
				}
				if m := findEvent(r.ami, "AgentComplete"); m.get("Reason") != "caller" {
					t.Errorf("AgentComplete %v", m)
				}
				if m := findEvent(r.ami, "QueueCallerJoin"); m.get("Position") != "1" || m.get("Count") != "1" {
					t.Errorf("QueueCallerJoin %v", m)
				}
				q := h.s.Truth().Queues[0]
				if q.Completed != 1 || q.Members[1].CallsTaken != 1 {
					t.Errorf("queue after call %+v", q)
				}
			},
		},
		{
			name: "queue call abandoned",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.CallQueue("1001")
				c.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"QueueCallerJoin", "AgentCalled", "AgentCalled", "HangupRequest", "DialEnd", "DialEnd", "QueueCallerAbandon", "QueueCallerLeave", "Hangup"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				if m := findEvent(r.ami, "QueueCallerAbandon"); m.get("OriginalPosition") != "1" || m.get("Queue") != "support" {
					t.Errorf("QueueCallerAbandon %v", m)
				}
				if q := h.s.Truth().Queues[0]; q.Abandoned != 1 || len(q.Callers) != 0 {
					t.Errorf("queue %+v", q)
				}
			},
		},
		{
			name: "queue members ring without answer",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.CallQueue("1001")
				c.RingNoAnswer()
				c.AnswerBy("1004")
				c.HangupCallee()
				return []*Call{c}
			},
			amiSeq: []string{"QueueCallerJoin", "AgentCalled", "AgentCalled", "AgentRingNoAnswer", "AgentRingNoAnswer", "AgentCalled", "AgentCalled", "AgentConnect", "AgentComplete"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				if m := findEvent(r.ami, "AgentComplete"); m.get("Reason") != "agent" {
					t.Errorf("AgentComplete %v", m)
				}
			},
		},
		{
			name: "queue member paused",
			run: func(t *testing.T, h *harness) []*Call {
				if !h.s.PauseMember("PJSIP/1004", true, "lunch") || h.s.PauseMember("PJSIP/9999", true, "") {
					t.Error("PauseMember results")
				}
				c := h.s.CallQueue("1001")
				c.AnswerBy("1005")
				c.Hangup()
				h.s.PauseMember("1004", false, "")
				return []*Call{c}
			},
			amiSeq: []string{"QueueMemberPause", "QueueCallerJoin", "AgentCalled", "AgentConnect", "QueueMemberPause"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				var calledIfaces []string
				for _, m := range r.ami {
					if m.get("Event") == "AgentCalled" {
						calledIfaces = append(calledIfaces, m.get("Interface"))
					}
				}
				if !slices.Equal(calledIfaces, []string{"PJSIP/1005"}) {
					t.Errorf("a paused member was rung: %v", calledIfaces)
				}
				p := findEvent(r.ami, "QueueMemberPause")
				if p.get("Paused") != "1" || p.get("PausedReason") != "lunch" || p.get("Interface") != "PJSIP/1004" {
					t.Errorf("QueueMemberPause %v", p)
				}
			},
		},
		{
			name: "Local channel call",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.DialLocal("1001", "1002")
				c.Answer()
				c.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"Newchannel", "Newchannel", "Newchannel", "LocalBridge", "DialBegin", "DialBegin", "BridgeEnter", "BridgeEnter", "BridgeEnter", "BridgeEnter", "Hangup", "Hangup", "Hangup", "Hangup"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				lb := findEvent(r.ami, "LocalBridge")
				if lb.get("LocalOneChannel") == "" || lb.get("LocalTwoChannel") == "" || lb.get("Exten") != "1002" ||
					lb.get("LocalOptimization") != "No" || lb.get("LocalOneLinkedid") != calls[0].Linkedid() {
					t.Errorf("LocalBridge %v", lb)
				}
			},
		},
		{
			name: "Originate click-to-call",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.Originate(OriginateRequest{Endpoint: "1001", Exten: "1002", CallerID: `"Click" <555>`, ActionID: "o-1"})
				c.Answer() // the phone picks up, then 1002 rings
				c.Answer() // 1002 answers
				c.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"Newchannel", "DialBegin", "Newstate", "DialState", "Newstate", "DialEnd", "OriginateResponse", "Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BridgeEnter"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				or := findEvent(r.ami, "OriginateResponse")
				if or.get("ActionID") != "o-1" || or.get("Response") != "Success" || or.get("Reason") != "4" ||
					or.get("Exten") != "1002" || or.get("CallerIDNum") != "555" || or.get("CallerIDName") != "Click" ||
					or.get("Uniqueid") != calls[0].Linkedid() {
					t.Errorf("OriginateResponse %v", or)
				}
			},
		},
		{
			name: "park",
			run: func(t *testing.T, h *harness) []*Call {
				c := h.s.Dial("1001", "1002")
				c.Answer()
				slot, pc := c.Park("1001")
				if slot != 701 || pc == nil {
					t.Fatalf("parked at %d", slot)
				}
				pc.Hangup()
				return []*Call{c}
			},
			amiSeq: []string{"BridgeLeave", "Hangup", "BridgeCreate", "BridgeEnter", "ParkedCall", "ParkedCallGiveUp", "BridgeLeave", "BridgeDestroy", "Hangup"},
			check: func(t *testing.T, h *harness, r result, calls []*Call) {
				p := findEvent(r.ami, "ParkedCall")
				if p.get("ParkingSpace") != "701" || p.get("Parkinglot") != "default" || p.get("ParkeeLinkedid") != calls[0].Linkedid() {
					t.Errorf("ParkedCall %v", p)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{OriginateAnswerAfter: -1})
			calls := tc.run(t, h)
			ami, ari := h.phase()
			if got := amiTypes(ami, nil); !subsequence(got, tc.amiSeq) {
				t.Errorf("AMI events %v\nlack, in order, %v", got, tc.amiSeq)
			}
			if got := ariTypes(ari, nil); !subsequence(got, tc.ariSeq) {
				t.Errorf("ARI events %v\nlack, in order, %v", got, tc.ariSeq)
			}
			if tc.check != nil {
				tc.check(t, h, result{ami, ari}, calls)
			}
			tr := h.s.Truth()
			if len(tr.Channels) != 0 || len(tr.Bridges) != 0 {
				t.Errorf("left over: %+v %+v", tr.Channels, tr.Bridges)
			}
			checkDocumented(t, ami, ari)
		})
	}
}
