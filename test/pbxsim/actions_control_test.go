package pbxsim

import (
	"strings"
	"testing"
	"time"
)

// TestControlActionErrors checks the error answers of the call-control
// actions, worded as in Asterisk's manager.c, features.c,
// parking_manager.c and app_mixmonitor.c.
func TestControlActionErrors(t *testing.T) {
	s, addr := startServer(t, Config{})
	s.Register("1001")
	s.Register("1002")
	call := s.Dial("1001", "1002")
	call.Answer()
	defer call.Hangup()
	chA := call.Channels()[0]
	c := dial(t, addr)
	c.login("off")
	tests := []struct {
		name string
		kv   []string
		want string // Message of the Error response
	}{
		{"hangup without channel", []string{"Action", "Hangup"}, "No channel specified"},
		{"hangup unknown channel", []string{"Action", "Hangup", "Channel", "PJSIP/9999-00000000"}, "No such channel"},
		{"originate without channel", []string{"Action", "Originate", "Exten", "1002"}, "Channel not specified"},
		{"originate bad priority", []string{"Action", "Originate", "Channel", "PJSIP/1001", "Priority", "x"}, "Invalid priority"},
		{"originate bad timeout", []string{"Action", "Originate", "Channel", "PJSIP/1001", "Timeout", "soon"}, "Invalid timeout"},
		{"originate bad channel", []string{"Action", "Originate", "Channel", "1001"}, "Invalid channel"},
		{"originate unknown extension", []string{"Action", "Originate", "Channel", "PJSIP/1001", "Context", "internal", "Exten", "555", "Priority", "1"}, "Extension does not exist."},
		{"originate sync without target", []string{"Action", "Originate", "Channel", "PJSIP/1001"}, "Originate with 'Exten' requires 'Context' and 'Priority'"},
		{"originate sync unreachable", []string{"Action", "Originate", "Channel", "SIP/1001", "Application", "Echo"}, "Originate failed"},
		{"redirect without channel", []string{"Action", "Redirect", "Exten", "600"}, "Channel not specified"},
		{"redirect without context", []string{"Action", "Redirect", "Channel", chA, "Exten", "600"}, "Context not specified"},
		{"redirect without exten", []string{"Action", "Redirect", "Channel", chA, "Context", "internal"}, "Exten not specified"},
		{"redirect without priority", []string{"Action", "Redirect", "Channel", chA, "Context", "internal", "Exten", "600"}, "Priority not specified"},
		{"redirect bad priority", []string{"Action", "Redirect", "Channel", chA, "Context", "internal", "Exten", "600", "Priority", "0"}, "Priority is invalid"},
		{"redirect unknown channel", []string{"Action", "Redirect", "Channel", "PJSIP/x", "Context", "internal", "Exten", "600", "Priority", "1"}, "Channel does not exist: PJSIP/x"},
		{"redirect extra without exten", []string{"Action", "Redirect", "Channel", chA, "Context", "internal", "Exten", "600", "Priority", "1", "ExtraChannel", "PJSIP/y", "ExtraContext", "internal"}, "ExtraExten not specified"},
		{"redirect unknown extra", []string{"Action", "Redirect", "Channel", chA, "Context", "internal", "Exten", "600", "Priority", "1", "ExtraChannel", "PJSIP/y"}, "ExtraChannel does not exist: PJSIP/y"},
		{"blindtransfer without channel", []string{"Action", "BlindTransfer", "Exten", "1003"}, "No channel specified"},
		{"blindtransfer without exten", []string{"Action", "BlindTransfer", "Channel", chA}, "No extension specified"},
		{"blindtransfer unknown channel", []string{"Action", "BlindTransfer", "Channel", "PJSIP/x", "Exten", "1003"}, "Channel specified does not exist"},
		{"blindtransfer unknown extension", []string{"Action", "BlindTransfer", "Channel", chA, "Exten", "555"}, "Transfer failed"},
		{"atxfer without channel", []string{"Action", "Atxfer", "Exten", "1003"}, "No channel specified"},
		{"atxfer without exten", []string{"Action", "Atxfer", "Channel", chA}, "No extension specified"},
		{"atxfer unknown channel", []string{"Action", "Atxfer", "Channel", "PJSIP/x", "Exten", "1003"}, "Channel specified does not exist"},
		{"park without channel", []string{"Action", "Park"}, "Channel not specified"},
		{"park bad timeout", []string{"Action", "Park", "Channel", chA, "Timeout", "-5"}, "Invalid Timeout value."},
		{"park unknown channel", []string{"Action", "Park", "Channel", "PJSIP/x"}, "Channel does not exist: PJSIP/x"},
		{"bridge missing channel", []string{"Action", "Bridge", "Channel1", chA}, "Missing channel parameter in request"},
		{"bridge unknown channel1", []string{"Action", "Bridge", "Channel1", "PJSIP/x", "Channel2", chA}, "Channel1 does not exist: PJSIP/x"},
		{"bridge unknown channel2", []string{"Action", "Bridge", "Channel1", chA, "Channel2", "PJSIP/y"}, "Channel2 does not exist: PJSIP/y"},
		{"mixmonitor without channel", []string{"Action", "MixMonitor", "File", "a.wav"}, "No channel specified"},
		{"mixmonitor unknown channel", []string{"Action", "MixMonitor", "Channel", "PJSIP/x", "File", "a.wav"}, "No such channel"},
		{"stopmixmonitor not recording", []string{"Action", "StopMixMonitor", "Channel", chA}, "Could not stop monitoring channel"},
		{"queuepause without interface", []string{"Action", "QueuePause", "Paused", "true"}, "Need 'Interface' and 'Paused' parameters."},
		{"queuepause unknown member", []string{"Action", "QueuePause", "Interface", "PJSIP/1001", "Paused", "true"}, "Interface not found"},
		{"reload unknown module", []string{"Action", "Reload", "Module", "chan_nothing.so"}, "No such module"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := c.action("e"+itoa(i), tc.kv...)
			if len(ms) != 1 || ms[0].get("Response") != "Error" || ms[0].get("Message") != tc.want {
				t.Errorf("got %v, want Error %q", ms, tc.want)
			}
		})
	}
	if !call.Up() || s.Channels() != 2 {
		t.Error("a failed action changed the call")
	}
}

// waitEvent reads from c until an event satisfying pred arrives.
func waitEvent(t *testing.T, c *client, pred func(msg) bool) msg {
	t.Helper()
	ms := c.until(pred)
	return ms[len(ms)-1]
}

func isEvent(ev string, kv ...string) func(msg) bool {
	return func(m msg) bool {
		if m.get("Event") != ev {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if m.get(kv[i]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

func TestHangupAction(t *testing.T) {
	h := newHarness(t, Config{})
	call := h.s.Dial("1001", "1002")
	call.Answer()
	ch := call.Channels()[1]
	ms := h.ami.action("h1", "Action", "Hangup", "Channel", ch, "Cause", "17")
	if ms[0].get("Message") != "Channel Hungup" {
		t.Fatalf("Hangup: %v", ms)
	}
	hu := waitEvent(t, h.ami, isEvent("Hangup", "Channel", ch))
	if hu.get("Cause") != "17" || hu.get("Cause-txt") != "User busy" {
		t.Errorf("Hangup event %v", hu)
	}
	waitEvent(t, h.ami, isEvent("Hangup", "Channel", call.callerName()))
	if !call.Ended() || h.s.Channels() != 0 {
		t.Error("call not over")
	}
}

func TestOriginateAction(t *testing.T) {
	h := newHarness(t, Config{OriginateAnswerAfter: 20 * time.Millisecond})
	ms := h.ami.action("o1", "Action", "Originate", "Channel", "PJSIP/1001", "Context", "internal",
		"Exten", "1002", "Priority", "1", "CallerID", `"Web" <100>`, "Async", "true")
	if ms[0].get("Response") != "Success" || ms[0].get("Message") != "Originate successfully queued" {
		t.Fatalf("Originate: %v", ms)
	}
	or := waitEvent(t, h.ami, isEvent("OriginateResponse"))
	if or.get("ActionID") != "o1" || or.get("Response") != "Success" || or.get("Channel") == "" ||
		or.get("Context") != "internal" || or.get("Exten") != "1002" || or.get("Reason") != "4" {
		t.Errorf("OriginateResponse %v", or)
	}
	// The phone answered on its own; now the target rings.
	ring := waitEvent(t, h.ami, isEvent("DialState", "DialStatus", "RINGING", "Channel", or.get("Channel")))
	c := h.s.CallOf(ring.get("DestChannel"))
	if c == nil {
		t.Fatal("no call for the dialled channel")
	}
	c.Answer()
	c.Hangup()
	if h.s.Channels() != 0 {
		t.Error("channels left")
	}

	// Async to a channel that cannot be created fails in OriginateResponse.
	h.ami.action("o2", "Action", "Originate", "Channel", "PJSIP/9999", "Application", "Echo", "Async", "yes")
	fail := waitEvent(t, h.ami, isEvent("OriginateResponse", "ActionID", "o2"))
	if fail.get("Response") != "Failure" || fail.get("Channel") != "PJSIP/9999" || fail.get("Uniqueid") != "<unknown>" ||
		fail.get("Application") != "Echo" || fail.get("CallerIDNum") != "<unknown>" {
		t.Errorf("failed OriginateResponse %v", fail)
	}
	ami, _ := h.phase()
	checkDocumented(t, ami, nil)
}

func TestOriginateNotAnswered(t *testing.T) {
	h := newHarness(t, Config{OriginateAnswerAfter: -1})
	h.ami.action("o1", "Action", "Originate", "Channel", "PJSIP/1003", "Context", "internal",
		"Exten", "600", "Priority", "1", "Timeout", "50", "Async", "1")
	or := waitEvent(t, h.ami, isEvent("OriginateResponse"))
	if or.get("Response") != "Failure" || or.get("Reason") != "3" {
		t.Errorf("timed-out OriginateResponse %v", or)
	}
	h.phase()
	if h.s.Channels() != 0 {
		t.Error("channel left")
	}
}

func TestRedirectAndTransferActions(t *testing.T) {
	tests := []struct {
		name  string
		act   func(h *harness, a, b string) []msg
		reply string
		check func(t *testing.T, h *harness, call *Call, ami []msg)
	}{
		{
			name: "Redirect one party to Echo",
			act: func(h *harness, a, b string) []msg {
				return h.ami.action("r", "Action", "Redirect", "Channel", a, "Context", "internal", "Exten", "600", "Priority", "1")
			},
			reply: "Redirect successful",
			check: func(t *testing.T, h *harness, call *Call, ami []msg) {
				if e := findEvent(ami, "Hangup"); e == nil || e.get("Channel") != "" && e.get("Uniqueid") != call.Uniqueids()[1] {
					t.Errorf("the party left behind did not hang up: %v", e)
				}
				tr := h.s.Truth()
				if len(tr.Channels) != 1 || tr.Channels[0].App != "Echo" || tr.Channels[0].Linkedid != call.Linkedid() {
					t.Errorf("after redirect %+v", tr.Channels)
				}
			},
		},
		{
			name: "dual Redirect",
			act: func(h *harness, a, b string) []msg {
				return h.ami.action("r", "Action", "Redirect", "Channel", a, "Context", "internal", "Exten", "600", "Priority", "1",
					"ExtraChannel", b, "ExtraContext", "internal", "ExtraExten", "600", "ExtraPriority", "1")
			},
			reply: "Dual Redirect successful",
			check: func(t *testing.T, h *harness, call *Call, ami []msg) {
				tr := h.s.Truth()
				if len(tr.Channels) != 2 || tr.Channels[0].App != "Echo" || tr.Channels[1].App != "Echo" {
					t.Errorf("after dual redirect %+v", tr.Channels)
				}
			},
		},
		{
			name: "BlindTransfer",
			act: func(h *harness, a, b string) []msg {
				return h.ami.action("b", "Action", "BlindTransfer", "Channel", b, "Exten", "1003", "Context", "internal")
			},
			reply: "Transfer succeeded",
			check: func(t *testing.T, h *harness, call *Call, ami []msg) {
				bt := findEvent(ami, "BlindTransfer")
				if bt == nil || bt.get("Extension") != "1003" {
					t.Errorf("BlindTransfer %v", bt)
				}
				tr := h.s.Truth()
				if len(tr.Channels) != 2 || tr.Channels[1].Endpoint != "1003" || tr.Channels[1].Linkedid != call.Linkedid() {
					t.Errorf("after transfer %+v", tr.Channels)
				}
			},
		},
		{
			name: "Atxfer",
			act: func(h *harness, a, b string) []msg {
				return h.ami.action("x", "Action", "Atxfer", "Channel", b, "Exten", "1003")
			},
			reply: "Atxfer successfully queued",
			check: func(t *testing.T, h *harness, call *Call, ami []msg) {
				var digits string
				for _, m := range ami {
					if m.get("Event") == "DTMFEnd" {
						digits += m.get("Digit")
					}
				}
				if digits != "*21003" || findEvent(ami, "Hold") == nil {
					t.Errorf("Atxfer DTMF %q", digits)
				}
				trs := h.s.Transfers()
				if len(trs) != 1 {
					t.Fatalf("%d transfers", len(trs))
				}
				trs[0].Consult().Answer()
				if nc := trs[0].Complete(); nc == nil || nc.Linkedid() != call.Linkedid() {
					t.Errorf("completed transfer %v", nc)
				}
				if len(h.s.Transfers()) != 0 {
					t.Error("transfer still pending")
				}
			},
		},
		{
			name: "Park",
			act: func(h *harness, a, b string) []msg {
				return h.ami.action("p", "Action", "Park", "Channel", a)
			},
			reply: "Park successful\n",
			check: func(t *testing.T, h *harness, call *Call, ami []msg) {
				if p := findEvent(ami, "ParkedCall"); p == nil || p.get("ParkingSpace") != "701" || p.get("ParkerDialString") != "PJSIP/1002" {
					t.Errorf("ParkedCall %v", p)
				}
			},
		},
		{
			name: "MixMonitor",
			act: func(h *harness, a, b string) []msg {
				return h.ami.action("m", "Action", "MixMonitor", "Channel", a, "File", "call.wav")
			},
			check: func(t *testing.T, h *harness, call *Call, ami []msg) {
				if findEvent(ami, "MixMonitorStart") == nil {
					t.Error("no MixMonitorStart")
				}
				ms := h.ami.action("s", "Action", "StopMixMonitor", "Channel", call.callerName())
				if ms[0].get("Response") != "Success" || len(ms[0]) != 2 {
					t.Errorf("StopMixMonitor %v", ms)
				}
				waitEvent(t, h.ami, isEvent("MixMonitorStop"))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			call := h.s.Dial("1001", "1002")
			call.Answer()
			chs := call.Channels()
			ms := tc.act(h, chs[0], chs[1])
			if ms[0].get("Response") != "Success" || ms[0].get("Message") != tc.reply {
				t.Fatalf("reply %v, want Success %q", ms, tc.reply)
			}
			ami, ari := h.phase()
			tc.check(t, h, call, ami)
			more, moreARI := h.phase()
			checkDocumented(t, append(ami, more...), append(ari, moreARI...))
			for _, c := range h.s.Truth().Channels {
				if cc := h.s.CallOf(c.Name); cc != nil {
					cc.Hangup()
				}
			}
			if n := h.s.Channels(); n != 0 {
				t.Errorf("%d channels left", n)
			}
		})
	}
}

func TestBridgeAction(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.s.CallApp("1001", "600")
	b := h.s.CallApp("1002", "600")
	ms := h.ami.action("b", "Action", "Bridge", "Channel1", a.callerName(), "Channel2", strings.TrimSuffix(b.callerName(), "1"))
	if ms[0].get("Message") != "Channels have been bridged" {
		t.Fatalf("Bridge: %v", ms)
	}
	ami, _ := h.phase()
	if got := amiTypes(ami, isBridgeEvent); !subsequence(got, []string{"BridgeCreate", "BridgeEnter", "BridgeEnter"}) {
		t.Errorf("bridge events %v", got)
	}
	tr := h.s.Truth()
	if len(tr.Bridges) != 1 || len(tr.Bridges[0].Channels) != 2 {
		t.Fatalf("bridges %+v", tr.Bridges)
	}
	h.s.CallOf(tr.Channels[0].Name).Hangup()
	if h.s.Channels() != 0 {
		t.Error("channels left")
	}
}

func isBridgeEvent(m msg) bool { return strings.HasPrefix(m.get("Event"), "Bridge") }

func TestQueuePauseAction(t *testing.T) {
	h := newHarness(t, Config{})
	ms := h.ami.action("q", "Action", "QueuePause", "Interface", "PJSIP/1004", "Paused", "true", "Reason", "break")
	if ms[0].get("Message") != "Interface paused successfully" {
		t.Fatalf("QueuePause: %v", ms)
	}
	p := waitEvent(t, h.ami, isEvent("QueueMemberPause"))
	if p.get("Paused") != "1" || p.get("PausedReason") != "break" {
		t.Errorf("QueueMemberPause %v", p)
	}
	ms = h.ami.action("q2", "Action", "QueuePause", "Interface", "PJSIP/1004", "Paused", "false")
	if ms[0].get("Message") != "Interface unpaused successfully" {
		t.Fatalf("QueuePause: %v", ms)
	}
	waitEvent(t, h.ami, isEvent("QueueMemberPause", "Paused", "0"))
}

// callerName is the name of the call's first channel, live or not.
func (c *Call) callerName() string { return c.a.name }
