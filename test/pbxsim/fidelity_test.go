package pbxsim

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

var allCaptures = []string{"ami-events.messages.jsonl", "ami-actions-idle.messages.jsonl",
	"ami-actions-incall.messages.jsonl", "ami-badlogin.messages.jsonl"}

// enumKeys hold values that must be among those Asterisk produced for the
// same message type (placeholders, spellings, fixed constants).
var enumKeys = []string{"Privilege", "ChannelStateDesc", "DestChannelStateDesc", "Cause-txt", "Language",
	"Context", "BridgeType", "BridgeTechnology", "BridgeCreator", "BridgeName", "BridgeVideoSourceMode",
	"Severity", "Service", "EventVersion", "UsingPassword", "RoundtripUsec", "ObjectType", "ViaAddr",
	"QualifyTimeout", "Qualify2xxOnly", "PruneOnBoot", "AuthenticateQualify", "UserAgent", "QualifyFrequency",
	"Transport", "AMAFlags", "Disposition", "ContactStatus", "PeerStatus", "ChannelType", "Username", "Domain",
	"Message", "Ping", "Shutdown", "Restart", "DeviceState", "Challenge", "AccountCode",
	"ClientUri", "ServerUri", "MaxRetries", "Expiration", "DestinationContext", "AMIversion", "AsteriskVersion"}

// scenario drives every behaviour of the simulator in the order of the
// capture run and returns what an events session and an actions session saw.
func scenario(t *testing.T) (evs, acts, bad []msg) {
	s, addr := startServer(t, Config{})
	ev := dial(t, addr)
	ev.login("on")
	act := dial(t, addr)
	act.login("off")

	for _, e := range []string{"1001", "1002", "1003", "1004"} {
		s.Register(e)
	}
	s.RegisterTrunk()
	for _, a := range []string{"Ping", "CoreSettings", "CoreStatus", "PJSIPShowEndpoints", "PJSIPShowContacts",
		"PJSIPShowRegistrationsOutbound", "CoreShowChannels", "NoSuchAction"} {
		act.action("idle-"+a, "Action", a)
	}
	c := s.Dial("1001", "1002")
	act.action("ring-ch", "Action", "CoreShowChannels")
	c.Answer()
	act.action("up-ch", "Action", "CoreShowChannels")
	act.action("up-ep", "Action", "PJSIPShowEndpoints")
	c.Hangup()
	e := s.CallApp("1001", "600")
	act.action("echo-ch", "Action", "CoreShowChannels")
	e.Hangup()
	s.Dial("1001", "1003").NoAnswer()
	s.Dial("1001", "1004").Busy()
	s.Dial("1002", "1003").Hangup()
	s.CallApp("1001", "700").Hangup()
	s.Unregister("1003")
	s.Register("1004")
	s.Expire("1004")
	ev.action("evc", "Action", "PJSIPShowContacts")
	ev.action("evu", "Action", "PJSIPUnregister", "Registration", "provider-reg")
	ev.action("evr", "Action", "PJSIPRegister", "Registration", "provider-reg")
	act.action("logoff", "Action", "Logoff")

	b := dial(t, addr)
	b.action("bad-1", "Action", "Ping")
	b.action("bad-2", "Action", "Login", "Username", "monitor", "Secret", "nope")

	s.Close()
	ev.drain(time.Second)
	return ev.seen, act.seen, b.seen
}

// TestFidelityAgainstCaptures checks every message the simulator produced:
// its field-name list must equal the field list of a captured message of the
// same type, and enum-like values must be ones Asterisk produced.
func TestFidelityAgainstCaptures(t *testing.T) {
	caps := loadMessages(t, allCaptures...)
	variants := map[string]map[string]bool{}
	values := map[string]map[string]bool{} // type|key -> values
	for _, m := range caps {
		ty := msgType(m)
		if variants[ty] == nil {
			variants[ty] = map[string]bool{}
		}
		variants[ty][names(m)] = true
		for _, f := range m {
			for _, k := range []string{ty + "|" + f.k, "*|" + f.k} {
				if values[k] == nil {
					values[k] = map[string]bool{}
				}
				values[k][f.v] = true
			}
		}
	}
	// Captured messages answer ActionIDs of other names; normalise values
	// that legitimately differ per run before comparing.
	volatile := map[string]bool{"Message": true}

	evs, acts, bad := scenario(t)
	all := append(append(append([]msg{}, evs...), acts...), bad...)
	seen := map[string]int{}
	for _, m := range all {
		ty := msgType(m)
		seen[ty]++
		if variants[ty] == nil {
			t.Errorf("%s: message type never seen in captures", ty)
			continue
		}
		if !variants[ty][names(m)] {
			t.Errorf("%s: field list %q matches no captured variant", ty, names(m))
		}
		for _, k := range enumKeys {
			v := m.get(k)
			if !hasKey(m, k) || volatile[k] && ty == "Response:Error" {
				continue
			}
			if !values[ty+"|"+k][v] && !values["*|"+k][v] {
				t.Errorf("%s: %s=%q not among captured values %v", ty, k, v, keys(values[ty+"|"+k]))
			}
		}
	}
	// Every type listed here must have been exercised.
	for _, ty := range []string{"Event:FullyBooted", "Event:SuccessfulAuth", "Event:ChallengeSent", "Event:PeerStatus",
		"Event:DeviceStateChange", "Event:ContactStatus", "Event:Registry", "Event:Newchannel", "Event:VarSet",
		"Event:Newexten", "Event:NewConnectedLine", "Event:DialBegin", "Event:Newstate", "Event:DialState",
		"Event:DialEnd", "Event:BridgeCreate", "Event:BridgeEnter", "Event:BridgeLeave", "Event:BridgeDestroy",
		"Event:HangupRequest", "Event:SoftHangupRequest", "Event:Hangup", "Event:Cdr", "Event:ContactList",
		"Event:ContactListComplete", "Event:EndpointList", "Event:EndpointListComplete",
		"Event:OutboundRegistrationDetail", "Event:OutboundRegistrationDetailComplete", "Event:CoreShowChannel",
		"Event:CoreShowChannelsComplete", "Event:RequestBadFormat", "Event:RequestNotAllowed",
		"Event:InvalidPassword", "Event:Shutdown", "Response:Success", "Response:Error", "Response:Goodbye"} {
		if seen[ty] == 0 {
			t.Errorf("%s never emitted by the scenario", ty)
		}
	}

	// Pairwise constants: Cause -> Cause-txt and ChannelState -> Desc as captured.
	pairs := map[string]string{}
	for _, m := range caps {
		if hasKey(m, "Cause-txt") {
			pairs["cause"+m.get("Cause")] = m.get("Cause-txt")
		}
		if hasKey(m, "ChannelState") {
			pairs["state"+m.get("ChannelState")] = m.get("ChannelStateDesc")
		}
	}
	for _, m := range all {
		if hasKey(m, "Cause-txt") && pairs["cause"+m.get("Cause")] != m.get("Cause-txt") {
			t.Errorf("Cause %s with Cause-txt %q", m.get("Cause"), m.get("Cause-txt"))
		}
		if hasKey(m, "ChannelState") && pairs["state"+m.get("ChannelState")] != m.get("ChannelStateDesc") {
			t.Errorf("ChannelState %s with desc %q", m.get("ChannelState"), m.get("ChannelStateDesc"))
		}
	}

	chanRe := regexp.MustCompile(`^PJSIP/\d+-[0-9a-f]{8}$`)
	uidRe := regexp.MustCompile(`^\d{10}\.\d+$`)
	for _, m := range all {
		if v := m.get("Channel"); hasKey(m, "Channel") && m.get("Event") != "Cdr" && !chanRe.MatchString(v) {
			t.Errorf("bad channel name %q", v)
		}
		if hasKey(m, "Uniqueid") && !uidRe.MatchString(m.get("Uniqueid")) {
			t.Errorf("bad Uniqueid %q", m.get("Uniqueid"))
		}
		if m.get("Event") == "EndpointList" && m.get("Contacts") != "" && !strings.HasSuffix(m.get("Contacts"), ",") {
			t.Errorf("EndpointList Contacts without trailing comma: %q", m.get("Contacts"))
		}
		if m.get("Event") == "ContactStatus" && m.get("RoundtripUsec") != "0" {
			t.Errorf("ContactStatus RoundtripUsec %q", m.get("RoundtripUsec"))
		}
	}
}

func hasKey(m msg, k string) bool {
	for _, f := range m {
		if f.k == k {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
