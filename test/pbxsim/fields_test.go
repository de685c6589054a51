package pbxsim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Field lists of the messages the captures do not contain, taken from
// Asterisk's source (see docs/asterisk-fields.md, which must list the
// same). Each entry is one allowed variant, without Event/Privilege.
func snap(p string) []string {
	return []string{p + "Channel", p + "ChannelState", p + "ChannelStateDesc", p + "CallerIDNum", p + "CallerIDName",
		p + "ConnectedLineNum", p + "ConnectedLineName", p + "Language", p + "AccountCode", p + "Context",
		p + "Exten", p + "Priority", p + "Uniqueid", p + "Linkedid"}
}

func bstate(p string) []string {
	return []string{p + "BridgeUniqueid", p + "BridgeType", p + "BridgeTechnology", p + "BridgeCreator",
		p + "BridgeName", p + "BridgeNumChannels", p + "BridgeVideoSourceMode"}
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var queueMemberFields = []string{"Queue", "MemberName", "Interface", "StateInterface", "Membership", "Penalty",
	"CallsTaken", "LastCall", "LastPause", "LoginTime", "InCall", "Status", "Paused", "PausedReason",
	"Ringinuse", "Wrapuptime"}

var parkedFields = []string{"ParkerDialString", "Parkinglot", "ParkingSpace", "ParkingTimeout", "ParkingDuration"}

var documentedAMI = map[string][][]string{
	"Hold":               {cat(snap(""), []string{"MusicClass"}), snap("")},
	"Unhold":             {snap("")},
	"DTMFBegin":          {cat(snap(""), []string{"Digit", "Direction"})},
	"DTMFEnd":            {cat(snap(""), []string{"Digit", "DurationMs", "Direction"})},
	"BlindTransfer":      {cat([]string{"Result"}, snap("Transferer"), snap("Transferee"), bstate(""), []string{"IsExternal", "Context", "Extension"})},
	"AttendedTransfer":   {cat([]string{"Result"}, snap("OrigTransferer"), bstate("Orig"), snap("SecondTransferer"), bstate("Second"), snap("Transferee"), snap("TransferTarget"), []string{"IsExternal", "DestType", "DestBridgeUniqueid"})},
	"LocalBridge":        {cat(snap("LocalOne"), snap("LocalTwo"), []string{"Context", "Exten", "LocalOptimization"})},
	"QueueCallerJoin":    {cat(snap(""), []string{"Queue", "Position", "Count"})},
	"QueueCallerLeave":   {cat(snap(""), []string{"Queue", "Position", "Count"})},
	"QueueCallerAbandon": {cat(snap(""), []string{"Queue", "Position", "OriginalPosition", "HoldTime"})},
	"AgentCalled":        {cat(snap(""), snap("Dest"), []string{"Queue", "Interface", "MemberName"})},
	"AgentConnect":       {cat(snap(""), snap("Dest"), []string{"Queue", "Interface", "MemberName", "HoldTime", "RingTime"})},
	"AgentComplete":      {cat(snap(""), snap("Dest"), []string{"Queue", "Interface", "MemberName", "HoldTime", "TalkTime", "Reason"})},
	"AgentRingNoAnswer":  {cat(snap(""), snap("Dest"), []string{"Queue", "Interface", "MemberName", "RingTime"})},
	"QueueMemberPause":   {queueMemberFields},
	"QueueMemberStatus":  {queueMemberFields},
	"OriginateResponse": {
		{"ActionID", "Response", "Channel", "Context", "Exten", "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"},
		{"Response", "Channel", "Context", "Exten", "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"},
		{"ActionID", "Response", "Channel", "Application", "Data", "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"},
		{"Response", "Channel", "Application", "Data", "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"},
	},
	"ParkedCall":       {cat(snap("Parkee"), parkedFields)},
	"ParkedCallGiveUp": {cat(snap("Parkee"), parkedFields)},
	"UnParkedCall":     {cat(snap("Parkee"), parkedFields)},
	"MixMonitorStart":  {snap("")},
	"MixMonitorStop":   {snap("")},
	// Dial events of an originated channel have no calling channel.
	"DialBegin": {cat(snap("Dest"), []string{"DialString"})},
	"DialState": {cat(snap("Dest"), []string{"DialStatus"})},
	"DialEnd":   {cat(snap("Dest"), []string{"DialStatus"})},
}

var documentedARI = map[string][][]string{
	"ChannelHold":            {{"type", "timestamp", "musicclass", "channel", "asterisk_id", "application"}},
	"ChannelUnhold":          {{"type", "timestamp", "channel", "asterisk_id", "application"}},
	"ChannelDtmfReceived":    {{"type", "timestamp", "digit", "duration_ms", "channel", "asterisk_id", "application"}},
	"BridgeBlindTransfer":    {{"type", "timestamp", "channel", "exten", "context", "result", "is_external", "transferee", "bridge", "asterisk_id", "application"}},
	"BridgeAttendedTransfer": {{"type", "timestamp", "transferer_first_leg", "transferer_second_leg", "result", "is_external", "transferee", "transfer_target", "transferer_first_leg_bridge", "transferer_second_leg_bridge", "destination_type", "destination_bridge", "asterisk_id", "application"}},
	"Dial":                   {{"type", "timestamp", "dialstatus", "forward", "dialstring", "peer", "asterisk_id", "application"}},
}

var (
	capOnce    sync.Once
	capAMI     map[string]map[string]bool // type -> field lists
	capARI     map[string]map[string]bool
	capLoadErr error
)

func loadCapturedVariants(t *testing.T) {
	capOnce.Do(func() {
		capAMI, capARI = map[string]map[string]bool{}, map[string]map[string]bool{}
		for _, m := range loadMessages(t, allCaptures...) {
			ty := msgType(m)
			if capAMI[ty] == nil {
				capAMI[ty] = map[string]bool{}
			}
			capAMI[ty][names(m)] = true
		}
		b, err := os.ReadFile(filepath.Join(ariCapDir, "ari-ws.messages.jsonl"))
		if err != nil {
			capLoadErr = err
			return
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var fr struct{ Text string }
			if json.Unmarshal([]byte(l), &fr) != nil || !strings.HasPrefix(fr.Text, "{") {
				continue
			}
			m := parseARI(t, fr.Text)
			if capARI[m.typ()] == nil {
				capARI[m.typ()] = map[string]bool{}
			}
			capARI[m.typ()][strings.Join(m.keys, ",")] = true
		}
	})
	if capLoadErr != nil {
		t.Fatal(capLoadErr)
	}
}

// checkDocumented asserts that every AMI event and ARI event has a field
// list Asterisk produced: a captured variant, else a documented one.
func checkDocumented(t *testing.T, ami []msg, ari []ariMsg) {
	t.Helper()
	loadCapturedVariants(t)
	for _, m := range ami {
		ty := msgType(m)
		if m.get("Event") == "" || capAMI[ty][names(m)] {
			continue // responses are checked by the action tests
		}
		ok := false
		for _, v := range documentedAMI[m.get("Event")] {
			if names(m) == "Event,Privilege,"+strings.Join(v, ",") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: field list %s is neither captured nor documented", ty, names(m))
		}
	}
	for _, m := range ari {
		k := strings.Join(m.keys, ",")
		if capARI[m.typ()][k] {
			continue
		}
		ok := false
		for _, v := range documentedARI[m.typ()] {
			if k == strings.Join(v, ",") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("ARI %s: keys %s are neither captured nor documented", m.typ(), k)
		}
	}
}
