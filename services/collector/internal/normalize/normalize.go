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

// Kind classifies an EndpointList item.
func (c *Classifier) Kind(m *goami2.Message) pb.EndpointKind {
	name := m.Field("ObjectName")
	switch {
	case c.TrunkPattern != nil && c.TrunkPattern.MatchString(name):
		return pb.EndpointKind_ENDPOINT_KIND_TRUNK
	case c.ExtensionPattern != nil && c.ExtensionPattern.MatchString(name):
		return pb.EndpointKind_ENDPOINT_KIND_EXTENSION
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
	case "DeviceStateChange":
		dev := m.Field("Device")
		r.Payload = &pb.Event_DeviceState{DeviceState: &pb.DeviceState{Device: dev, State: m.Field("State")}}
		r.Refs = &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(dev)}
	case "Registry":
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
