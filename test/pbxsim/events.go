package pbxsim

import (
	"fmt"
	"slices"
	"time"
)

// ariEvent is one ARI event before it is addressed to an application.
// Asterisk adds "asterisk_id" and "application" per receiving app; where
// they go differs by event type (see encode).
type ariEvent struct {
	typ       string
	pre       obj // blob keys that precede "type" (ChannelVarset, ChannelHangupRequest)
	body      obj // keys after "timestamp"
	appSecond bool
	onlyApp   string     // Stasis application events go to that app only
	toAll     bool       // delivered to every application regardless of subscriptions
	chans     []*channel // channels the event is about (subscribeAll=false filtering)
	ts        time.Time
}

func ariEv(typ string, body obj, chans ...*channel) *ariEvent {
	return &ariEvent{typ: typ, body: body, chans: chans}
}

// encode renders the event for one application, key order as captured:
// most events end with asterisk_id then application; DeviceStateChanged
// puts application right after type.
func (e *ariEvent) encode(app string) []byte {
	o := make(obj, 0, len(e.pre)+len(e.body)+4)
	o = append(o, e.pre...)
	o = append(o, kv{"type", e.typ})
	if e.appSecond {
		o = append(o, kv{"application", app})
	}
	o = append(o, kv{"timestamp", eventTV(e.ts)})
	o = append(o, e.body...)
	o = append(o, kv{"asterisk_id", asteriskID})
	if !e.appSecond {
		o = append(o, kv{"application", app})
	}
	return appendJSON(nil, o)
}

const asteriskID = "02:00:00:00:00:01"

// ari broadcasts an event to the ARI websockets. Callers hold s.mu, so
// ARI clients see the same global order as the simulator's model.
func (s *Server) ari(e *ariEvent) {
	if e.ts.IsZero() {
		e.ts = time.Now()
	}
	s.hub.broadcast(e)
}

// newChannel creates a PJSIP channel with the next PBX-wide sequence number
// and emits Newchannel / ChannelCreated. Callers hold s.mu.
func (s *Server) newChannel(ext, exten string, state int, linkedid string, call *Call) *channel {
	now := time.Now()
	seq := s.nextChanSeq()
	cidName := "Ext " + ext
	if e := s.eps[ext]; e != nil {
		cidName = e.cidName
	}
	c := &channel{name: fmt.Sprintf("PJSIP/%s-%08x", ext, seq), ext: ext, state: state,
		cidNum: ext, cidName: cidName, context: "internal", exten: exten, priority: 1,
		uniqueid: uniqueID(now, seq), created: now, call: call}
	c.linkedid = linkedid
	if linkedid == "" {
		c.linkedid = c.uniqueid
	}
	s.addChannel(c)
	return c
}

func (s *Server) addChannel(c *channel) {
	s.chans = append(s.chans, c)
	if e := s.eps[c.ext]; e != nil {
		e.channels++
	}
	s.emit(chanEv("Newchannel", "call,all", c))
	s.ari(ariEv("ChannelCreated", obj{{"channel", c.ariJSON()}}, c))
}

func (s *Server) varSet(c *channel, k, v string) {
	s.emit(chanEv("VarSet", "dialplan,all", c, field{"Variable", k}, field{"Value", v}))
	e := ariEv("ChannelVarset", obj{{"channel", c.ariJSON()}}, c)
	e.pre = obj{{"variable", k}, {"value", v}}
	s.ari(e)
}

func (s *Server) newexten(c *channel, prio int, app, data string) {
	c.priority, c.app, c.appData = prio, app, data
	s.emit(chanEv("Newexten", "dialplan,all", c, field{"Extension", c.exten}, field{"Application", app}, field{"AppData", data}))
	s.ari(ariEv("ChannelDialplan", obj{{"dialplan_app", app}, {"dialplan_app_data", data}, {"channel", c.ariJSON()}}, c))
}

func (s *Server) newstate(c *channel, st int) {
	c.state = st
	s.emit(chanEv("Newstate", "call,all", c))
	s.ari(ariEv("ChannelStateChange", obj{{"channel", c.ariJSON()}}, c))
}

func (s *Server) connectedLine(c *channel) {
	s.emit(chanEv("NewConnectedLine", "call,all", c))
	s.ari(ariEv("ChannelConnectedLine", obj{{"channel", c.ariJSON()}}, c))
}

// dialEv emits DialBegin/DialState/DialEnd and the ARI Dial event. a is nil
// for originated calls, which dial without a calling channel.
func (s *Server) dialEv(ev string, a, b *channel, last field) {
	m := msg{{"Event", ev}, {"Privilege", "call,all"}}
	if a != nil {
		m = append(m, a.block("")...)
	}
	m = append(m, b.block("Dest")...)
	s.emit(append(m, last))
	status, dialstring := last.v, ""
	if ev == "DialBegin" {
		status, dialstring = "", last.v
	}
	body := obj{{"dialstatus", status}, {"forward", ""}, {"dialstring", dialstring}}
	if a != nil {
		body = append(body, kv{"caller", a.ariJSON()})
	}
	body = append(body, kv{"peer", b.ariJSON()})
	s.ari(ariEv("Dial", body, a, b))
}

// hangupRequest is a hard hangup request (HangupRequest); cause < 0 omits
// the cause as Asterisk does for requests without one.
func (s *Server) hangupRequest(c *channel, cause int, techCause string) {
	var extra []field
	var pre obj
	if cause >= 0 {
		extra = append(extra, field{"Cause", itoa(cause)})
		pre = append(pre, kv{"cause", cause})
	}
	if techCause != "" {
		extra = append(extra, field{"TechCause", techCause})
		pre = append(pre, kv{"tech_cause", atoiOr(techCause, 0)})
	}
	s.emit(chanEv("HangupRequest", "call,all", c, extra...))
	e := ariEv("ChannelHangupRequest", obj{{"channel", c.ariJSON()}}, c)
	e.pre = pre
	s.ari(e)
}

func (s *Server) softHangupRequest(c *channel, cause int) {
	s.emit(chanEv("SoftHangupRequest", "call,all", c, field{"Cause", itoa(cause)}))
	e := ariEv("ChannelHangupRequest", obj{{"channel", c.ariJSON()}}, c)
	e.pre = obj{{"cause", cause}, {"soft", true}}
	s.ari(e)
}

func (s *Server) amiHangup(c *channel, cause int, techCause string) {
	extra := []field{{"Cause", itoa(cause)}, {"Cause-txt", causeTxt(cause)}}
	if techCause != "" {
		extra = append(extra, field{"TechCause", techCause})
	}
	s.emit(chanEv("Hangup", "call,all", c, extra...))
}

func (s *Server) ariDestroyed(c *channel, cause int, techCause string) {
	body := obj{{"cause", cause}, {"cause_txt", causeTxt(cause)}}
	if techCause != "" {
		body = append(body, kv{"tech_cause", atoiOr(techCause, 0)})
	}
	body = append(body, kv{"channel", c.ariJSON()})
	s.ari(ariEv("ChannelDestroyed", body, c))
}

// dropChannel removes a hung-up channel from the model.
func (s *Server) dropChannel(c *channel) {
	if c.gone {
		return
	}
	c.gone = true
	s.chans = slices.DeleteFunc(s.chans, func(x *channel) bool { return x == c })
	if e := s.eps[c.ext]; e != nil {
		e.channels--
	}
}

// hangupEv ends a channel: Hangup and ChannelDestroyed at the same point.
func (s *Server) hangupEv(c *channel, cause int, techCause string) {
	s.amiHangup(c, cause, techCause)
	s.ariDestroyed(c, cause, techCause)
	s.dropChannel(c)
}

func (s *Server) hold(c *channel) {
	c.held = true
	s.emit(chanEv("Hold", "call,all", c, field{"MusicClass", "default"}))
	s.ari(ariEv("ChannelHold", obj{{"musicclass", "default"}, {"channel", c.ariJSON()}}, c))
}

func (s *Server) unhold(c *channel) {
	c.held = false
	s.emit(chanEv("Unhold", "call,all", c))
	s.ari(ariEv("ChannelUnhold", obj{{"channel", c.ariJSON()}}, c))
}

// dtmf emits one received digit: DTMFBegin, DTMFEnd and (for received
// digits only, as dtmf_end_to_json does) ChannelDtmfReceived.
func (s *Server) dtmf(c *channel, digit string, dur int) {
	s.emit(chanEv("DTMFBegin", "dtmf,all", c, field{"Digit", digit}, field{"Direction", "Received"}))
	s.emit(chanEv("DTMFEnd", "dtmf,all", c, field{"Digit", digit}, field{"DurationMs", itoa(dur)}, field{"Direction", "Received"}))
	s.ari(ariEv("ChannelDtmfReceived", obj{{"digit", digit}, {"duration_ms", dur}, {"channel", c.ariJSON()}}, c))
}

func atoiOr(s string, def int) int {
	n := 0
	if s == "" {
		return def
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return def
		}
		n = n*10 + int(r-'0')
	}
	return n
}
