// Package normalize turns AMI messages into pbxpulse events: the one place
// that knows Asterisk's field names and spellings.
package normalize

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/staskobzar/goami2"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/ari"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Classifier decides whether a PJSIP endpoint is a trunk. The defaults are
// those of the monitors pbxpulse replaces: a trunk has outbound auth or an
// outbound registration; an endpoint that authenticates nobody and whose
// contact has no user part is a provider reached by address. TrunkPattern,
// when set, overrides by name.
type Classifier struct {
	TrunkPattern     *regexp.Regexp
	ExtensionPattern *regexp.Regexp
	// registrations seen (server URI host:port -> true, endpoint name -> true)
	regServers   map[string]bool
	regEndpoints map[string]bool
}

// NoteRegistration records an outbound registration for classification.
func (c *Classifier) NoteRegistration(m *goami2.Message) {
	if c.regServers == nil {
		c.regServers, c.regEndpoints = map[string]bool{}, map[string]bool{}
	}
	if e := m.Field("Endpoint"); e != "" {
		c.regEndpoints[e] = true
	}
	if h := uriHostPort(m.Field("ServerUri")); h != "" {
		c.regServers[h] = true
	}
}

// override applies the tenant's name patterns to a default classification.
func (c *Classifier) override(name string, def pb.EndpointKind) pb.EndpointKind {
	switch {
	case c.TrunkPattern != nil && c.TrunkPattern.MatchString(name):
		return pb.EndpointKind_ENDPOINT_KIND_TRUNK
	case c.ExtensionPattern != nil && c.ExtensionPattern.MatchString(name):
		return pb.EndpointKind_ENDPOINT_KIND_EXTENSION
	}
	return def
}

// Kind classifies an EndpointList item.
func (c *Classifier) Kind(m *goami2.Message) pb.EndpointKind {
	name := m.Field("ObjectName")
	return c.override(name, c.pjsipKind(m))
}

func (c *Classifier) pjsipKind(m *goami2.Message) pb.EndpointKind {
	name := m.Field("ObjectName")
	switch {
	case strings.TrimSpace(m.Field("OutboundAuths")) != "":
		return pb.EndpointKind_ENDPOINT_KIND_TRUNK
	case c.regEndpoints[name]:
		return pb.EndpointKind_ENDPOINT_KIND_TRUNK
	}
	uris := contactURIs(m.Field("Contacts"))
	for _, u := range uris {
		if c.regServers[uriHostPort(u)] {
			return pb.EndpointKind_ENDPOINT_KIND_TRUNK
		}
	}
	if strings.TrimSpace(m.Field("Auths")) == "" && len(uris) > 0 && !strings.Contains(uris[0], "@") {
		return pb.EndpointKind_ENDPOINT_KIND_TRUNK
	}
	return pb.EndpointKind_ENDPOINT_KIND_EXTENSION
}

// Event converts one unsolicited AMI event into an event with its payload,
// refs and, when the PBX stamped it, pbx_time set; the caller fills in the
// rest of the envelope. It returns nil for messages pbxpulse does not track
// (VarSet, Newexten, RTCPSent, security events of other sessions, ...).
func Event(m *goami2.Message) *pb.Event {
	r := &pb.Event{}
	switch m.Field("Event") {
	case "ContactStatus":
		ep := m.Field("EndpointName")
		rtt, known := parseRTT(m.Field("RoundtripUsec"))
		r.Payload = &pb.Event_ContactStatus{ContactStatus: &pb.ContactStatus{
			Endpoint: ep, Aor: m.Field("AOR"), Uri: m.Field("URI"), Status: m.Field("ContactStatus"),
			RoundtripUsec: rtt, RoundtripKnown: known,
		}}
		r.Refs = &pb.PbxRefs{Endpoint: ep}
	case "ContactStatusDetail":
		// Listed by PJSIPShowEndpoint/PJSIPShowAors: the contact with its
		// user agent, via address and expiry.
		ep := m.Field("EndpointName")
		rtt, known := parseRTT(m.Field("RoundtripUsec"))
		exp, _ := strconv.ParseInt(m.Field("RegExpire"), 10, 64)
		r.Payload = &pb.Event_ContactStatus{ContactStatus: &pb.ContactStatus{
			Endpoint: ep, Aor: m.Field("AOR"), Uri: m.Field("URI"), Status: m.Field("Status"),
			RoundtripUsec: rtt, RoundtripKnown: known, UserAgent: m.Field("UserAgent"),
			ViaAddress: m.Field("ViaAddress"), ExpirationTime: exp,
		}}
		r.Refs = &pb.PbxRefs{Endpoint: ep}
	case "DeviceStateChange":
		dev := m.Field("Device")
		r.Payload = &pb.Event_DeviceState{DeviceState: &pb.DeviceState{Device: dev, State: m.Field("State")}}
		r.Refs = &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(dev)}
	case "Registry":
		// PJSIP names the registration by its client URI; chan_sip and IAX2
		// by user and host. Cause is set on failures.
		r.Payload = &pb.Event_TrunkRegistration{TrunkRegistration: &pb.TrunkRegistration{
			Technology: technology(m.Field("ChannelType")),
			ClientUri:  m.Field("Username"), ServerUri: m.Field("Domain"),
			Status: m.Field("Status"), Cause: m.Field("Cause"),
		}}
	case "Newchannel":
		ch := channel(m)
		r.Payload = &pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{Channel: ch}}
		r.Refs = chanRefs(ch)
	case "Newstate":
		ch := channel(m)
		r.Payload = &pb.Event_ChannelStateChanged{ChannelStateChanged: &pb.ChannelStateChanged{Channel: ch}}
		r.Refs = chanRefs(ch)
	case "NewCallerid", "NewConnectedLine":
		ch := channel(m)
		r.Payload = &pb.Event_CallerIdChanged{CallerIdChanged: &pb.CallerIdChanged{Channel: ch}}
		r.Refs = chanRefs(ch)
	case "Hangup":
		ch := channel(m)
		cause, _ := strconv.Atoi(m.Field("Cause"))
		r.Payload = &pb.Event_ChannelHungUp{ChannelHungUp: &pb.ChannelHungUp{
			Channel: ch, Cause: int32(cause), CauseText: m.Field("Cause-txt"),
		}}
		r.Refs = chanRefs(ch)
	case "HangupRequest", "SoftHangupRequest":
		ch := channel(m)
		cause, _ := strconv.Atoi(m.Field("Cause"))
		r.Payload = &pb.Event_ChannelHangupRequest{ChannelHangupRequest: &pb.ChannelHangupRequest{
			Channel: ch, Cause: int32(cause), Soft: m.Field("Event") == "SoftHangupRequest",
		}}
		r.Refs = chanRefs(ch)
	case "DialBegin":
		ch, dest := channel(m), destChannel(m)
		r.Payload = &pb.Event_DialBegin{DialBegin: &pb.DialBegin{Caller: ch, Callee: dest, DialString: m.Field("DialString")}}
		r.Refs = chanRefs(ch)
	case "DialEnd":
		ch, dest := channel(m), destChannel(m)
		r.Payload = &pb.Event_DialEnd{DialEnd: &pb.DialEnd{Caller: ch, Callee: dest, DialStatus: m.Field("DialStatus")}}
		r.Refs = chanRefs(ch)
	case "BridgeEnter":
		ch := channel(m)
		id := m.Field("BridgeUniqueid")
		ch.BridgeId = id
		r.Payload = &pb.Event_BridgeEnter{BridgeEnter: &pb.BridgeEnter{
			BridgeId: id, BridgeType: m.Field("BridgeType"), Channel: ch, NumChannels: atou(m.Field("BridgeNumChannels")),
		}}
		r.Refs = chanRefs(ch)
	case "BridgeLeave":
		ch := channel(m)
		id := m.Field("BridgeUniqueid")
		r.Payload = &pb.Event_BridgeLeave{BridgeLeave: &pb.BridgeLeave{BridgeId: id, Channel: ch, NumChannels: atou(m.Field("BridgeNumChannels"))}}
		r.Refs = chanRefs(ch)
		r.Refs.BridgeId = id
	case "BridgeCreate", "BridgeDestroy":
		action := pb.BridgeLifecycle_ACTION_CREATED
		if m.Field("Event") == "BridgeDestroy" {
			action = pb.BridgeLifecycle_ACTION_DESTROYED
		}
		b := bridge(m, "")
		b.Action = action
		r.Payload = &pb.Event_BridgeLifecycle{BridgeLifecycle: b}
		r.Refs = &pb.PbxRefs{BridgeId: b.BridgeId}
	case "Hold", "Unhold":
		ch := channel(m)
		r.Payload = &pb.Event_ChannelHold{ChannelHold: &pb.ChannelHold{
			Channel: ch, Held: m.Field("Event") == "Hold", MusicClass: m.Field("MusicClass"),
		}}
		r.Refs = chanRefs(ch)
	case "DTMFEnd":
		ch := channel(m)
		r.Payload = &pb.Event_Dtmf{Dtmf: &pb.Dtmf{
			Channel: ch, Digit: m.Field("Digit"), DurationMs: atou(m.Field("DurationMs")), Direction: m.Field("Direction"),
		}}
		r.Refs = chanRefs(ch)
	case "VarSet":
		ch := channel(m)
		if ch.Uniqueid == "" {
			return nil // a global variable, not a channel's
		}
		r.Payload = &pb.Event_ChannelVarSet{ChannelVarSet: &pb.ChannelVarSet{Channel: ch, Variable: m.Field("Variable"), Value: m.Field("Value")}}
		r.Refs = chanRefs(ch)
	case "Rename":
		// Rename is not a snapshot event: it names the old channel, the new
		// name and the Uniqueid, which does not change.
		ch := &pb.Channel{Name: m.Field("Channel"), Uniqueid: m.Field("Uniqueid")}
		r.Payload = &pb.Event_ChannelRenamed{ChannelRenamed: &pb.ChannelRenamed{Channel: ch, NewName: m.Field("Newname")}}
		r.Refs = chanRefs(ch)
	case "LocalBridge":
		one, two := channelWithPrefix(m, "LocalOne"), channelWithPrefix(m, "LocalTwo")
		r.Payload = &pb.Event_LocalBridge{LocalBridge: &pb.LocalBridge{
			LocalOne: one, LocalTwo: two, Context: m.Field("Context"), Exten: m.Field("Exten"),
			Optimization: yes(m.Field("LocalOptimization")),
		}}
		r.Refs = chanRefs(one)
	case "BlindTransfer":
		t := &pb.Transfer{
			Kind: pb.Transfer_KIND_BLIND, Result: m.Field("Result"),
			Transferer: optChannel(m, "Transferer"), Transferee: optChannel(m, "Transferee"),
			Context: m.Field("Context"), Extension: m.Field("Extension"), IsExternal: yes(m.Field("IsExternal")),
			BridgeId: m.Field("BridgeUniqueid"),
		}
		r.Payload = &pb.Event_Transfer{Transfer: t}
		r.Refs = transferRefs(t)
	case "AttendedTransfer":
		t := &pb.Transfer{
			Kind: pb.Transfer_KIND_ATTENDED, Result: m.Field("Result"),
			Transferer: optChannel(m, "OrigTransferer"), SecondTransferer: optChannel(m, "SecondTransferer"),
			Transferee: optChannel(m, "Transferee"), Target: optChannel(m, "TransferTarget"),
			IsExternal: yes(m.Field("IsExternal")), DestType: m.Field("DestType"),
			DestBridgeId: m.Field("DestBridgeUniqueid"), DestApp: m.Field("DestApp"),
			BridgeId: m.Field("OrigBridgeUniqueid"),
		}
		r.Payload = &pb.Event_Transfer{Transfer: t}
		r.Refs = transferRefs(t)
	case "PeerStatus":
		peer := m.Field("Peer") // "PJSIP/1001", "SIP/trunk", "IAX2/iaxtrunk"
		_, name, ok := strings.Cut(peer, "/")
		if !ok {
			name = peer
		}
		ms, _ := strconv.ParseInt(m.Field("Time"), 10, 64)
		r.Payload = &pb.Event_PeerStatus{PeerStatus: &pb.PeerStatus{
			Name: name, Technology: technology(m.Field("ChannelType")), Status: m.Field("PeerStatus"),
			Address: m.Field("Address"), RoundtripMs: ms, Cause: m.Field("Cause"),
		}}
		r.Refs = &pb.PbxRefs{Endpoint: name}
	case "ExtensionStatus":
		r.Payload = &pb.Event_ExtensionStatus{ExtensionStatus: ExtensionStatus(m)}
		r.Refs = &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(m.Field("Hint"))}
	case "QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPenalty", "QueueMemberRinginuse":
		qm := QueueMember(m)
		qm.Removed = m.Field("Event") == "QueueMemberRemoved"
		r.Payload = &pb.Event_QueueMember{QueueMember: qm}
		r.Refs = &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(qm.StateInterface)}
	case "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon":
		ch := channel(m)
		action := map[string]pb.QueueCaller_Action{
			"QueueCallerJoin": pb.QueueCaller_ACTION_JOIN, "QueueCallerLeave": pb.QueueCaller_ACTION_LEAVE,
			"QueueCallerAbandon": pb.QueueCaller_ACTION_ABANDON,
		}[m.Field("Event")]
		r.Payload = &pb.Event_QueueCaller{QueueCaller: &pb.QueueCaller{
			Action: action, Queue: m.Field("Queue"), Channel: ch, Position: atou(m.Field("Position")),
			Count: atou(m.Field("Count")), OriginalPosition: atou(m.Field("OriginalPosition")), HoldTime: atou(m.Field("HoldTime")),
		}}
		r.Refs = chanRefs(ch)
	case "AgentCalled", "AgentConnect", "AgentComplete", "AgentRingNoAnswer":
		ch := channel(m)
		action := map[string]pb.QueueAgent_Action{
			"AgentCalled": pb.QueueAgent_ACTION_CALLED, "AgentConnect": pb.QueueAgent_ACTION_CONNECT,
			"AgentComplete": pb.QueueAgent_ACTION_COMPLETE, "AgentRingNoAnswer": pb.QueueAgent_ACTION_RING_NO_ANSWER,
		}[m.Field("Event")]
		r.Payload = &pb.Event_QueueAgent{QueueAgent: &pb.QueueAgent{
			Action: action, Queue: m.Field("Queue"), MemberName: m.Field("MemberName"), Interface: m.Field("Interface"),
			Caller: ch, Agent: destChannel(m), HoldTime: atou(m.Field("HoldTime")), RingTime: atou(m.Field("RingTime")),
			TalkTime: atou(m.Field("TalkTime")), Reason: m.Field("Reason"),
		}}
		r.Refs = chanRefs(ch)
	default:
		return nil
	}
	if t := eventTime(m); !t.IsZero() {
		r.PbxTime = timestamppb.New(t)
	}
	return r
}

// EndpointState converts an EndpointList item.
func EndpointState(m *goami2.Message, kind pb.EndpointKind) *pb.EndpointState {
	uris := contactURIs(m.Field("Contacts"))
	return &pb.EndpointState{
		Name:            m.Field("ObjectName"),
		Technology:      pb.Technology_TECHNOLOGY_PJSIP,
		Kind:            kind,
		DeviceState:     m.Field("DeviceState"),
		ActiveChannels:  atou(m.Field("ActiveChannels")),
		Aors:            splitList(m.Field("Aor")),
		ContactUris:     uris,
		HasOutboundAuth: strings.TrimSpace(m.Field("OutboundAuths")) != "",
		Transport:       m.Field("Transport"),
	}
}

// ContactListItem converts a ContactList item (PJSIPShowContacts).
func ContactListItem(m *goami2.Message) *pb.ContactStatus {
	rtt, known := parseRTT(m.Field("RoundtripUsec"))
	exp, _ := strconv.ParseInt(m.Field("ExpirationTime"), 10, 64)
	aor := m.Field("ObjectName")
	if i := strings.IndexByte(aor, ';'); i >= 0 {
		aor = aor[:i] // "1001;@<hash>"
	}
	return &pb.ContactStatus{
		Endpoint: m.Field("Endpoint"), Aor: aor, Uri: m.Field("Uri"), Status: m.Field("Status"),
		RoundtripUsec: rtt, RoundtripKnown: known, UserAgent: m.Field("UserAgent"),
		ViaAddress: joinHostPort(m.Field("ViaAddr"), m.Field("ViaPort")), ExpirationTime: exp,
	}
}

// OutboundRegistration converts an OutboundRegistrationDetail item.
func OutboundRegistration(m *goami2.Message) *pb.TrunkRegistration {
	return &pb.TrunkRegistration{
		Name: m.Field("ObjectName"), Technology: pb.Technology_TECHNOLOGY_PJSIP,
		ClientUri: m.Field("ClientUri"), ServerUri: m.Field("ServerUri"), Status: m.Field("Status"),
	}
}

// CoreShowChannel converts a CoreShowChannel item.
func CoreShowChannel(m *goami2.Message) *pb.Channel {
	ch := channel(m)
	ch.BridgeId = m.Field("BridgeId")
	ch.Application = m.Field("Application")
	ch.DurationSeconds = parseDuration(m.Field("Duration"))
	return ch
}

// ExtensionStatus converts an ExtensionStatus event or ExtensionStateList item.
func ExtensionStatus(m *goami2.Message) *pb.ExtensionStatus {
	st, _ := strconv.Atoi(m.Field("Status"))
	return &pb.ExtensionStatus{
		Exten: m.Field("Exten"), Context: m.Field("Context"), Hint: m.Field("Hint"),
		Status: int32(st), StatusText: m.Field("StatusText"),
	}
}

// QueueMember converts a queue member event or a QueueMember list item
// (which says Name/Location where the events say MemberName/Interface).
func QueueMember(m *goami2.Message) *pb.QueueMember {
	pen, _ := strconv.Atoi(m.Field("Penalty"))
	st, _ := strconv.Atoi(m.Field("Status"))
	return &pb.QueueMember{
		Queue: m.Field("Queue"), Name: first(m.Field("MemberName"), m.Field("Name")),
		Interface: first(m.Field("Interface"), m.Field("Location")), StateInterface: m.Field("StateInterface"),
		Membership: m.Field("Membership"), Penalty: int32(pen), CallsTaken: atou(m.Field("CallsTaken")),
		LastCall: atoi64(m.Field("LastCall")), LastPause: atoi64(m.Field("LastPause")), LoginTime: atoi64(m.Field("LoginTime")),
		InCall: m.Field("InCall") == "1", Status: int32(st), Paused: m.Field("Paused") == "1",
		PausedReason: m.Field("PausedReason"), WrapupTime: atou(m.Field("Wrapuptime")),
	}
}

// QueueParams converts a QueueParams list item (QueueStatus).
func QueueParams(m *goami2.Message) *pb.QueueSummary {
	perf, _ := strconv.ParseFloat(m.Field("ServicelevelPerf"), 64)
	perf2, _ := strconv.ParseFloat(m.Field("ServicelevelPerf2"), 64)
	w, _ := strconv.Atoi(m.Field("Weight"))
	return &pb.QueueSummary{
		Queue: m.Field("Queue"), Strategy: m.Field("Strategy"), Max: atou(m.Field("Max")), Calls: atou(m.Field("Calls")),
		HoldTime: atou(m.Field("Holdtime")), TalkTime: atou(m.Field("TalkTime")), Completed: atou(m.Field("Completed")),
		Abandoned: atou(m.Field("Abandoned")), ServiceLevel: atou(m.Field("ServiceLevel")),
		ServiceLevelPerf: perf, ServiceLevelPerf2: perf2, Weight: int32(w),
	}
}

// QueueEntry converts a QueueEntry list item (a caller waiting, QueueStatus).
func QueueEntry(m *goami2.Message) *pb.QueueCaller {
	ch := channel(m)
	return &pb.QueueCaller{
		Action: pb.QueueCaller_ACTION_WAITING, Queue: m.Field("Queue"), Channel: ch,
		Position: atou(m.Field("Position")), HoldTime: atou(m.Field("Wait")),
	}
}

// Peer converts a chan_sip or IAX2 PeerEntry list item (SIPpeers,
// IAXpeerlist). The defaults of the monitors pbxpulse replaces: IAX2 peers
// are trunks; a chan_sip peer is a trunk when its description says "trunk".
func (c *Classifier) Peer(m *goami2.Message) *pb.EndpointState {
	tech := technology(m.Field("Channeltype"))
	name := m.Field("ObjectName")
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[:i] // IAXpeers says "iaxtrunk/heldout"
	}
	e := &pb.EndpointState{
		Name: name, Technology: tech, Status: m.Field("Status"), Description: known(m.Field("Description")),
	}
	if ip := m.Field("IPaddress"); ip != "" && ip != "-none-" && ip != "(null)" {
		e.Address = joinHostPort(ip, first(m.Field("IPport"), m.Field("Port")))
	}
	kind := pb.EndpointKind_ENDPOINT_KIND_EXTENSION
	if tech == pb.Technology_TECHNOLOGY_IAX2 || strings.EqualFold(strings.TrimSpace(e.Description), "trunk") {
		kind = pb.EndpointKind_ENDPOINT_KIND_TRUNK
	}
	e.Kind = c.override(name, kind)
	return e
}

// ARIEndpoint converts an endpoint listed by ARI (GET /ari/endpoints), for a
// PBX followed over ARI alone. ARI does not tell a trunk's outbound auth or
// registration: IAX2 endpoints are trunks, others extensions unless the
// tenant's name patterns say otherwise.
func (c *Classifier) ARIEndpoint(e ari.Endpoint) *pb.EndpointState {
	tech := technology(e.Technology)
	kind := pb.EndpointKind_ENDPOINT_KIND_EXTENSION
	if tech == pb.Technology_TECHNOLOGY_IAX2 {
		kind = pb.EndpointKind_ENDPOINT_KIND_TRUNK
	}
	return &pb.EndpointState{
		Name: e.Resource, Technology: tech, Kind: c.override(e.Resource, kind),
		Status: e.State, ActiveChannels: uint32(len(e.ChannelIDs)), Partial: true,
	}
}

func bridge(m *goami2.Message, p string) *pb.BridgeLifecycle {
	return &pb.BridgeLifecycle{
		BridgeId: m.Field(p + "BridgeUniqueid"), BridgeType: m.Field(p + "BridgeType"),
		Technology: m.Field(p + "BridgeTechnology"), Creator: known(m.Field(p + "BridgeCreator")),
		Name: known(m.Field(p + "BridgeName")), NumChannels: atou(m.Field(p + "BridgeNumChannels")),
	}
}

// optChannel is the channel snapshot under prefix p, or nil when the event
// has none (e.g. a blind transfer of a channel that is not bridged).
func optChannel(m *goami2.Message, p string) *pb.Channel {
	if m.Field(p+"Channel") == "" && m.Field(p+"Uniqueid") == "" {
		return nil
	}
	return channelWithPrefix(m, p)
}

// transferRefs point at the transferer: the call being transferred is its Linkedid.
func transferRefs(t *pb.Transfer) *pb.PbxRefs {
	for _, ch := range []*pb.Channel{t.Transferer, t.Transferee, t.SecondTransferer} {
		if ch != nil {
			return chanRefs(ch)
		}
	}
	return &pb.PbxRefs{}
}

func yes(s string) bool {
	switch strings.ToLower(s) {
	case "yes", "true", "1", "on":
		return true
	}
	return false
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func atoi64(s string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return v
}

func channel(m *goami2.Message) *pb.Channel {
	return channelWithPrefix(m, "")
}

func destChannel(m *goami2.Message) *pb.Channel {
	if m.Field("DestChannel") == "" {
		return nil
	}
	return channelWithPrefix(m, "Dest")
}

func channelWithPrefix(m *goami2.Message, p string) *pb.Channel {
	st, _ := strconv.Atoi(m.Field(p + "ChannelState"))
	return &pb.Channel{
		Name:          m.Field(p + "Channel"),
		Uniqueid:      m.Field(p + "Uniqueid"),
		Linkedid:      m.Field(p + "Linkedid"),
		State:         int32(st),
		StateDesc:     m.Field(p + "ChannelStateDesc"),
		CallerNum:     known(m.Field(p + "CallerIDNum")),
		CallerName:    known(m.Field(p + "CallerIDName")),
		ConnectedNum:  known(m.Field(p + "ConnectedLineNum")),
		ConnectedName: known(m.Field(p + "ConnectedLineName")),
		Context:       m.Field(p + "Context"),
		Exten:         m.Field(p + "Exten"),
	}
}

func chanRefs(ch *pb.Channel) *pb.PbxRefs {
	return &pb.PbxRefs{Uniqueid: ch.Uniqueid, Linkedid: ch.Linkedid, Channel: ch.Name, Endpoint: ami.EndpointOfChannel(ch.Name), BridgeId: ch.BridgeId}
}

// known maps Asterisk's "<unknown>" placeholder to "". Numbers stay strings.
func known(s string) string {
	if s == "<unknown>" {
		return ""
	}
	return s
}

func technology(s string) pb.Technology {
	switch strings.ToUpper(s) {
	case "PJSIP":
		return pb.Technology_TECHNOLOGY_PJSIP
	case "SIP":
		return pb.Technology_TECHNOLOGY_SIP
	case "IAX", "IAX2":
		return pb.Technology_TECHNOLOGY_IAX2
	}
	return pb.Technology_TECHNOLOGY_UNSPECIFIED
}

// parseRTT reads RoundtripUsec: a number in events, "N/A" in ContactList.
func parseRTT(s string) (int64, bool) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, false
	}
	return v, v > 0
}

// contactURIs reads "1001/sip:1001@127.0.0.1:5061," (AOR/URI pairs, with a
// trailing comma).
func contactURIs(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if _, uri, ok := strings.Cut(part, "/"); ok {
			part = uri
		}
		out = append(out, part)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func uriHostPort(uri string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(uri, "sips:"), "sip:")
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, ";>"); i >= 0 {
		s = s[:i]
	}
	return s
}

func joinHostPort(h, p string) string {
	if h == "" || p == "" {
		return h
	}
	return h + ":" + p
}

func atou(s string) uint32 {
	v, _ := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	return uint32(v)
}

// parseDuration reads CoreShowChannel's "HH:MM:SS".
func parseDuration(s string) int64 {
	parts := strings.Split(s, ":")
	var total int64
	for _, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return 0
		}
		total = total*60 + v
	}
	return total
}

// eventTime is the PBX's own time for security events (EventTV); other AMI
// events carry no timestamp, so the zero time means "use the receive time".
func eventTime(m *goami2.Message) time.Time {
	if tv := m.Field("EventTV"); tv != "" {
		if t, err := time.Parse("2006-01-02T15:04:05.000-0700", tv); err == nil {
			return t
		}
	}
	return time.Time{}
}
