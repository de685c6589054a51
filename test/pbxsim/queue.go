package pbxsim

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Device state numbers app_queue reports as Status (ast_device_state).
const (
	qsNotInUse    = 1
	qsInUse       = 2
	qsBusy        = 3
	qsUnavailable = 5
)

type queueMember struct {
	ext, iface, name string
	status           int
	paused           bool
	pausedReason     string
	lastPause        int64
	calls            int
	lastCall         int64
	loginTime        int64
	inCall           bool
}

type queue struct {
	name      string
	members   []*queueMember
	entries   []*queueEntry
	completed int
	abandoned int
	holdtime  int
	talktime  int
}

// queueEntry is a caller waiting in (or connected through) the queue.
type queueEntry struct {
	q        *queue
	call     *Call
	pos      int
	opos     int
	start    time.Time
	attempts []*queueAttempt
	agent    *queueAttempt // the member that answered
	ringAt   time.Time
	connect  time.Time
}

type queueAttempt struct {
	m  *queueMember
	ch *channel
}

func (e *queueEntry) ringing() *queueAttempt {
	if len(e.attempts) == 0 {
		return nil
	}
	return e.attempts[0]
}

func devStatus(st string) int {
	switch st {
	case "NOT_INUSE":
		return qsNotInUse
	case "INUSE":
		return qsInUse
	case "BUSY":
		return qsBusy
	}
	return qsUnavailable
}

// newQueue builds queue "support" with static members (queues.conf of the
// reference PBX: strategy ringall, ringinuse no).
func (s *Server) newQueue(members []string) *queue {
	q := &queue{name: "support"}
	for _, ext := range members {
		m := &queueMember{ext: ext, iface: "PJSIP/" + ext, name: "Ext " + ext, loginTime: s.started.Unix(), status: qsUnavailable}
		if e := s.eps[ext]; e != nil {
			m.status = devStatus(e.computeDev())
		}
		q.members = append(q.members, m)
		s.devs["Queue:"+q.name+"_pause_"+m.iface] = &device{ami: "NOT_INUSE", ari: "NOT_INUSE"}
	}
	av := q.availState(s)
	s.devs["Queue:"+q.name+"_avail"] = &device{ami: av, ari: av}
	return q
}

func (q *queue) member(ifaceOrExt string) *queueMember {
	for _, m := range q.members {
		if strings.EqualFold(m.iface, ifaceOrExt) || m.ext == ifaceOrExt {
			return m
		}
	}
	return nil
}

// available mirrors is_member_available with ringinuse=no: only a
// NOT_INUSE, unpaused member can take a call.
func (s *Server) memberAvailable(m *queueMember) bool {
	e := s.eps[m.ext]
	return e != nil && e.computeDev() == "NOT_INUSE" && !m.paused
}

// availState is the Queue:<name>_avail hint: NOT_INUSE while some member
// is available, INUSE otherwise.
func (q *queue) availState(s *Server) string {
	for _, m := range q.members {
		if s.memberAvailable(m) {
			return "NOT_INUSE"
		}
	}
	return "INUSE"
}

func (q *queue) memberBlob(m *queueMember) []field {
	incall, paused := 0, 0
	if m.inCall {
		incall = 1
	}
	if m.paused {
		paused = 1
	}
	return []field{{"Queue", q.name}, {"MemberName", m.name}, {"Interface", m.iface}, {"StateInterface", m.iface},
		{"Membership", "static"}, {"Penalty", "0"}, {"CallsTaken", itoa(m.calls)}, {"LastCall", itoa(int(m.lastCall))},
		{"LastPause", itoa(int(m.lastPause))}, {"LoginTime", itoa(int(m.loginTime))}, {"InCall", itoa(incall)},
		{"Status", itoa(m.status)}, {"Paused", itoa(paused)}, {"PausedReason", m.pausedReason},
		{"Ringinuse", "0"}, {"Wrapuptime", "0"}}
}

// queueDeviceChanged is app_queue's device_state_cb for an endpoint: on
// AMI a member whose status changed gets QueueMemberStatus, then the
// queue's _avail hint is re-announced (it only shows when it changes).
func (s *Server) queueDeviceChanged(ext string, amiSide, ariSide bool) {
	q := s.queue
	m := q.member(ext)
	if m == nil {
		return
	}
	if amiSide {
		if st := devStatus(s.eps[ext].computeDev()); st != m.status {
			m.status = st
			if st == qsNotInUse && m.inCall {
				m.inCall = false
			}
			s.emit(append(msg{{"Event", "QueueMemberStatus"}, {"Privilege", "agent,all"}}, q.memberBlob(m)...))
		}
		s.deviceAMI("Queue:"+q.name+"_avail", q.availState(s))
	}
	if ariSide {
		s.deviceARI("Queue:"+q.name+"_avail", q.availState(s))
	}
}

func (s *Server) queueEvent(ev string, c *channel, extra ...field) {
	s.emit(chanEv(ev, "agent,all", c, extra...))
}

func (s *Server) agentEvent(ev string, caller, agent *channel, extra ...field) {
	m := msg{{"Event", ev}, {"Privilege", "agent,all"}}
	m = append(m, caller.block("")...)
	m = append(m, agent.block("Dest")...)
	s.emit(append(m, extra...))
}

// CallQueue simulates from calling 800, which runs Answer, then
// Queue(support) (ringall, ringinuse no). Available members ring; the
// call is answered with Answer or AnswerBy, abandoned with Hangup, and a
// member failing to answer is simulated with RingNoAnswer.
func (s *Server) CallQueue(from string) *Call { return s.CallApp(from, "800") }

// enterQueue runs extension 800 on a: Answer, Queue(support).
func (s *Server) enterQueue(c *Call, a *channel) {
	q := s.queue
	s.newexten(a, 1, "Answer", "")
	if a.state != 6 {
		s.newstate(a, 6)
	}
	s.updateDevice(a.ext)
	s.newexten(a, 2, "Queue", "support")
	c.dialData = "support"
	e := &queueEntry{q: q, call: c, start: time.Now()}
	q.entries = append(q.entries, e)
	e.pos = len(q.entries)
	e.opos = e.pos
	c.q = e
	if len(q.entries) == 1 {
		s.setDevice("Queue:"+q.name, "RINGING")
	}
	s.queueEvent("QueueCallerJoin", a, field{"Queue", q.name}, field{"Position", itoa(e.pos)}, field{"Count", itoa(len(q.entries))})
	c.state = callRinging
	s.ringMembers(e)
}

// ringMembers is ring_entry for every available member (ringall).
func (s *Server) ringMembers(e *queueEntry) {
	if e.pos != 1 {
		return // only the head caller is offered to members
	}
	a := e.call.a
	e.ringAt = time.Now()
	var rung []*queueAttempt
	for _, m := range e.q.members {
		if !s.memberAvailable(m) {
			continue
		}
		ch := s.newChannel(m.ext, "s", 0, a.linkedid, e.call)
		ch.callID = uuid()
		ch.exten = a.exten
		ch.connNum, ch.connName = a.cidNum, a.cidName
		s.newexten(ch, 1, "AppQueue", "(Outgoing Line)")
		s.connectedLine(ch)
		at := &queueAttempt{m: m, ch: ch}
		e.attempts = append(e.attempts, at)
		s.agentEvent("AgentCalled", a, ch, field{"Queue", e.q.name}, field{"Interface", m.iface}, field{"MemberName", m.name})
		s.dialEv("DialBegin", a, ch, field{"DialString", m.iface})
		rung = append(rung, at)
	}
	for _, at := range rung {
		s.newstate(at.ch, 5)
		s.dialEv("DialState", a, at.ch, field{"DialStatus", "RINGING"})
		s.updateDevice(at.m.ext)
	}
}

// AnswerBy makes queue member ext answer a ringing queue call.
func (c *Call) AnswerBy(ext string) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.q == nil || c.state != callRinging {
		return
	}
	for _, at := range c.q.attempts {
		if at.m.ext == ext {
			c.answerQueue(at)
			return
		}
	}
}

func (c *Call) answerQueue(at *queueAttempt) {
	if at == nil || c.state != callRinging {
		return
	}
	s, e, a := c.s, c.q, c.a
	q := e.q
	ch := at.ch
	ringTime := int(time.Since(e.ringAt).Seconds())
	s.newstate(ch, 6)
	a.connNum, a.connName = ch.cidNum, ch.cidName
	s.connectedLine(a)
	s.dialEv("DialEnd", a, ch, field{"DialStatus", "ANSWER"})
	for _, o := range e.attempts {
		if o == at {
			continue
		}
		s.dialEv("DialEnd", a, o.ch, field{"DialStatus", "CANCEL"})
		s.hangupEv(o.ch, 26, "")
		s.updateDevice(o.m.ext)
	}
	e.attempts = []*queueAttempt{at}
	e.agent = at
	hold := int(time.Since(e.start).Seconds())
	s.leaveQueue(e)
	s.agentEvent("AgentConnect", a, ch, field{"Queue", q.name}, field{"Interface", at.m.iface},
		field{"MemberName", at.m.name}, field{"HoldTime", itoa(hold)}, field{"RingTime", itoa(ringTime)})
	at.m.inCall = true
	e.connect = time.Now()
	c.b = ch
	c.to = "800"
	c.state, c.answered = callUp, time.Now()
	c.br = s.newBridge()
	s.joinPair(c.br, a, ch)
	q.holdtime = hold
}

// leaveQueue is leave_queue: QueueCallerLeave, the queue device, and
// renumbering of the callers behind.
func (s *Server) leaveQueue(e *queueEntry) {
	q := e.q
	idx := slices.Index(q.entries, e)
	if idx < 0 {
		return
	}
	q.entries = slices.Delete(q.entries, idx, idx+1)
	if len(q.entries) == 0 {
		s.setDevice("Queue:"+q.name, "NOT_INUSE")
	}
	a := e.call.a
	s.queueEvent("QueueCallerLeave", a, field{"Queue", q.name}, field{"Position", itoa(e.pos)}, field{"Count", itoa(len(q.entries))})
	s.varSet(a, "QUEUEPOSITION", itoa(e.pos))
	for i, o := range q.entries {
		o.pos = i + 1
	}
	if len(q.entries) > 0 && len(q.entries[0].attempts) == 0 {
		s.ringMembers(q.entries[0])
	}
}

// RingNoAnswer simulates the ringing members not answering within the
// queue timeout: AgentRingNoAnswer for each, then app_queue tries again
// (immediately here, after "retry" seconds on a real PBX).
func (c *Call) RingNoAnswer() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.q == nil || c.state != callRinging {
		return
	}
	e, a := c.q, c.a
	for _, at := range e.attempts {
		ms := int(time.Since(e.ringAt).Milliseconds())
		s.dialEv("DialEnd", a, at.ch, field{"DialStatus", "NOANSWER"})
		s.agentEvent("AgentRingNoAnswer", a, at.ch, field{"Queue", e.q.name}, field{"Interface", at.m.iface},
			field{"MemberName", at.m.name}, field{"RingTime", itoa(ms)})
		s.hangupEv(at.ch, 0, "")
		s.updateDevice(at.m.ext)
	}
	e.attempts = nil
	s.ringMembers(e)
}

// abandonQueue: the caller hangs up while waiting or ringing.
func (c *Call) abandonQueue(amiCause int) {
	s, e, a := c.s, c.q, c.a
	q := e.q
	if amiCause >= 0 {
		s.softHangupRequest(a, amiCause)
	} else {
		s.hangupRequest(a, 16, "")
	}
	for _, at := range e.attempts {
		s.dialEv("DialEnd", a, at.ch, field{"DialStatus", "CANCEL"})
		s.hangupEv(at.ch, 0, "")
	}
	s.varSet(a, "ABANDONED", "TRUE")
	hold := int(time.Since(e.start).Seconds())
	s.queueEvent("QueueCallerAbandon", a, field{"Queue", q.name}, field{"Position", itoa(e.pos)},
		field{"OriginalPosition", itoa(e.opos)}, field{"HoldTime", itoa(hold)})
	q.abandoned++
	attempts := e.attempts
	e.attempts = nil
	s.leaveQueue(e)
	now := time.Now()
	s.softHangupRequest(a, 16)
	s.cdr(c, "", "Queue", "support", c.start, a.created, now, "ANSWERED")
	s.hangupEv(a, 16, "")
	s.updateDevice(a.ext)
	for _, at := range attempts {
		s.updateDevice(at.m.ext)
	}
}

// endQueueAgent publishes AgentComplete when a connected queue call ends
// and updates the member's call statistics (update_queue).
func (c *Call) endQueueAgent(reason string) {
	if c.q == nil || c.q.agent == nil {
		return
	}
	s, e := c.s, c.q
	at := e.agent
	e.agent = nil
	talk := int(time.Since(e.connect).Seconds())
	s.agentEvent("AgentComplete", c.a, at.ch, field{"Queue", e.q.name}, field{"Interface", at.m.iface},
		field{"MemberName", at.m.name}, field{"HoldTime", itoa(int(e.connect.Sub(e.start).Seconds()))},
		field{"TalkTime", itoa(talk)}, field{"Reason", reason})
	at.m.calls++
	at.m.lastCall = time.Now().Unix()
	e.q.completed++
	e.q.talktime = talk
}

// PauseMember pauses or unpauses a queue member ("PJSIP/1004" or "1004")
// as QueuePause / PauseQueueMember do. It reports whether the member exists.
func (s *Server) PauseMember(member string, paused bool, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pauseMember(member, paused, reason)
}

// pauseMember is set_queue_member_pause.
func (s *Server) pauseMember(member string, paused bool, reason string) bool {
	q := s.queue
	m := q.member(member)
	if m == nil {
		return false
	}
	m.paused = paused
	if paused {
		m.lastPause = time.Now().Unix()
		m.pausedReason = reason
	} else {
		m.pausedReason = ""
	}
	st := "NOT_INUSE"
	if paused {
		st = "INUSE"
	}
	s.setDevice("Queue:"+q.name+"_pause_"+m.iface, st)
	s.setDevice("Queue:"+q.name+"_avail", q.availState(s))
	s.emit(append(msg{{"Event", "QueueMemberPause"}, {"Privilege", "agent,all"}}, q.memberBlob(m)...))
	return true
}

func actQueuePause(s *Server, m msg) []msg {
	iface, pausedS := m.get("Interface"), m.get("Paused")
	if iface == "" || pausedS == "" {
		return []msg{errResp("Need 'Interface' and 'Paused' parameters.")}
	}
	if qn := m.get("Queue"); qn != "" && !strings.EqualFold(qn, s.queue.name) {
		return []msg{errResp("Interface not found")}
	}
	paused := astTrue(pausedS)
	if s.queue.member(iface) == nil || !strings.Contains(iface, "/") {
		return []msg{errResp("Interface not found")}
	}
	s.afterReply(func() { s.pauseMember(iface, paused, m.get("Reason")) })
	if paused {
		return []msg{ack("Interface paused successfully")}
	}
	return []msg{ack("Interface unpaused successfully")}
}

// actQueueStatus is manager_queues_status. Its items put ActionID last.
func actQueueStatus(s *Server, m msg) []msg {
	q := s.queue
	id := m.get("ActionID")
	tail := func(x msg) msg {
		if id != "" {
			x = append(x, field{"ActionID", id})
		}
		return x
	}
	var items []msg
	if f := m.get("Queue"); f == "" || strings.EqualFold(f, q.name) {
		items = append(items, tail(msg{{"Event", "QueueParams"}, {"Queue", q.name}, {"Max", "0"}, {"Strategy", "ringall"},
			{"Calls", itoa(len(q.entries))}, {"Holdtime", itoa(q.holdtime)}, {"TalkTime", itoa(q.talktime)},
			{"Completed", itoa(q.completed)}, {"Abandoned", itoa(q.abandoned)}, {"ServiceLevel", "0"},
			{"ServicelevelPerf", fmt.Sprintf("%2.1f", q.slPerf())}, {"ServicelevelPerf2", fmt.Sprintf("%2.1f", q.slPerf2())},
			{"Weight", "0"}}))
		mf := m.get("Member")
		for _, mem := range q.members {
			if mf != "" && mf != mem.iface && mf != mem.name {
				continue
			}
			blob := q.memberBlob(mem)
			x := msg{{"Event", "QueueMember"}, {"Queue", q.name}, {"Name", mem.name}, {"Location", mem.iface}}
			for _, f := range blob[3:] {
				if f.k == "Ringinuse" {
					continue
				}
				x = append(x, f)
			}
			items = append(items, tail(x))
		}
		now := time.Now()
		for i, e := range q.entries {
			a := e.call.a
			items = append(items, tail(msg{{"Event", "QueueEntry"}, {"Queue", q.name}, {"Position", itoa(i + 1)},
				{"Channel", a.name}, {"Uniqueid", a.uniqueid}, {"CallerIDNum", orWord(a.cidNum, "unknown")},
				{"CallerIDName", orWord(a.cidName, "unknown")}, {"ConnectedLineNum", orWord(a.connNum, "unknown")},
				{"ConnectedLineName", orWord(a.connName, "unknown")}, {"Wait", itoa(int(now.Sub(e.start).Seconds()))},
				{"Priority", "0"}}))
		}
	}
	return list("Queue status will follow", "QueueStatusComplete", items)
}

func (q *queue) slPerf() float64  { return 0 }
func (q *queue) slPerf2() float64 { return 0 }

func orWord(v, w string) string {
	if v == "" {
		return w
	}
	return v
}

// actQueueSummary is manager_queues_summary.
func actQueueSummary(s *Server, m msg) []msg {
	q := s.queue
	var items []msg
	if f := m.get("Queue"); f == "" || strings.EqualFold(f, q.name) {
		logged, avail, longest := 0, 0, 0
		for _, mem := range q.members {
			if mem.status != qsUnavailable && mem.status != 4 {
				logged++
				if mem.status == qsNotInUse && !mem.paused {
					avail++
				}
			}
		}
		now := time.Now()
		for _, e := range q.entries {
			if w := int(now.Sub(e.start).Seconds()); w > longest {
				longest = w
			}
		}
		x := msg{{"Event", "QueueSummary"}, {"Queue", q.name}, {"LoggedIn", itoa(logged)}, {"Available", itoa(avail)},
			{"Callers", itoa(len(q.entries))}, {"HoldTime", itoa(q.holdtime)}, {"TalkTime", itoa(q.talktime)},
			{"LongestHoldTime", itoa(longest)}}
		if id := m.get("ActionID"); id != "" {
			x = append(x, field{"ActionID", id})
		}
		items = append(items, x)
	}
	return list("Queue summary will follow", "QueueSummaryComplete", items)
}
