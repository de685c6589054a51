package pbxsim

import (
	"fmt"
	"math/rand/v2"
	"time"
)

type callState int

const (
	callRinging callState = iota
	callUp
	callEnded
)

// Call is a simulated call: a caller channel a running the dialplan and,
// for Dial/Queue calls, the dialled channel b, bridged once answered.
// Application calls (Echo, Stasis) have no b.
type Call struct {
	s        *Server
	a, b     *channel
	from, to string // calling extension, dialled extension
	app      string // "Echo", "Stasis" or "Queue" for application calls
	state    callState
	br       *bridge
	start    time.Time
	answered time.Time
	linkedid string
	dialData string // Dial() argument, e.g. "PJSIP/1002,20"

	q     *queueEntry // queue calls
	local *localLeg   // calls dialled through a Local channel
	orig  *origination
	outer *Call // for the inner leg of a Local call: the call it serves

	plain    bool   // bridged without a Dial (transfer result, Bridge action)
	parkSlot int    // parked calls
	parker   string // ParkerDialString of a parked call
}

// Linkedid returns the Linkedid shared by all channels of the call.
func (c *Call) Linkedid() string { return c.linkedid }

// Channels returns the names of the call's live channels, caller first.
func (c *Call) Channels() []string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	var out []string
	for _, ch := range []*channel{c.a, c.b} {
		if ch != nil && !ch.gone {
			out = append(out, ch.name)
		}
	}
	return out
}

// Uniqueids returns the Uniqueids of the call's channels, caller first.
func (c *Call) Uniqueids() []string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	var out []string
	for _, ch := range []*channel{c.a, c.b} {
		if ch != nil {
			out = append(out, ch.uniqueid)
		}
	}
	return out
}

// Up reports whether the call is answered and not yet ended.
func (c *Call) Up() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.state == callUp
}

// Ended reports whether the call is over.
func (c *Call) Ended() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.state == callEnded
}

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
	a := c.a
	s.emit(msg{{"Event", "Cdr"}, {"Privilege", "cdr,all"}, {"AccountCode", ""}, {"Source", a.cidNum},
		{"Destination", c.to}, {"DestinationContext", "internal"},
		{"CallerID", fmt.Sprintf("%q <%s>", a.cidName, a.cidNum)}, {"Channel", a.name},
		{"DestinationChannel", dst}, {"LastApplication", lastApp}, {"LastData", lastData},
		{"StartTime", cdrTime(start)}, {"AnswerTime", cdrTime(answer)}, {"EndTime", cdrTime(end)},
		{"Duration", itoa(int(end.Sub(start).Seconds()))}, {"BillableSeconds", itoa(bill)},
		{"Disposition", disp}, {"AMAFlags", "DOCUMENTATION"}, {"UniqueID", a.uniqueid}, {"UserField", ""}})
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

// inbound creates the channel of a phone calling exten: the INVITE's digest
// challenge, Newchannel in state Ring, and the SIPDOMAIN variable.
func (s *Server) inbound(from, exten string) (*channel, *Call) {
	c := &Call{s: s, from: from, to: exten, start: time.Now()}
	s.processed++
	callID := s.nextCallID()
	s.sipAuth(from, callID, s.callPort(from))
	a := s.newChannel(from, exten, 4, "", c)
	a.callID = callID
	c.a, c.linkedid = a, a.uniqueid
	s.varSet(a, "SIPDOMAIN", "127.0.0.1")
	return a, c
}

// Dial simulates extension from calling extension to through
// Dial(PJSIP/<to>,20); it returns once the callee is ringing.
func (s *Server) Dial(from, to string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, c := s.inbound(from, to)
	s.dialEndpoint(c, a, to)
	return c
}

// dialEndpoint runs priorities 1 and 2 of _1XXX (NoOp, Dial) on a and
// rings the callee, emitting events in the order of the call_answered
// capture (ARI device states right after the callee rings, AMI ones after
// DialState).
func (s *Server) dialEndpoint(c *Call, a *channel, to string) {
	c.to = to
	c.dialData = "PJSIP/" + to + ",20"
	s.newexten(a, 1, "NoOp", fmt.Sprintf("Internal call from %s to %s", a.cidNum, a.exten))
	s.newexten(a, 2, "Dial", c.dialData)
	for _, v := range dialVars {
		s.varSet(a, v, "")
	}
	b := s.newChannel(to, "s", 0, a.linkedid, c)
	b.callID = uuid()
	c.b = b
	s.varSet(b, "DIALEDPEERNUMBER", to)
	b.connNum, b.connName, b.exten = a.cidNum, a.cidName, a.exten
	s.newexten(b, 1, "AppDial", "(Outgoing Line)")
	s.connectedLine(b)
	s.dialEv("DialBegin", a, b, field{"DialString", to})
	a.connNum, a.connName = b.cidNum, b.cidName
	s.connectedLine(a)
	s.newstate(b, 5)
	s.epARI(a.ext)
	s.epARI(to)
	ms := time.Since(c.start).Milliseconds()
	s.varSet(a, "RINGTIME", itoa(int(ms/1000)))
	s.varSet(a, "RINGTIME_MS", itoa(int(ms)))
	s.dialEv("DialState", a, b, field{"DialStatus", "RINGING"})
	s.epAMI(a.ext)
	s.epAMI(to)
	c.state = callRinging
}

// Answer answers whatever is ringing: the callee of a Dial or queue call,
// or the originating phone of an Originate (which then dials its target).
func (c *Call) Answer() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c.answer()
}

func (c *Call) answer() {
	switch {
	case c.state == callEnded || c.s.closed:
	case c.orig != nil && c.orig.ringing:
		c.answerOriginated()
	case c.q != nil:
		c.answerQueue(c.q.ringing())
	case c.local != nil && c.state == callRinging:
		c.answerLocal()
	case c.b != nil && c.state == callRinging:
		c.answerBridge()
	}
}

func (c *Call) answerBridge() {
	s := c.s
	a, b := c.a, c.b
	c.state, c.answered = callUp, time.Now()
	s.newstate(b, 6)
	s.varSet(a, "DIALSTATUS", "ANSWER")
	s.varSet(a, "DIALEDPEERNAME", b.name)
	s.varSet(a, "DIALEDPEERNUMBER", c.to)
	b.exten = "" // Asterisk clears the outgoing channel's exten on answer
	s.dialEv("DialEnd", a, b, field{"DialStatus", "ANSWER"})
	if a.state != 6 {
		s.newstate(a, 6)
	}
	c.br = s.newBridge()
	s.newexten(b, 1, "AppDial", "(Outgoing Line)")
	s.joinPair(c.br, b, a)
}

// joinPair puts two channels into a fresh bridge the way the captures
// show: both BridgeEnter events, then BRIDGEPEER/BRIDGEPVTCALLID three
// times over as the bridge settles on native_rtp.
func (s *Server) joinPair(br *bridge, first, second *channel) {
	s.bridgeEnter(br, first)
	s.bridgeEnter(br, second)
	for range 3 {
		s.varSet(second, "BRIDGEPEER", first.name)
		s.varSet(second, "BRIDGEPVTCALLID", first.callID)
		s.varSet(first, "BRIDGEPEER", second.name)
		s.varSet(first, "BRIDGEPVTCALLID", second.callID)
	}
	br.tech = "native_rtp"
}

// Hangup ends the call from the caller side: a normal clearing of an
// answered call, a caller cancel of a ringing one, or the end of an
// application call.
func (c *Call) Hangup() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c.hangupFrom(c.a, -1)
}

// HangupCallee ends an answered call from the called side (the callee's
// phone sends BYE); the caller's dialplan then continues and hangs up.
func (c *Call) HangupCallee() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b != nil {
		c.hangupFrom(c.b, -1)
	}
}

// hangupFrom ends the call because channel who hangs up. amiCause >= 0
// means the hangup came from the AMI Hangup action (a soft hangup with
// that cause) rather than from the phone.
func (c *Call) hangupFrom(who *channel, amiCause int) {
	if c.state == callEnded || who == nil || who.gone {
		return
	}
	switch {
	case c.orig != nil && c.orig.ringing:
		c.cancelOriginate(amiCause)
	case c.q != nil && c.state != callUp:
		c.abandonQueue(amiCause)
	case c.local != nil:
		c.hangupLocal(who, amiCause)
	case c.app == "Park":
		c.giveUpParked(amiCause)
	case c.b == nil:
		c.hangupApp(amiCause)
	case c.state == callUp && who == c.b:
		c.endBridgedCallee(amiCause)
	case c.state == callUp:
		c.endBridged(amiCause)
	case who == c.b:
		if amiCause == 17 {
			c.busy()
		} else {
			c.noAnswer()
		}
	default:
		c.cancel(amiCause)
	}
	c.state = callEnded
}

// endBridged: the caller hangs up an answered call (call_answered capture).
func (c *Call) endBridged(amiCause int) {
	s, a, b := c.s, c.a, c.b
	cause := 16
	if amiCause >= 0 {
		cause = amiCause
	}
	now := time.Now()
	talk := now.Sub(c.answered)
	qa := qos(talk)
	for i := range qa {
		s.varSet(a, qa[i][0], qa[i][1])
		s.varSet(b, qa[i][0]+"BRIDGED", qa[i][1])
	}
	if amiCause >= 0 {
		s.softHangupRequest(a, cause)
	} else {
		s.hangupRequest(a, 16, "")
	}
	c.endQueueAgent("caller")
	for _, ch := range []*channel{a, b} {
		s.varSet(ch, "BRIDGEPEER", "")
		s.varSet(ch, "BRIDGEPVTCALLID", "")
	}
	br := c.br
	s.bridgeLeave(br, a)
	if !c.plain && c.q == nil {
		dialed := now.Sub(c.start)
		s.varSet(a, "ANSWEREDTIME", itoa(int(talk.Seconds())))
		s.varSet(a, "ANSWEREDTIME_MS", itoa(int(talk.Milliseconds())))
		s.varSet(a, "DIALEDTIME", itoa(int(dialed.Seconds())))
		s.varSet(a, "DIALEDTIME_MS", itoa(int(dialed.Milliseconds())))
		s.varSet(a, "DIALSTATUS", "ANSWER")
	}
	s.softHangupRequest(a, cause)
	s.bridgeLeave(br, b)
	s.bridgeDestroy(br)
	for _, q := range qos(talk) {
		s.varSet(b, q[0], q[1])
	}
	s.cdr(c, b.name, c.lastApp(), c.dialData, c.start, c.answered, now, "ANSWERED")
	// The capture has the AMI Hangups callee first, the ARI ChannelDestroyed
	// events caller first.
	s.amiHangup(b, cause, "")
	s.amiHangup(a, cause, "")
	s.ariDestroyed(a, cause, "")
	s.ariDestroyed(b, cause, "")
	s.dropChannel(a)
	s.dropChannel(b)
	s.updateDevice(a.ext)
	s.updateDevice(b.ext)
}

// endBridgedCallee: the callee hangs up; the caller's Dial returns and
// the dialplan runs priorities 3 (NoOp) and 4 (Hangup).
func (c *Call) endBridgedCallee(amiCause int) {
	s, a, b := c.s, c.a, c.b
	cause := 16
	if amiCause >= 0 {
		cause = amiCause
		s.softHangupRequest(b, cause)
	} else {
		s.hangupRequest(b, 16, "")
	}
	c.endQueueAgent("agent")
	now := time.Now()
	talk := now.Sub(c.answered)
	for _, ch := range []*channel{b, a} {
		s.varSet(ch, "BRIDGEPEER", "")
		s.varSet(ch, "BRIDGEPVTCALLID", "")
	}
	br := c.br
	s.bridgeLeave(br, b)
	for _, q := range qos(talk) {
		s.varSet(b, q[0], q[1])
	}
	s.hangupEv(b, cause, "")
	s.bridgeLeave(br, a)
	s.bridgeDestroy(br)
	for _, q := range qos(talk) {
		s.varSet(a, q[0], q[1])
	}
	if c.q != nil || c.plain {
		// Queue() and originated applications end with the channel.
		s.softHangupRequest(a, 16)
		s.cdr(c, b.name, c.lastApp(), c.dialData, c.start, c.answered, now, "ANSWERED")
		s.hangupEv(a, 16, "")
	} else {
		dialed := now.Sub(c.start)
		s.varSet(a, "ANSWEREDTIME", itoa(int(talk.Seconds())))
		s.varSet(a, "ANSWEREDTIME_MS", itoa(int(talk.Milliseconds())))
		s.varSet(a, "DIALEDTIME", itoa(int(dialed.Seconds())))
		s.varSet(a, "DIALEDTIME_MS", itoa(int(dialed.Milliseconds())))
		s.varSet(a, "DIALSTATUS", "ANSWER")
		s.newexten(a, 3, "NoOp", fmt.Sprintf("DIALSTATUS=ANSWER HANGUPCAUSE=%d", cause))
		s.newexten(a, 4, "Hangup", "")
		s.softHangupRequest(a, 16)
		s.cdr(c, b.name, c.lastApp(), c.dialData, c.start, c.answered, now, "ANSWERED")
		s.hangupEv(a, 16, "")
	}
	s.updateDevice(b.ext)
	s.updateDevice(a.ext)
}

func (c *Call) lastApp() string {
	if c.q != nil {
		return "Queue"
	}
	return "Dial"
}

// cancel: the caller gives up while the callee is still ringing.
func (c *Call) cancel(amiCause int) {
	s, a, b := c.s, c.a, c.b
	now := time.Now()
	if amiCause >= 0 {
		s.softHangupRequest(a, amiCause)
	} else {
		s.hangupRequest(a, 16, "")
	}
	s.dialEv("DialEnd", a, b, field{"DialStatus", "CANCEL"})
	s.varSet(a, "DIALSTATUS", "CANCEL")
	s.hangupEv(b, 0, "")
	s.hangupEv(a, 16, "")
	s.updateDevice(b.ext)
	s.updateDevice(a.ext)
	s.cdr(c, b.name, "Dial", c.dialData, c.start, time.Time{}, now, "NO ANSWER")
}

// dialFailed runs the dialplan after an unsuccessful Dial (priorities 3
// and 4: NoOp with the status, then Hangup).
func (c *Call) dialFailed(status string, cause int) {
	s, a := c.s, c.a
	s.varSet(a, "DIALSTATUS", status)
	s.newexten(a, 3, "NoOp", fmt.Sprintf("DIALSTATUS=%s HANGUPCAUSE=%d", status, cause))
	s.newexten(a, 4, "Hangup", "")
	s.softHangupRequest(a, 16)
}

// Busy makes the ringing callee reject the call with 486 Busy Here.
func (c *Call) Busy() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b == nil || c.state != callRinging || c.q != nil || c.local != nil {
		return
	}
	c.busy()
	c.state = callEnded
}

func (c *Call) busy() {
	s, a, b := c.s, c.a, c.b
	now := time.Now()
	s.hangupRequest(b, 17, "486")
	s.dialEv("DialEnd", a, b, field{"DialStatus", "BUSY"})
	c.dialFailed("BUSY", 17)
	s.hangupEv(a, 17, "486")
	s.cdr(c, b.name, "Dial", c.dialData, c.start, time.Time{}, now, "BUSY")
	s.cdr(c, "", "Hangup", "", now, time.Time{}, now, "BUSY")
	s.hangupEv(b, 17, "486")
	s.updateDevice(a.ext)
	s.updateDevice(b.ext)
}

// NoAnswer ends a ringing call as the 20 s Dial timeout does: the callee
// is cancelled and the caller rejected.
func (c *Call) NoAnswer() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b == nil || c.state != callRinging || c.q != nil || c.local != nil {
		return
	}
	c.noAnswer()
	c.state = callEnded
}

func (c *Call) noAnswer() {
	s, a, b := c.s, c.a, c.b
	now := time.Now()
	s.dialEv("DialEnd", a, b, field{"DialStatus", "NOANSWER"})
	c.dialFailed("NOANSWER", 0)
	s.amiHangup(b, 0, "")
	s.amiHangup(a, 16, "")
	s.ariDestroyed(b, 0, "")
	s.ariDestroyed(a, 16, "")
	s.dropChannel(b)
	s.dropChannel(a)
	s.updateDevice(b.ext)
	s.updateDevice(a.ext)
	s.cdr(c, b.name, "Dial", c.dialData, c.start, time.Time{}, now, "NO ANSWER")
	s.cdr(c, "", "Hangup", "", now, time.Time{}, now, "NO ANSWER")
}

// CallApp simulates from calling an application extension: "700" enters
// Stasis(monitor-app), "800" the queue "support" (see CallQueue), anything
// else is answered by Echo (like "600"). The call is up when CallApp
// returns (for 800: waiting in the queue); Hangup ends it.
func (s *Server) CallApp(from, exten string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, c := s.inbound(from, exten)
	s.runApp(c, a, exten)
	return c
}

// runApp runs an application extension on a channel already in the
// dialplan.
func (s *Server) runApp(c *Call, a *channel, exten string) {
	switch exten {
	case "700":
		c.app = "Stasis"
		s.newexten(a, 1, "NoOp", "Into Stasis monitor-app")
		s.newexten(a, 2, "Stasis", "monitor-app")
		s.varSet(a, "STASISSTATUS", "")
		s.stasisStart(a, "monitor-app")
		if a.state != 6 {
			s.newstate(a, 6)
		}
		s.updateDevice(a.ext)
		s.monitorApp(a)
	case "800":
		c.app = "Queue"
		s.enterQueue(c, a)
		return
	default:
		c.app = "Echo"
		s.newexten(a, 1, "Answer", "")
		if a.state != 6 {
			s.newstate(a, 6)
		}
		s.updateDevice(a.ext)
		s.newexten(a, 2, "Echo", "")
	}
	c.state, c.answered = callUp, time.Now()
}

func (c *Call) hangupApp(amiCause int) {
	s, a := c.s, c.a
	now := time.Now()
	for _, q := range qos(now.Sub(c.answered)) {
		s.varSet(a, q[0], q[1])
	}
	if amiCause >= 0 {
		s.softHangupRequest(a, amiCause)
	} else {
		s.hangupRequest(a, -1, "")
	}
	lastData := ""
	if c.app == "Stasis" {
		lastData = "monitor-app"
		s.stasisEnd(a)
		s.varSet(a, "STASISSTATUS", "SUCCESS")
		s.softHangupRequest(a, 16)
		s.hangupEv(a, 0, "")
		s.cdr(c, "", "Stasis", lastData, c.start, c.answered, now, "ANSWERED")
	} else {
		s.softHangupRequest(a, 16)
		s.cdr(c, "", c.app, lastData, c.start, c.answered, now, "ANSWERED")
		s.hangupEv(a, 0, "")
	}
	s.updateDevice(a.ext)
}
