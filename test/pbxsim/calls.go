package pbxsim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

var stateDesc = map[int]string{0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}

var causeText = map[int]string{0: "Unknown", 16: "Normal Clearing", 17: "User busy"}

type channel struct {
	name, ext          string
	state              int
	cidNum, cidName    string
	connNum, connName  string // "" is rendered as <unknown>
	exten              string
	priority           int
	uniqueid, linkedid string
	app, appData       string // current dialplan application (CoreShowChannel)
	created            time.Time
	callID             string // SIP Call-ID of the dialog
	call               *Call
}

func orUnknown(v string) string {
	if v == "" {
		return "<unknown>"
	}
	return v
}

// block is the standard channel snapshot Asterisk appends to channel
// events; prefix "Dest" gives the peer snapshot of Dial* events.
func (c *channel) block(p string) []field {
	return []field{{p + "Channel", c.name}, {p + "ChannelState", itoa(c.state)},
		{p + "ChannelStateDesc", stateDesc[c.state]}, {p + "CallerIDNum", c.cidNum},
		{p + "CallerIDName", c.cidName}, {p + "ConnectedLineNum", orUnknown(c.connNum)},
		{p + "ConnectedLineName", orUnknown(c.connName)}, {p + "Language", "en"},
		{p + "AccountCode", ""}, {p + "Context", "internal"}, {p + "Exten", c.exten},
		{p + "Priority", itoa(c.priority)}, {p + "Uniqueid", c.uniqueid}, {p + "Linkedid", c.linkedid}}
}

func chanEv(ev, priv string, c *channel, extra ...field) msg {
	m := msg{{"Event", ev}, {"Privilege", priv}}
	m = append(m, c.block("")...)
	return append(m, extra...)
}

type callState int

const (
	callRinging callState = iota
	callUp
	callEnded
)

// Call is a simulated call: two bridged PJSIP channels (Dial) or a single
// channel answered by a dialplan application (CallApp).
type Call struct {
	s        *Server
	a, b     *channel // caller, callee (nil for application calls)
	from, to string
	app      string // "Echo" or "Stasis" for application calls
	state    callState
	bridgeID string
	start    time.Time
	answered time.Time
	linkedid string
}

// Linkedid returns the Linkedid shared by all channels of the call.
func (c *Call) Linkedid() string { return c.linkedid }

func uuid() string {
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", rand.Uint32(), rand.Uint32()&0xffff,
		rand.Uint32()&0xfff, 0x8000|rand.Uint32()&0x3fff, rand.Uint64()&0xffffffffffff)
}

func (s *Server) callPort(ext string) int {
	if e := s.eps[ext]; e != nil {
		return e.callPort()
	}
	return 5160
}

// newChannel creates a PJSIP channel with the next PBX-wide sequence number
// and emits Newchannel. Callers hold s.mu.
func (s *Server) newChannel(ext, exten string, state int, linkedid string, call *Call) *channel {
	now := time.Now()
	seq := s.chanSeq
	s.chanSeq++
	c := &channel{name: fmt.Sprintf("PJSIP/%s-%08x", ext, seq), ext: ext, state: state,
		cidNum: ext, cidName: "Ext " + ext, exten: exten, priority: 1,
		uniqueid: fmt.Sprintf("%d.%d", now.Unix(), seq), created: now, call: call}
	c.linkedid = linkedid
	if linkedid == "" {
		c.linkedid = c.uniqueid
	}
	s.chans = append(s.chans, c)
	if e := s.eps[ext]; e != nil {
		e.channels++
	}
	s.emit(chanEv("Newchannel", "call,all", c))
	return c
}

func (s *Server) varSet(c *channel, k, v string) {
	s.emit(chanEv("VarSet", "dialplan,all", c, field{"Variable", k}, field{"Value", v}))
}

func (s *Server) newexten(c *channel, prio int, app, data string) {
	c.priority, c.app, c.appData = prio, app, data
	s.emit(chanEv("Newexten", "dialplan,all", c, field{"Extension", c.exten}, field{"Application", app}, field{"AppData", data}))
}

func (s *Server) newstate(c *channel, st int) {
	c.state = st
	s.emit(chanEv("Newstate", "call,all", c))
}

func (s *Server) hangupEv(c *channel, cause int, techCause string) {
	extra := []field{{"Cause", itoa(cause)}, {"Cause-txt", causeText[cause]}}
	if techCause != "" {
		extra = append(extra, field{"TechCause", techCause})
	}
	s.emit(chanEv("Hangup", "call,all", c, extra...))
	s.chans = slices.DeleteFunc(s.chans, func(x *channel) bool { return x == c })
	if e := s.eps[c.ext]; e != nil {
		e.channels--
	}
}

func (s *Server) dialEv(ev string, a, b *channel, last field) {
	m := chanEv(ev, "call,all", a)
	m = append(m, b.block("Dest")...)
	s.emit(append(m, last))
}

func (s *Server) bridgeEv(ev, id, tech string, n int, c *channel) {
	m := msg{{"Event", ev}, {"Privilege", "call,all"}, {"BridgeUniqueid", id}, {"BridgeType", "basic"},
		{"BridgeTechnology", tech}, {"BridgeCreator", "<unknown>"}, {"BridgeName", "<unknown>"},
		{"BridgeNumChannels", itoa(n)}, {"BridgeVideoSourceMode", "none"}}
	if c != nil {
		m = append(m, c.block("")...)
	}
	s.emit(m)
}

func cdrTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func (s *Server) cdr(c *Call, dst, lastApp, lastData string, start, answer, end time.Time, disp string) {
	bill := 0
	if !answer.IsZero() {
		bill = int(end.Sub(answer).Seconds())
	}
	s.emit(msg{{"Event", "Cdr"}, {"Privilege", "cdr,all"}, {"AccountCode", ""}, {"Source", c.from},
		{"Destination", c.to}, {"DestinationContext", "internal"},
		{"CallerID", fmt.Sprintf("%q <%s>", "Ext "+c.from, c.from)}, {"Channel", c.a.name},
		{"DestinationChannel", dst}, {"LastApplication", lastApp}, {"LastData", lastData},
		{"StartTime", cdrTime(start)}, {"AnswerTime", cdrTime(answer)}, {"EndTime", cdrTime(end)},
		{"Duration", itoa(int(end.Sub(start).Seconds()))}, {"BillableSeconds", itoa(bill)},
		{"Disposition", disp}, {"AMAFlags", "DOCUMENTATION"}, {"UniqueID", c.a.uniqueid}, {"UserField", ""}})
}

// qos returns the RTPAUDIOQOS* variables Asterisk sets at the end of RTP.
func qos(d time.Duration) [][2]string {
	n := int(d.Seconds() * 50)
	ssrc, them := rand.Uint32(), rand.Uint32()
	return [][2]string{
		{"RTPAUDIOQOS", fmt.Sprintf("ssrc=%d;themssrc=%d;lp=0;rxjitter=0.000000;rxcount=%d;txjitter=0.000500;txcount=%d;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=88.087887", ssrc, them, n, n)},
		{"RTPAUDIOQOSJITTER", "minrxjitter=000.000000;maxrxjitter=000.000750;avgrxjitter=000.000331;stdevrxjitter=000.000175;mintxjitter=000.000000;maxtxjitter=000.000000;avgtxjitter=000.000000;stdevtxjitter=000.000000;"},
		{"RTPAUDIOQOSLOSS", "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  avgtxlost=000.000000;  stdevtxlost=000.000000;"},
		{"RTPAUDIOQOSRTT", "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     stdevrtt=000.000000;"},
		{"RTPAUDIOQOSMES", "   minrxmes=088.087887;   maxrxmes=088.087887;   avgrxmes=088.087887;   stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;   avgtxmes=000.000000;   stdevtxmes=000.000000;"},
	}
}

var dialVars = []string{"DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
	"DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS"}

// Dial simulates extension from calling extension to through
// Dial(PJSIP/<to>,20); it returns once the callee is ringing.
func (s *Server) Dial(from, to string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Call{s: s, from: from, to: to, start: time.Now()}
	s.processed++
	callID := s.nextCallID()
	s.sipAuth(from, callID, s.callPort(from))
	a := s.newChannel(from, to, 4, "", c)
	a.callID = callID
	c.a, c.linkedid = a, a.uniqueid
	s.varSet(a, "SIPDOMAIN", "127.0.0.1")
	s.newexten(a, 1, "NoOp", fmt.Sprintf("Internal call from %s to %s", from, to))
	s.newexten(a, 2, "Dial", "PJSIP/"+to+",20")
	for _, v := range dialVars {
		s.varSet(a, v, "")
	}
	b := s.newChannel(to, "s", 0, a.linkedid, c)
	b.callID = uuid()
	c.b = b
	s.varSet(b, "DIALEDPEERNUMBER", to)
	b.connNum, b.connName, b.exten = from, "Ext "+from, to
	s.newexten(b, 1, "AppDial", "(Outgoing Line)")
	s.emit(chanEv("NewConnectedLine", "call,all", b))
	s.dialEv("DialBegin", a, b, field{"DialString", to})
	a.connNum, a.connName = to, "Ext "+to
	s.emit(chanEv("NewConnectedLine", "call,all", a))
	s.newstate(b, 5)
	ms := time.Since(c.start).Milliseconds()
	s.varSet(a, "RINGTIME", itoa(int(ms/1000)))
	s.varSet(a, "RINGTIME_MS", itoa(int(ms)))
	s.dialEv("DialState", a, b, field{"DialStatus", "RINGING"})
	s.updateDevice(from)
	s.updateDevice(to)
	return c
}

// Answer makes the ringing callee answer and bridges the two channels.
func (c *Call) Answer() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b == nil || c.state != callRinging {
		return
	}
	a, b := c.a, c.b
	c.state, c.answered, c.bridgeID = callUp, time.Now(), uuid()
	s.newstate(b, 6)
	s.varSet(a, "DIALSTATUS", "ANSWER")
	s.varSet(a, "DIALEDPEERNAME", b.name)
	s.varSet(a, "DIALEDPEERNUMBER", c.to)
	b.exten = "" // Asterisk clears the outgoing channel's exten on answer
	s.dialEv("DialEnd", a, b, field{"DialStatus", "ANSWER"})
	s.newstate(a, 6)
	s.bridgeEv("BridgeCreate", c.bridgeID, "simple_bridge", 0, nil)
	s.newexten(b, 1, "AppDial", "(Outgoing Line)")
	s.bridgeEv("BridgeEnter", c.bridgeID, "simple_bridge", 1, b)
	s.bridgeEv("BridgeEnter", c.bridgeID, "simple_bridge", 2, a)
	s.varSet(a, "BRIDGEPEER", b.name)
	s.varSet(a, "BRIDGEPVTCALLID", b.callID)
	s.varSet(b, "BRIDGEPEER", a.name)
	s.varSet(b, "BRIDGEPVTCALLID", a.callID)
}

// Hangup ends the call from the caller side: a normal clearing of an
// answered call, a caller cancel of a ringing one, or the end of an
// application call.
func (c *Call) Hangup() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case c.state == callEnded:
		return
	case c.b == nil:
		c.hangupApp()
	case c.state == callUp:
		c.hangupBridged()
	default:
		c.cancel()
	}
	c.state = callEnded
}

func (c *Call) hangupBridged() {
	s, a, b := c.s, c.a, c.b
	now := time.Now()
	talk := now.Sub(c.answered)
	qa := qos(talk)
	for i := range qa {
		s.varSet(a, qa[i][0], qa[i][1])
		s.varSet(b, qa[i][0]+"BRIDGED", qa[i][1])
	}
	s.emit(chanEv("HangupRequest", "call,all", a, field{"Cause", "16"}))
	for _, ch := range []*channel{a, b} {
		s.varSet(ch, "BRIDGEPEER", "")
		s.varSet(ch, "BRIDGEPVTCALLID", "")
	}
	s.bridgeEv("BridgeLeave", c.bridgeID, "native_rtp", 1, a)
	dialed := now.Sub(c.start)
	s.varSet(a, "ANSWEREDTIME", itoa(int(talk.Seconds())))
	s.varSet(a, "ANSWEREDTIME_MS", itoa(int(talk.Milliseconds())))
	s.varSet(a, "DIALEDTIME", itoa(int(dialed.Seconds())))
	s.varSet(a, "DIALEDTIME_MS", itoa(int(dialed.Milliseconds())))
	s.varSet(a, "DIALSTATUS", "ANSWER")
	s.emit(chanEv("SoftHangupRequest", "call,all", a, field{"Cause", "16"}))
	s.bridgeEv("BridgeLeave", c.bridgeID, "native_rtp", 0, b)
	s.bridgeEv("BridgeDestroy", c.bridgeID, "native_rtp", 0, nil)
	for _, q := range qos(talk) {
		s.varSet(b, q[0], q[1])
	}
	s.cdr(c, b.name, "Dial", "PJSIP/"+c.to+",20", c.start, c.answered, now, "ANSWERED")
	s.hangupEv(b, 16, "")
	s.hangupEv(a, 16, "")
	s.updateDevice(c.from)
	s.updateDevice(c.to)
}

// cancel: the caller gives up while the callee is still ringing.
func (c *Call) cancel() {
	s, a, b := c.s, c.a, c.b
	now := time.Now()
	s.emit(chanEv("HangupRequest", "call,all", a, field{"Cause", "16"}))
	s.dialEv("DialEnd", a, b, field{"DialStatus", "CANCEL"})
	s.varSet(a, "DIALSTATUS", "CANCEL")
	s.hangupEv(b, 0, "")
	s.hangupEv(a, 16, "")
	s.updateDevice(c.to)
	s.updateDevice(c.from)
	s.cdr(c, b.name, "Dial", "PJSIP/"+c.to+",20", c.start, time.Time{}, now, "NO ANSWER")
}

// dialFailed runs the dialplan after an unsuccessful Dial (priorities 3
// and 4: NoOp with the status, then Hangup).
func (c *Call) dialFailed(status string, cause int) {
	s, a := c.s, c.a
	s.varSet(a, "DIALSTATUS", status)
	s.newexten(a, 3, "NoOp", fmt.Sprintf("DIALSTATUS=%s HANGUPCAUSE=%d", status, cause))
	s.newexten(a, 4, "Hangup", "")
	s.emit(chanEv("SoftHangupRequest", "call,all", a, field{"Cause", "16"}))
}

// Busy makes the ringing callee reject the call with 486 Busy Here.
func (c *Call) Busy() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b == nil || c.state != callRinging {
		return
	}
	a, b := c.a, c.b
	now := time.Now()
	s.emit(chanEv("HangupRequest", "call,all", b, field{"Cause", "17"}, field{"TechCause", "486"}))
	s.dialEv("DialEnd", a, b, field{"DialStatus", "BUSY"})
	c.dialFailed("BUSY", 17)
	s.hangupEv(a, 17, "486")
	s.cdr(c, b.name, "Dial", "PJSIP/"+c.to+",20", c.start, time.Time{}, now, "BUSY")
	s.cdr(c, "", "Hangup", "", now, time.Time{}, now, "BUSY")
	s.hangupEv(b, 17, "486")
	s.updateDevice(c.from)
	s.updateDevice(c.to)
	c.state = callEnded
}

// NoAnswer ends a ringing call as the 20 s Dial timeout does: the callee
// is cancelled and the caller rejected.
func (c *Call) NoAnswer() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b == nil || c.state != callRinging {
		return
	}
	a, b := c.a, c.b
	now := time.Now()
	s.dialEv("DialEnd", a, b, field{"DialStatus", "NOANSWER"})
	c.dialFailed("NOANSWER", 0)
	s.hangupEv(b, 0, "")
	s.hangupEv(a, 16, "")
	s.updateDevice(c.to)
	s.updateDevice(c.from)
	s.cdr(c, b.name, "Dial", "PJSIP/"+c.to+",20", c.start, time.Time{}, now, "NO ANSWER")
	s.cdr(c, "", "Hangup", "", now, time.Time{}, now, "NO ANSWER")
	c.state = callEnded
}

// CallApp simulates from calling an application extension: "700" enters
// Stasis(monitor-app), anything else is answered by Echo (like "600").
// The call is up when CallApp returns; Hangup ends it.
func (s *Server) CallApp(from, exten string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Call{s: s, from: from, to: exten, start: time.Now(), app: "Echo"}
	if exten == "700" {
		c.app = "Stasis"
	}
	s.processed++
	callID := s.nextCallID()
	s.sipAuth(from, callID, s.callPort(from))
	a := s.newChannel(from, exten, 4, "", c)
	a.callID = callID
	c.a, c.linkedid = a, a.uniqueid
	s.varSet(a, "SIPDOMAIN", "127.0.0.1")
	if c.app == "Stasis" {
		s.newexten(a, 1, "NoOp", "Into Stasis monitor-app")
		s.newexten(a, 2, "Stasis", "monitor-app")
		s.varSet(a, "STASISSTATUS", "")
		s.newstate(a, 6)
		s.updateDevice(from)
	} else {
		s.newexten(a, 1, "Answer", "")
		s.newstate(a, 6)
		s.updateDevice(from)
		s.newexten(a, 2, "Echo", "")
	}
	c.state, c.answered = callUp, time.Now()
	return c
}

func (c *Call) hangupApp() {
	s, a := c.s, c.a
	now := time.Now()
	for _, q := range qos(now.Sub(c.answered)) {
		s.varSet(a, q[0], q[1])
	}
	s.emit(chanEv("HangupRequest", "call,all", a))
	if c.app == "Stasis" {
		s.varSet(a, "STASISSTATUS", "SUCCESS")
		s.emit(chanEv("SoftHangupRequest", "call,all", a, field{"Cause", "16"}))
		s.hangupEv(a, 0, "")
		s.cdr(c, "", "Stasis", "monitor-app", c.start, c.answered, now, "ANSWERED")
	} else {
		s.emit(chanEv("SoftHangupRequest", "call,all", a, field{"Cause", "16"}))
		s.cdr(c, "", "Echo", "", c.start, c.answered, now, "ANSWERED")
		s.hangupEv(a, 0, "")
	}
	s.updateDevice(c.from)
}
