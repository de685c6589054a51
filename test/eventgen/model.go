package eventgen

import (
	"fmt"
	"slices"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// pbx is the model of one PBX and of the collector's link to it.
type pbx struct {
	g      *Generator
	id     string
	idx    int
	epoch  int64 // Uniqueid prefix: the PBX's start-up time
	uid    int   // Uniqueid counter
	chanNo int   // channel name counter
	banner string

	session   string
	seq       uint64
	connected bool   // events reach the stream only while the link is up
	attempt   uint32 // reconnect attempts since the last good connection

	qualify bool // contacts are qualified: Reachable with round-trip times
	busyAt1 bool // device_state_busy_at=1: a phone in a call is BUSY, not INUSE

	exts, trunks []*endpoint
	chans        []*channel // live channels, oldest first
	queues       []*queue
	active       int // calls in progress
	drift        int // hangups the collector missed, for the next reconciliation
}

type endpoint struct {
	name, cidName string
	trunk         bool
	// contact
	registered bool
	aor, uri   string
	ua, via    string
	expires    int64
	rtt        int64
	contactSt  string // Reachable, NonQualified, Unreachable
	dev        string // last device state published
	chans      []*channel
	// trunks: the outbound registration
	host, regName, clientURI, serverURI, regStatus string
	outboundAuth                                   bool
}

// reachable endpoints can be called: trunks, and phones with a contact
// that answers.
func (e *endpoint) reachable() bool {
	return e.trunk || (e.registered && e.contactSt != "Unreachable")
}

type channel struct {
	name, uniqueid, linkedid string
	ep                       *endpoint
	state                    int32
	cidNum, cidName          string
	connNum, connName        string
	context, exten, app      string
	br                       *bridge
	held                     bool
	created                  time.Time
	gone                     bool
}

type bridge struct {
	id    string
	tech  string
	chans []*channel
}

var stateDesc = map[int32]string{0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}

// causeText is ast_cause2str (main/causes.c) for the causes generated.
var causeText = map[int32]string{
	0: "Unknown", 16: "Normal Clearing", 17: "User busy", 19: "User alerting, no answer",
	20: "Subscriber absent", 21: "Call Rejected", 26: "Answered elsewhere",
}

// deviceText is ast_devstate_str: the words EndpointList uses for a device state token.
var deviceText = map[string]string{
	"NOT_INUSE": "Not in use", "INUSE": "In use", "BUSY": "Busy", "UNAVAILABLE": "Unavailable",
	"RINGING": "Ringing", "RINGINUSE": "Ring+Inuse", "ONHOLD": "On Hold",
}

// memberStatus is app_queue's member Status for a device state token.
var memberStatus = map[string]int32{
	"NOT_INUSE": 1, "INUSE": 2, "BUSY": 3, "UNAVAILABLE": 5, "RINGING": 6, "RINGINUSE": 7, "ONHOLD": 8,
}

var people = []string{
	"Alice Martin", "Bob Schulz", "Carla Rossi", "David Kim", "Eva Novak", "Felix Braun", "Grace Okafor",
	"Hugo Lefebvre", "Ines Costa", "Jonas Weber", "Kira Ivanova", "Liam O'Brien", "Mia Jensen", "Noah Fischer",
	"Olga Petrova", "Paul Meyer", "Quinn Taylor", "Rosa García", "Sven Larsen", "Tara Singh", "Uwe Koch",
	"Vera Horvat", "Wim de Vries", "Yara Haddad", "Zoe Dubois",
}

var userAgents = []string{
	"Yealink SIP-T46U 108.86.0.70", "Grandstream GXP2170 1.0.11.23", "PolycomVVX-VVX_450-UA/6.4.3.5018",
	"Linphone/5.2.5 (belle-sip/5.2.0)", "MicroSIP/3.21.3", "Zoiper rv2.10.20.2", "snom D785/10.1.159.12",
}

var trunkNames = []string{"provider", "carrier", "backup", "sipgate", "voxbone", "twilio"}

func newPBX(g *Generator, idx int) *pbx {
	cfg := g.cfg
	p := &pbx{
		g: g, id: fmt.Sprintf("pbx%d", idx+1), idx: idx,
		epoch:   cfg.Start.Add(-time.Duration(3600+idx*431) * time.Second).Unix(),
		banner:  "Asterisk Call Manager/11.0.0",
		qualify: idx%3 != 1,
		busyAt1: idx%3 == 0,
	}
	for i := range cfg.Extensions {
		name := fmt.Sprintf("%d", 1001+i)
		cid := fmt.Sprintf("Ext %s", name)
		if i < len(people) {
			cid = people[(i+idx*7)%len(people)]
		}
		e := &endpoint{name: name, cidName: cid, aor: name}
		p.exts = append(p.exts, e)
	}
	for i := range cfg.Trunks {
		name := trunkNames[i%len(trunkNames)]
		if i >= len(trunkNames) {
			name = fmt.Sprintf("%s%d", name, i/len(trunkNames)+1)
		}
		host := fmt.Sprintf("203.0.113.%d", 10+(idx*16+i)%240)
		t := &endpoint{
			name: name, trunk: true, aor: name, host: host,
			uri: "sip:" + host + ":5060", registered: true, contactSt: "Reachable",
			regName: name + "-reg", serverURI: "sip:" + host + ":5060",
			clientURI: fmt.Sprintf("sip:4930555%d%02d@%s:5060", idx+1, i, host),
			regStatus: "Registered", outboundAuth: i%2 == 0,
		}
		t.rtt = 8000 + g.rng.Int64N(40000)
		p.trunks = append(p.trunks, t)
	}
	// Most phones are registered when the collector first connects.
	for _, e := range p.exts {
		if g.chance(0.85) {
			p.register(e, false)
		}
	}
	for _, e := range p.endpoints() {
		e.dev = p.devState(e)
	}
	p.queues = []*queue{
		newQueue(p, "support", "800", p.exts[0:4]),
		newQueue(p, "sales", "801", p.exts[4:6]),
	}
	return p
}

// endpoints lists every endpoint in PJSIPShowEndpoints order (by name).
func (p *pbx) endpoints() []*endpoint {
	all := append(slices.Clone(p.exts), p.trunks...)
	slices.SortFunc(all, func(a, b *endpoint) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return all
}

// register gives e a fresh contact (a phone registering, maybe from a new
// NAT port); emit publishes what Asterisk says about it.
func (p *pbx) register(e *endpoint, emit bool) {
	g := p.g
	ip := fmt.Sprintf("192.168.%d.%d", 10+p.idx, 20+g.rng.IntN(200))
	port := 5060
	if g.chance(0.5) {
		port = 20000 + g.rng.IntN(40000)
	}
	if e.registered && emit {
		// Re-registration from another address: the old contact goes.
		p.emitContact(e, "Removed", 0)
	}
	e.registered = true
	e.uri = fmt.Sprintf("sip:%s@%s:%d", e.name, ip, port)
	e.via = fmt.Sprintf("%s:%d", ip, port)
	e.ua = userAgents[g.rng.IntN(len(userAgents))]
	e.expires = g.now.Add(time.Hour).Unix()
	e.rtt = 0
	e.contactSt = "NonQualified"
	if p.qualify {
		e.rtt = 2000 + g.rng.Int64N(60000)
		e.contactSt = "Reachable"
	}
	if !emit {
		return
	}
	p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_PeerStatus{PeerStatus: &pb.PeerStatus{
		Name: e.name, Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Reachable"}}})
	p.updateDevice(e)
	if p.qualify {
		p.emitContact(e, "Created", 0)
		p.emitContact(e, "Reachable", e.rtt)
	} else {
		p.emitContact(e, "NonQualified", 0)
	}
}

// unregister removes e's contact (REGISTER with Expires: 0, or expiry).
func (p *pbx) unregister(e *endpoint) {
	e.registered = false
	p.updateDevice(e)
	p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_PeerStatus{PeerStatus: &pb.PeerStatus{
		Name: e.name, Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Unreachable"}}})
	p.emitContact(e, "Removed", 0)
	e.uri, e.via, e.ua, e.contactSt = "", "", "", ""
}

// emitContact publishes a ContactStatus event (not a list item: no user
// agent, via address or expiry).
func (p *pbx) emitContact(e *endpoint, status string, rtt int64) {
	p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_ContactStatus{ContactStatus: &pb.ContactStatus{
		Endpoint: e.name, Aor: e.aor, Uri: e.uri, Status: status, RoundtripUsec: rtt, RoundtripKnown: rtt > 0,
	}}})
}

// emit publishes e if the collector is connected; events of a PBX whose
// link is down are lost (the resync after reconnecting tells the truth).
func (p *pbx) emit(e *pb.Event) {
	if !p.connected {
		return
	}
	p.emitAlways(e)
}

func (p *pbx) emitAlways(e *pb.Event) {
	p.g.stamp(p, e)
	p.g.out = append(p.g.out, e)
}

// devState is the state Asterisk computes for an endpoint's device from
// its channels (ast_state_chan2dev, aggregated).
func (p *pbx) devState(e *endpoint) string {
	var ringing, up, held int
	for _, c := range e.chans {
		switch {
		case c.held:
			held++
		case c.state == 5:
			ringing++
		case c.state == 0:
		default:
			up++
		}
	}
	switch {
	case ringing > 0 && up+held > 0:
		return "RINGINUSE"
	case ringing > 0:
		return "RINGING"
	case up > 0 && p.busyAt1 && !e.trunk:
		return "BUSY"
	case up > 0:
		return "INUSE"
	case held > 0:
		return "ONHOLD"
	case e.reachable():
		return "NOT_INUSE"
	}
	return "UNAVAILABLE"
}

// updateDevice publishes e's device state when it changed, and what
// app_queue derives from it.
func (p *pbx) updateDevice(e *endpoint) {
	st := p.devState(e)
	if st == e.dev {
		return
	}
	e.dev = st
	p.deviceState("PJSIP/"+e.name, st)
	for _, q := range p.queues {
		if m := q.member(e); m != nil {
			q.memberDeviceChanged(m)
		}
	}
}

func (p *pbx) deviceState(dev, st string) {
	p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(dev)}, Payload: &pb.Event_DeviceState{DeviceState: &pb.DeviceState{Device: dev, State: st}}})
}

// Channels.

func (c *channel) pb() *pb.Channel {
	return &pb.Channel{
		Name: c.name, Uniqueid: c.uniqueid, Linkedid: c.linkedid, State: c.state, StateDesc: stateDesc[c.state],
		CallerNum: c.cidNum, CallerName: c.cidName, ConnectedNum: c.connNum, ConnectedName: c.connName,
		Context: c.context, Exten: c.exten,
	}
}

// listed is the channel as CoreShowChannels lists it.
func (c *channel) listed(now time.Time) *pb.Channel {
	x := c.pb()
	if c.br != nil {
		x.BridgeId = c.br.id
	}
	x.Application = c.app
	x.DurationSeconds = int64(now.Sub(c.created) / time.Second)
	return x
}

// refs are the normalizer's chanRefs.
func refs(ch *pb.Channel) *pb.PbxRefs {
	return &pb.PbxRefs{Uniqueid: ch.Uniqueid, Linkedid: ch.Linkedid, Channel: ch.Name,
		Endpoint: ami.EndpointOfChannel(ch.Name), BridgeId: ch.BridgeId}
}

func (p *pbx) chanEvent(ch *pb.Channel, e *pb.Event) {
	e.Refs = refs(ch)
	p.emit(e)
}

// newChannel creates a channel on endpoint e (Newchannel). linkedid ""
// starts a new call.
func (p *pbx) newChannel(e *endpoint, context, exten string, state int32, linkedid, cidNum, cidName, app string) *channel {
	p.uid++
	p.chanNo++
	c := &channel{
		name: fmt.Sprintf("PJSIP/%s-%08x", e.name, p.chanNo), uniqueid: fmt.Sprintf("%d.%d", p.epoch, p.uid),
		ep: e, state: state, cidNum: cidNum, cidName: cidName, context: context, exten: exten, app: app,
		created: p.g.now,
	}
	c.linkedid = linkedid
	if linkedid == "" {
		c.linkedid = c.uniqueid
	}
	p.chans = append(p.chans, c)
	e.chans = append(e.chans, c)
	x := c.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_ChannelCreated{ChannelCreated: &pb.ChannelCreated{Channel: x}}})
	p.updateDevice(e)
	return c
}

// newstate changes a channel's state (Newstate).
func (p *pbx) newstate(c *channel, st int32) {
	c.state = st
	x := c.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_ChannelStateChanged{ChannelStateChanged: &pb.ChannelStateChanged{Channel: x}}})
	p.updateDevice(c.ep)
}

// connectedLine changes who a channel is connected to (NewConnectedLine).
func (p *pbx) connectedLine(c *channel, num, name string) {
	c.connNum, c.connName = num, name
	x := c.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_CallerIdChanged{CallerIdChanged: &pb.CallerIdChanged{Channel: x}}})
}

// callerID changes a channel's own caller id (NewCallerid), e.g. after a
// name lookup of an inbound number.
func (p *pbx) callerID(c *channel, num, name string) {
	c.cidNum, c.cidName = num, name
	x := c.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_CallerIdChanged{CallerIdChanged: &pb.CallerIdChanged{Channel: x}}})
}

func (p *pbx) varSet(c *channel, name, value string) {
	x := c.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_ChannelVarSet{ChannelVarSet: &pb.ChannelVarSet{Channel: x, Variable: name, Value: value}}})
}

func (p *pbx) dialBegin(a, b *channel, dialString string) {
	x := a.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_DialBegin{DialBegin: &pb.DialBegin{Caller: x, Callee: b.pb(), DialString: dialString}}})
}

func (p *pbx) dialEnd(a, b *channel, status string) {
	x := a.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_DialEnd{DialEnd: &pb.DialEnd{Caller: x, Callee: b.pb(), DialStatus: status}}})
	if !a.gone {
		p.varSet(a, "DIALSTATUS", status)
	}
}

func (p *pbx) hangupRequest(c *channel, cause int32, soft bool) {
	x := c.pb()
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_ChannelHangupRequest{ChannelHangupRequest: &pb.ChannelHangupRequest{Channel: x, Cause: cause, Soft: soft}}})
}

// hangup ends a channel (Hangup). Rarely the event is lost on its way to
// the collector; the next reconciliation's snapshot then closes it.
func (p *pbx) hangup(c *channel, cause int32) {
	if c.gone {
		return
	}
	c.gone = true
	if c.br != nil {
		c.br.chans = slices.DeleteFunc(c.br.chans, func(x *channel) bool { return x == c })
		c.br = nil
	}
	x := c.pb()
	p.chans = slices.DeleteFunc(p.chans, func(o *channel) bool { return o == c })
	c.ep.chans = slices.DeleteFunc(c.ep.chans, func(o *channel) bool { return o == c })
	if p.connected && p.g.chance(0.0015) {
		p.drift++
	} else {
		p.chanEvent(x, &pb.Event{Payload: &pb.Event_ChannelHungUp{ChannelHungUp: &pb.ChannelHungUp{Channel: x, Cause: cause, CauseText: causeText[cause]}}})
	}
	p.updateDevice(c.ep)
}

func (p *pbx) hold(c *channel, held bool) {
	c.held = held
	x := c.pb()
	music := ""
	if held {
		music = "default"
	}
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_ChannelHold{ChannelHold: &pb.ChannelHold{Channel: x, Held: held, MusicClass: music}}})
	p.updateDevice(c.ep)
}

func (p *pbx) dtmf(c *channel, digits string) {
	for _, d := range digits {
		x := c.pb()
		p.chanEvent(x, &pb.Event{Payload: &pb.Event_Dtmf{Dtmf: &pb.Dtmf{
			Channel: x, Digit: string(d), DurationMs: uint32(60 + p.g.rng.IntN(200)), Direction: "Received"}}})
	}
}

// Bridges.

func (p *pbx) newBridge() *bridge {
	b := &bridge{id: p.g.uuid4(), tech: "simple_bridge"}
	p.emit(&pb.Event{Refs: &pb.PbxRefs{BridgeId: b.id}, Payload: &pb.Event_BridgeLifecycle{BridgeLifecycle: &pb.BridgeLifecycle{
		Action: pb.BridgeLifecycle_ACTION_CREATED, BridgeId: b.id, BridgeType: "basic", Technology: b.tech}}})
	return b
}

func (p *pbx) enter(b *bridge, c *channel) {
	b.chans = append(b.chans, c)
	c.br = b
	x := c.pb()
	x.BridgeId = b.id
	p.chanEvent(x, &pb.Event{Payload: &pb.Event_BridgeEnter{BridgeEnter: &pb.BridgeEnter{
		BridgeId: b.id, BridgeType: "basic", Channel: x, NumChannels: uint32(len(b.chans))}}})
	if len(b.chans) == 2 {
		b.tech = "native_rtp"
		p.varSet(b.chans[1], "BRIDGEPEER", b.chans[0].name)
		p.varSet(b.chans[0], "BRIDGEPEER", b.chans[1].name)
	}
}

func (p *pbx) leave(b *bridge, c *channel) {
	b.chans = slices.DeleteFunc(b.chans, func(x *channel) bool { return x == c })
	if c.br == b {
		c.br = nil
	}
	x := c.pb()
	e := &pb.Event{Payload: &pb.Event_BridgeLeave{BridgeLeave: &pb.BridgeLeave{BridgeId: b.id, Channel: x, NumChannels: uint32(len(b.chans))}}}
	e.Refs = refs(x)
	e.Refs.BridgeId = b.id
	p.emit(e)
}

func (p *pbx) destroy(b *bridge) {
	p.emit(&pb.Event{Refs: &pb.PbxRefs{BridgeId: b.id}, Payload: &pb.Event_BridgeLifecycle{BridgeLifecycle: &pb.BridgeLifecycle{
		Action: pb.BridgeLifecycle_ACTION_DESTROYED, BridgeId: b.id, BridgeType: "basic", Technology: b.tech}}})
}

// Picking parties.

// idleExt returns a random registered extension without channels, not
// among not; nil when there is none.
func (p *pbx) idleExt(not ...*endpoint) *endpoint {
	var free []*endpoint
	for _, e := range p.exts {
		if e.reachable() && len(e.chans) == 0 && !slices.Contains(not, e) && !p.isQueueMember(e) {
			free = append(free, e)
		}
	}
	if len(free) == 0 {
		// Queue members take ordinary calls too when nobody else is free.
		for _, e := range p.exts {
			if e.reachable() && len(e.chans) == 0 && !slices.Contains(not, e) {
				free = append(free, e)
			}
		}
	}
	if len(free) == 0 {
		return nil
	}
	return free[p.g.rng.IntN(len(free))]
}

func (p *pbx) isQueueMember(e *endpoint) bool {
	for _, q := range p.queues {
		if q.member(e) != nil {
			return true
		}
	}
	return false
}

func (p *pbx) trunk() *endpoint { return p.trunks[p.g.rng.IntN(len(p.trunks))] }

// externalNumber is a random public number, sometimes withheld ("").
func (p *pbx) externalNumber() string {
	g := p.g
	if g.chance(0.05) {
		return ""
	}
	prefixes := []string{"+4930", "+4940", "+4989", "+49151", "+49170", "+3314", "+4420", "+1212"}
	n := prefixes[g.rng.IntN(len(prefixes))]
	for range 7 + g.rng.IntN(2) {
		n += string(rune('0' + g.rng.IntN(10)))
	}
	return n
}

// dialedNumber is a number an extension dials out: national or international format.
func (p *pbx) dialedNumber() string {
	g := p.g
	n := "0"
	if g.chance(0.3) {
		n = "00" + []string{"33", "44", "1", "39", "31"}[g.rng.IntN(5)]
	}
	for range 9 + g.rng.IntN(3) {
		n += string(rune('0' + g.rng.IntN(10)))
	}
	return n
}
