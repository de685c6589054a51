package pbxsim

import (
	"fmt"
	"slices"
	"time"
)

// stateDesc maps ast_channel_state values to ast_state2str text (AMI
// ChannelStateDesc and ARI channel "state" use the same words).
var stateDesc = map[int]string{0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}

// causeText is ast_cause2str for the causes the simulator produces.
var causeText = map[int]string{0: "Unknown", 16: "Normal Clearing", 17: "User busy",
	19: "No user responding", 21: "Call Rejected", 26: "Answered elsewhere", 127: "Interworking, unspecified"}

func causeTxt(c int) string {
	if t, ok := causeText[c]; ok {
		return t
	}
	return "Unknown"
}

type channel struct {
	name, ext          string // ext: endpoint name; "" for Local channels
	state              int
	cidNum, cidName    string
	connNum, connName  string // "" is rendered as <unknown> in AMI, "" in ARI
	context, exten     string
	priority           int
	uniqueid, linkedid string
	app, appData       string // current dialplan application
	created            time.Time
	callID             string // SIP Call-ID of the dialog (ARI protocol_id)
	call               *Call
	br                 *bridge
	held               bool
	stasis             string // Stasis application the channel is in, if any
	mixmon             bool
	local              bool
	gone               bool // hung up and removed
}

func orUnknown(v string) string {
	if v == "" {
		return "<unknown>"
	}
	return v
}

// block is the channel snapshot Asterisk appends to channel events
// (ast_manager_build_channel_state_string_prefix); prefix "Dest" gives the
// peer snapshot of Dial* events, "Transferer", "LocalOne", ... others.
func (c *channel) block(p string) []field {
	return []field{{p + "Channel", c.name}, {p + "ChannelState", itoa(c.state)},
		{p + "ChannelStateDesc", stateDesc[c.state]}, {p + "CallerIDNum", orUnknown(c.cidNum)},
		{p + "CallerIDName", orUnknown(c.cidName)}, {p + "ConnectedLineNum", orUnknown(c.connNum)},
		{p + "ConnectedLineName", orUnknown(c.connName)}, {p + "Language", "en"},
		{p + "AccountCode", ""}, {p + "Context", c.context}, {p + "Exten", c.exten},
		{p + "Priority", itoa(c.priority)}, {p + "Uniqueid", c.uniqueid}, {p + "Linkedid", c.linkedid}}
}

// ariJSON is ast_channel_snapshot_to_json, key order as captured.
func (c *channel) ariJSON() obj {
	return obj{{"id", c.uniqueid}, {"name", c.name}, {"state", stateDesc[c.state]},
		{"protocol_id", c.callID},
		{"caller", obj{{"name", c.cidName}, {"number", c.cidNum}}},
		{"connected", obj{{"name", c.connName}, {"number", c.connNum}}},
		{"accountcode", ""},
		{"dialplan", obj{{"context", c.context}, {"exten", c.exten}, {"priority", c.priority},
			{"app_name", c.app}, {"app_data", c.appData}}},
		{"creationtime", eventTV(c.created)}, {"language", "en"}}
}

func chanEv(ev, priv string, c *channel, extra ...field) msg {
	m := msg{{"Event", ev}, {"Privilege", priv}}
	m = append(m, c.block("")...)
	return append(m, extra...)
}

// bridge is a basic (two-party mixing) bridge or a parking holding bridge.
type bridge struct {
	id       string
	tech     string // simple_bridge at first, native_rtp once media flows
	class    string // AMI BridgeType / ARI bridge_class: "basic", "parking"
	ariType  string // ARI bridge_type: "mixing", "holding"
	creator  string
	name     string
	chans    []*channel
	created  time.Time
	parkSlot int
}

// state is ast_manager_build_bridge_state_string_prefix.
func (b *bridge) state(p string) []field {
	return []field{{p + "BridgeUniqueid", b.id}, {p + "BridgeType", b.class},
		{p + "BridgeTechnology", b.tech}, {p + "BridgeCreator", orUnknown(b.creator)},
		{p + "BridgeName", orUnknown(b.name)}, {p + "BridgeNumChannels", itoa(len(b.chans))},
		{p + "BridgeVideoSourceMode", "none"}}
}

func (b *bridge) ariJSON() obj {
	ids := make([]string, 0, len(b.chans))
	for _, c := range b.chans {
		ids = append(ids, c.uniqueid)
	}
	return obj{{"id", b.id}, {"technology", b.tech}, {"bridge_type", b.ariType},
		{"bridge_class", b.class}, {"creator", b.creator}, {"name", b.name},
		{"channels", ids}, {"creationtime", eventTV(b.created)}, {"video_mode", "none"}}
}

// newBridge creates a basic bridge and emits BridgeCreate/BridgeCreated.
func (s *Server) newBridge() *bridge {
	b := &bridge{id: uuid(), tech: "simple_bridge", class: "basic", ariType: "mixing", created: time.Now()}
	s.bridges = append(s.bridges, b)
	s.emit(append(msg{{"Event", "BridgeCreate"}, {"Privilege", "call,all"}}, b.state("")...))
	s.ari(ariEv("BridgeCreated", obj{{"bridge", b.ariJSON()}}))
	return b
}

func (s *Server) bridgeEnter(b *bridge, c *channel) {
	b.chans = append(b.chans, c)
	c.br = b
	m := append(msg{{"Event", "BridgeEnter"}, {"Privilege", "call,all"}}, b.state("")...)
	s.emit(append(m, c.block("")...))
	s.ari(ariEv("ChannelEnteredBridge", obj{{"bridge", b.ariJSON()}, {"channel", c.ariJSON()}}, c))
}

func (s *Server) bridgeLeave(b *bridge, c *channel) {
	b.chans = slices.DeleteFunc(b.chans, func(x *channel) bool { return x == c })
	if c.br == b {
		c.br = nil
	}
	m := append(msg{{"Event", "BridgeLeave"}, {"Privilege", "call,all"}}, b.state("")...)
	s.emit(append(m, c.block("")...))
	s.ari(ariEv("ChannelLeftBridge", obj{{"bridge", b.ariJSON()}, {"channel", c.ariJSON()}}, c))
}

func (s *Server) bridgeDestroy(b *bridge) {
	s.bridges = slices.DeleteFunc(s.bridges, func(x *bridge) bool { return x == b })
	s.emit(append(msg{{"Event", "BridgeDestroy"}, {"Privilege", "call,all"}}, b.state("")...))
	s.ari(ariEv("BridgeDestroyed", obj{{"bridge", b.ariJSON()}}))
}

func (s *Server) findChannel(nameOrID string) *channel {
	for _, c := range s.chans {
		if c.name == nameOrID || c.uniqueid == nameOrID {
			return c
		}
	}
	return nil
}

// peer returns the other channel of c's two-party bridge.
func (c *channel) peer() *channel {
	if c.br == nil {
		return nil
	}
	for _, x := range c.br.chans {
		if x != c {
			return x
		}
	}
	return nil
}

func (s *Server) channelsOf(ext string) []string {
	var ids []string
	for _, c := range s.chans {
		if c.ext == ext {
			ids = append(ids, c.uniqueid)
		}
	}
	return ids
}

// device is the last state of a device as announced on each interface.
// AMI and ARI track it separately because Asterisk delivers them from
// different threads and the simulator places them where the captures do.
type device struct{ ami, ari string }

func (s *Server) dev(name string) *device {
	d := s.devs[name]
	if d == nil {
		d = &device{}
		s.devs[name] = d
	}
	return d
}

func (s *Server) deviceAMI(name, st string) {
	d := s.dev(name)
	if d.ami == st {
		return
	}
	d.ami = st
	s.emit(msg{{"Event", "DeviceStateChange"}, {"Privilege", "call,all"}, {"Device", name}, {"State", st}})
}

func (s *Server) deviceARI(name, st string) {
	d := s.dev(name)
	if d.ari == st {
		return
	}
	d.ari = st
	s.ari(&ariEvent{typ: "DeviceStateChanged", body: obj{{"device_state", obj{{"name", name}, {"state", st}}}}, appSecond: true})
}

// setDevice announces a device state on both interfaces at once.
func (s *Server) setDevice(name, st string) {
	s.deviceAMI(name, st)
	s.deviceARI(name, st)
}

func endpointDevice(ext string) string { return "PJSIP/" + ext }

// epAMI / epARI announce an endpoint's computed device state on one
// interface; updateDevice does both (and feeds app_queue's member state).
func (s *Server) epAMI(ext string) {
	if e := s.eps[ext]; e != nil {
		s.deviceAMI(endpointDevice(ext), e.computeDev())
		s.queueDeviceChanged(ext, true, false)
	}
}

func (s *Server) epARI(ext string) {
	if e := s.eps[ext]; e != nil {
		s.deviceARI(endpointDevice(ext), e.computeDev())
		s.queueDeviceChanged(ext, false, true)
	}
}

func (s *Server) updateDevice(ext string) {
	s.epAMI(ext)
	s.epARI(ext)
}

func (s *Server) nextChanSeq() int {
	seq := s.chanSeq
	s.chanSeq++
	return seq
}

func uniqueID(now time.Time, seq int) string { return fmt.Sprintf("%d.%d", now.Unix(), seq) }
