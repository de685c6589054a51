package pbxsim

import (
	"fmt"
	"time"
)

// localLeg is the Local channel pair of a call dialled through
// Local/<exten>@internal/n, and the call its ;2 half places.
type localLeg struct {
	one, two *channel
	inner    *Call // ;2 dialling the endpoint
}

// newLocalPair creates Local/<exten>@<context>-XXXXXXXX;1 (Down) and ;2
// (Ring), both inheriting the requester's Linkedid, as
// ast_unreal_new_channels does.
func (s *Server) newLocalPair(exten, linkedid string, call *Call) (*channel, *channel) {
	base := fmt.Sprintf("Local/%s@internal-%08x", exten, s.localSeq)
	s.localSeq++
	mk := func(suffix string, state int) *channel {
		now := time.Now()
		seq := s.nextChanSeq()
		c := &channel{name: base + suffix, state: state, context: "internal", exten: exten, priority: 1,
			uniqueid: uniqueID(now, seq), linkedid: linkedid, created: now, call: call, local: true}
		s.addChannel(c)
		return c
	}
	return mk(";1", 0), mk(";2", 4)
}

func (s *Server) localBridge(one, two *channel, exten string) {
	m := msg{{"Event", "LocalBridge"}, {"Privilege", "call,all"}}
	m = append(m, one.block("LocalOne")...)
	m = append(m, two.block("LocalTwo")...)
	s.emit(append(m, field{"Context", "internal"}, field{"Exten", exten}, field{"LocalOptimization", "No"}))
}

// DialLocal simulates from calling extension to through a Local channel
// (Dial(Local/<to>@internal/n,20), as follow-me or ring-group dialplans
// do): the /n keeps the Local pair in the call, so LocalBridge is followed
// by two bridges, caller-;1 and ;2-callee. Answer and Hangup work as for Dial.
func (s *Server) DialLocal(from, to string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, c := s.inbound(from, to)
	dest := to + "@internal/n"
	c.dialData = "Local/" + dest + ",20"
	s.newexten(a, 1, "NoOp", fmt.Sprintf("Internal call from %s to %s", a.cidNum, to))
	s.newexten(a, 2, "Dial", c.dialData)
	for _, v := range dialVars {
		s.varSet(a, v, "")
	}
	one, two := s.newLocalPair(to, a.linkedid, c)
	c.b = one
	c.local = &localLeg{one: one, two: two}
	s.varSet(one, "DIALEDPEERNUMBER", dest)
	one.connNum, one.connName = a.cidNum, a.cidName
	s.connectedLine(one)
	s.localBridge(one, two, to)
	s.dialEv("DialBegin", a, one, field{"DialString", dest})
	// ;2 runs the dialplan of the target extension.
	inner := &Call{s: s, a: two, from: from, to: to, start: time.Now(), linkedid: a.linkedid, outer: c}
	two.call = inner
	two.cidNum, two.cidName = a.cidNum, a.cidName
	c.local.inner = inner
	s.dialEndpoint(inner, two, to)
	s.newstate(one, 5)
	s.dialEv("DialState", a, one, field{"DialStatus", "RINGING"})
	s.updateDevice(from)
	c.state = callRinging
	return c
}

func (c *Call) answerLocal() {
	s, l := c.s, c.local
	a, one := c.a, l.one
	l.inner.answerBridge()
	c.state, c.answered = callUp, time.Now()
	s.newstate(one, 6)
	s.varSet(a, "DIALSTATUS", "ANSWER")
	s.varSet(a, "DIALEDPEERNAME", one.name)
	s.dialEv("DialEnd", a, one, field{"DialStatus", "ANSWER"})
	if a.state != 6 {
		s.newstate(a, 6)
	}
	c.br = s.newBridge()
	s.joinPair(c.br, one, a)
}

// hangupLocal tears down a Local-channel call from any of its channels.
func (c *Call) hangupLocal(who *channel, amiCause int) {
	s, l := c.s, c.local
	a, one, two := c.a, l.one, l.two
	inner := l.inner
	cause := 16
	if amiCause >= 0 {
		cause = amiCause
	}
	req := func(ch *channel) {
		if amiCause >= 0 && ch == who {
			s.softHangupRequest(ch, cause)
		} else {
			s.hangupRequest(ch, 16, "")
		}
	}
	if c.state != callUp {
		req(a)
		s.dialEv("DialEnd", a, one, field{"DialStatus", "CANCEL"})
		s.hangupEv(one, 0, "")
		s.dialEv("DialEnd", two, inner.b, field{"DialStatus", "CANCEL"})
		s.hangupEv(inner.b, 0, "")
		s.hangupEv(two, 16, "")
		s.hangupEv(a, 16, "")
		s.updateDevice(inner.b.ext)
		s.updateDevice(a.ext)
		s.cdr(c, one.name, "Dial", c.dialData, c.start, time.Time{}, time.Now(), "NO ANSWER")
		return
	}
	// Answered: whoever hangs up, both bridges come down outside in.
	req(who)
	for _, pair := range []struct {
		br   *bridge
		x, y *channel
	}{{c.br, a, one}, {inner.br, two, inner.b}} {
		if pair.br == nil {
			continue
		}
		s.bridgeLeave(pair.br, pair.x)
		s.bridgeLeave(pair.br, pair.y)
		s.bridgeDestroy(pair.br)
	}
	now := time.Now()
	s.cdr(c, one.name, "Dial", c.dialData, c.start, c.answered, now, "ANSWERED")
	for _, ch := range []*channel{inner.b, two, one, a} {
		s.hangupEv(ch, cause, "")
	}
	inner.state = callEnded
	s.updateDevice(inner.b.ext)
	s.updateDevice(a.ext)
}
