package pbxsim

import (
	"strings"
	"time"
)

// origination is the state of an originated call while its first leg
// (the phone named in Channel) rings.
type origination struct {
	ringing       bool
	actionID      string
	context       string
	exten         string
	priority      int
	app, appData  string
	cidNum        string
	cidName       string
	answer, abort *time.Timer
	silent        bool // synchronous AMI originate: no OriginateResponse
}

// OriginateRequest describes an Originate: Endpoint is the phone rung
// first (Channel: PJSIP/<Endpoint>); when it answers it runs Exten in the
// internal context, or Application(Data) when Application is set.
type OriginateRequest struct {
	Endpoint    string
	Exten       string
	Priority    int // default 1
	Application string
	Data        string
	CallerID    string // "Name" <num>, optional
	Timeout     time.Duration
	ActionID    string // copied into OriginateResponse
}

// Originate starts a click-to-call like the AMI Originate action with
// Async: yes. The endpoint rings; it is answered after
// Config.OriginateAnswerAfter (or by Call.Answer), then dials the target,
// which rings until answered. OriginateResponse follows the first leg's
// answer (or failure).
func (s *Server) Originate(req OriginateRequest) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.originate(req)
}

func (s *Server) originate(req OriginateRequest) *Call {
	if req.Priority == 0 {
		req.Priority = 1
	}
	if req.Timeout == 0 {
		req.Timeout = 30 * time.Second
	}
	c := &Call{s: s, from: req.Endpoint, to: req.Exten, start: time.Now()}
	or := &origination{ringing: true, actionID: req.ActionID, context: "internal", exten: req.Exten,
		priority: req.Priority, app: req.Application, appData: req.Data}
	or.cidName, or.cidNum = parseCallerID(req.CallerID)
	c.orig = or
	s.processed++
	o := s.newChannel(req.Endpoint, "s", 0, "", c)
	o.callID = uuid()
	c.a, c.linkedid = o, o.uniqueid
	if or.cidNum != "" || or.cidName != "" {
		o.connNum, o.connName = or.cidNum, or.cidName
		s.connectedLine(o)
	}
	s.dialEv("DialBegin", nil, o, field{"DialString", req.Endpoint})
	s.newstate(o, 5)
	s.updateDevice(req.Endpoint)
	s.dialEv("DialState", nil, o, field{"DialStatus", "RINGING"})
	c.state = callRinging
	if d := s.cfg.OriginateAnswerAfter; d >= 0 {
		or.answer = time.AfterFunc(d, func() { c.Answer() })
	}
	or.abort = time.AfterFunc(req.Timeout, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && c.orig.ringing {
			c.failOriginate(19, "NOANSWER", 3)
		}
	})
	return c
}

func parseCallerID(cid string) (name, num string) {
	cid = strings.TrimSpace(cid)
	if cid == "" {
		return "", ""
	}
	if i := strings.LastIndex(cid, "<"); i >= 0 && strings.HasSuffix(cid, ">") {
		return strings.Trim(strings.TrimSpace(cid[:i]), `"`), cid[i+1 : len(cid)-1]
	}
	return "", cid
}

func (c *Call) originateResponse(ok bool, reason int) {
	s, o, or := c.s, c.a, c.orig
	if or.silent {
		return
	}
	s.emit(originateResponseMsg(or, ok, reason, o.name, o.uniqueid))
}

// originateUnreachable reports an async originate whose channel could not
// be created: fast_originate names the requested channel and has no
// Uniqueid.
func (s *Server) originateUnreachable(req OriginateRequest, requested, context string) {
	or := &origination{actionID: req.ActionID, context: context, exten: req.Exten, app: req.Application, appData: req.Data}
	or.cidName, or.cidNum = parseCallerID(req.CallerID)
	s.emit(originateResponseMsg(or, false, 0, requested, "<unknown>"))
}

// originateResponseMsg is fast_originate's OriginateResponse.
func originateResponseMsg(or *origination, ok bool, reason int, channel, uniqueid string) msg {
	m := msg{{"Event", "OriginateResponse"}, {"Privilege", "call,all"}}
	if or.actionID != "" {
		m = append(m, field{"ActionID", or.actionID})
	}
	resp := "Failure"
	if ok {
		resp = "Success"
	}
	m = append(m, field{"Response", resp}, field{"Channel", channel})
	if or.app != "" {
		m = append(m, field{"Application", or.app}, field{"Data", or.appData})
	} else {
		m = append(m, field{"Context", or.context}, field{"Exten", or.exten})
	}
	return append(m, field{"Reason", itoa(reason)}, field{"Uniqueid", uniqueid},
		field{"CallerIDNum", orUnknown(or.cidNum)}, field{"CallerIDName", orUnknown(or.cidName)})
}

func (or *origination) stopTimers() {
	if or.answer != nil {
		or.answer.Stop()
	}
	if or.abort != nil {
		or.abort.Stop()
	}
}

// answerOriginated: the phone answered; the channel moves to the
// requested context/extension (or application) and OriginateResponse
// reports reason 4 (AST_CONTROL_ANSWER).
func (c *Call) answerOriginated() {
	s, o, or := c.s, c.a, c.orig
	or.ringing = false
	or.stopTimers()
	s.newstate(o, 6)
	s.dialEv("DialEnd", nil, o, field{"DialStatus", "ANSWER"})
	c.answered = time.Now()
	if or.app != "" {
		c.originateResponse(true, 4)
		c.app = or.app
		s.newexten(o, 1, or.app, or.appData)
		c.state = callUp
		return
	}
	o.context, o.exten, o.priority = or.context, or.exten, or.priority
	c.originateResponse(true, 4)
	if !s.extensionExists(or.context, or.exten) {
		// Nowhere to go (Async originate without Exten): the PBX hangs up.
		s.softHangupRequest(o, 16)
		s.hangupEv(o, 16, "")
		s.updateDevice(o.ext)
		c.state = callEnded
		return
	}
	s.runDialplan(c, o, or.exten)
}

// cancelOriginate: the first leg is hung up while it rings.
func (c *Call) cancelOriginate(amiCause int) {
	if amiCause >= 0 {
		c.s.softHangupRequest(c.a, amiCause)
		c.failOriginate(amiCause, "CANCEL", 1)
		return
	}
	c.failOriginate(17, "BUSY", 5)
}

func (c *Call) failOriginate(cause int, status string, reason int) {
	s, o, or := c.s, c.a, c.orig
	or.ringing = false
	or.stopTimers()
	s.dialEv("DialEnd", nil, o, field{"DialStatus", status})
	s.hangupEv(o, cause, "")
	s.updateDevice(o.ext)
	c.originateResponse(false, reason)
	c.state = callEnded
}

// runDialplan runs extension exten of context internal on channel a, as
// the reference PBX's dialplan does: endpoints are dialled, 600 is Echo,
// 700 Stasis(monitor-app), 800 the queue.
func (s *Server) runDialplan(c *Call, a *channel, exten string) {
	a.context, a.exten = "internal", exten
	c.to = exten
	switch exten {
	case "600", "700", "800":
		s.runApp(c, a, exten)
	default:
		s.dialEndpoint(c, a, exten)
	}
}

// extensionExists reports whether internal has exten (the reference
// dialplan: the endpoints via _1XXX, 600, 700, 701, 800, 610, _9XXX).
func (s *Server) extensionExists(context, exten string) bool {
	if context != "internal" {
		return false
	}
	switch exten {
	case "600", "610", "700", "701", "800":
		return true
	}
	if s.eps[exten] != nil {
		return true
	}
	return len(exten) == 4 && (exten[0] == '1' || exten[0] == '9') && atoiOr(exten, -1) >= 0
}
