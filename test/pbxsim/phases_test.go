package pbxsim

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// stable are the keys whose values are deterministic for a replay of the
// capture run on a fresh simulator (same extensions, same call order).
var stable = []string{"Event", "Response", "Privilege", "Channel", "ChannelState", "ChannelStateDesc",
	"CallerIDNum", "CallerIDName", "ConnectedLineNum", "ConnectedLineName", "Language", "Context", "Exten",
	"Priority", "Extension", "Application", "AppData", "DestChannel", "DestChannelState", "DestExten",
	"DestConnectedLineNum", "DialStatus", "DialString", "Cause", "Cause-txt", "TechCause", "BridgeType",
	"BridgeTechnology", "BridgeNumChannels", "BridgeCreator", "Device", "State", "Peer", "PeerStatus",
	"ContactStatus", "URI", "AOR", "EndpointName", "RoundtripUsec", "Source", "Destination", "CallerID",
	"DestinationChannel", "LastApplication", "LastData", "Disposition", "AccountID", "RemoteAddress",
	"Service", "Severity", "Challenge", "UsingPassword", "ActionID", "Message", "EventList", "ListItems",
	"Endpoint", "ViaPort", "Uri", "UserAgent", "Status", "Registered", "Username", "Domain", "Shutdown", "Restart"}

// noise is what the simulator deliberately does not model (VarSet details,
// RTCP reports, app_queue) or what belongs to other sessions.
func noise(m msg) bool {
	switch m.get("Event") {
	case "VarSet", "RTCPSent", "QueueMemberStatus":
		return true
	case "Registry":
		return m.get("Status") == "Registered" // the trunk's own timer, not the phase
	case "DeviceStateChange":
		return strings.HasPrefix(m.get("Device"), "Queue:")
	case "SuccessfulAuth":
		return m.get("Service") == "AMI"
	}
	return m.get("ActionID") == "mark"
}

// filter drops noise and sorts each run of adjacent DeviceStateChange
// events by device: Asterisk publishes those from racing threads.
func filter(ms []msg, drop func(msg) bool) []msg {
	var out []msg
	for _, m := range ms {
		if !noise(m) && (drop == nil || !drop(m)) {
			out = append(out, m)
		}
	}
	isDSC := func(i int) bool { return i < len(out) && out[i].get("Event") == "DeviceStateChange" }
	for i := 0; i < len(out); i++ {
		j := i
		for isDSC(j) {
			j++
		}
		slices.SortStableFunc(out[i:j], func(a, b msg) int { return strings.Compare(a.get("Device"), b.get("Device")) })
		i = j
	}
	return out
}

func comparePhase(t *testing.T, phase string, got, want []msg, skip ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d messages, capture has %d", phase, len(got), len(want))
		for i := 0; i < max(len(got), len(want)); i++ {
			var g, w string
			if i < len(got) {
				g = msgType(got[i])
			}
			if i < len(want) {
				w = msgType(want[i])
			}
			t.Logf("  %2d got %-30s want %s", i, g, w)
		}
		return
	}
	for i := range got {
		if names(got[i]) != names(want[i]) {
			t.Errorf("%s #%d %s: fields\n got %s\nwant %s", phase, i, msgType(want[i]), names(got[i]), names(want[i]))
			continue
		}
	keys:
		for _, k := range stable {
			for _, s := range skip {
				if s == k {
					continue keys
				}
			}
			if got[i].get(k) != want[i].get(k) {
				t.Errorf("%s #%d %s: %s=%q, capture %q", phase, i, msgType(want[i]), k, got[i].get(k), want[i].get(k))
			}
		}
	}
}

// TestPhasesMatchCapture replays the capture run's scenarios in order on a
// fresh simulator and compares the events session message by message.
func TestPhasesMatchCapture(t *testing.T) {
	s, addr := startServer(t, Config{})
	ev := dial(t, addr)
	ev.send("Action", "Login", "ActionID", "ami-events-1", "Username", "monitor", "Secret", "monitor-secret", "Events", "on")
	last := 0
	mark := func() []msg { // everything received since the previous mark
		ev.action("mark", "Action", "Ping")
		out := ev.seen[last:]
		last = len(ev.seen)
		return out
	}
	capture := func(phase string) []msg {
		return parseRaw(strings.TrimPrefix(readCapture(t, "by-phase/"+phase+".ami.raw"), banner))
	}

	comparePhase(t, "connect", filter(mark(), nil), filter(capture("connect"), nil))

	for _, e := range []string{"1001", "1002", "1003", "1004"} {
		s.Register(e)
	}
	only1001 := func(m msg) bool {
		return !strings.Contains(m.get("AccountID")+m.get("Peer")+m.get("Device")+m.get("URI"), "1001")
	}
	comparePhase(t, "register", filter(mark(), only1001), filter(capture("register"), only1001))

	c := s.Dial("1001", "1002")
	c.Answer()
	c.Hangup()
	comparePhase(t, "call_answered", filter(mark(), nil), filter(capture("call_answered"), nil))

	s.CallApp("1001", "600").Hangup()
	comparePhase(t, "call_echo", filter(mark(), nil), filter(capture("call_echo"), nil))

	s.Dial("1001", "1003").NoAnswer()
	comparePhase(t, "call_noanswer", filter(mark(), nil), filter(capture("call_noanswer"), nil))

	// The captured callee rejected before it ever rang; the API rings first.
	s.Dial("1001", "1004").Busy()
	ringing := func(m msg) bool {
		e := m.get("Event")
		return e == "Newstate" || e == "DialState" || e == "DeviceStateChange"
	}
	comparePhase(t, "call_busy", filter(mark(), ringing), filter(capture("call_busy"), ringing),
		"DestChannelState", "ChannelState", "ChannelStateDesc")

	s.CallApp("1001", "700").Hangup()
	comparePhase(t, "call_stasis", filter(mark(), nil), filter(capture("call_stasis"), nil))

	s.Unregister("1003")
	comparePhase(t, "unregister", filter(mark(), nil), filter(capture("unregister"), nil))

	s.Register("1004") // re-REGISTER, then let it expire
	s.Expire("1004")
	ev.action("ami-events-4", "Action", "PJSIPShowContacts")
	comparePhase(t, "expiry", filter(mark(), nil), filter(capture("expiry"), nil))

	ev.action("ami-events-2", "Action", "PJSIPUnregister", "Registration", "provider-reg")
	ev.action("ami-events-3", "Action", "PJSIPRegister", "Registration", "provider-reg")
	comparePhase(t, "trunk_register", filter(mark(), nil), filter(capture("trunk_register"), nil))

	s.Close()
	n := len(ev.seen)
	ev.drain(time.Second)
	comparePhase(t, "shutdown", ev.seen[n:], capture("shutdown"))
}
