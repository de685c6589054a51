package eventgen

import (
	"slices"
	"time"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// queue is an app_queue queue (strategy ringall, ringinuse=no, autofill):
// every available member rings for every waiting caller.
type queue struct {
	p            *pbx
	name, exten  string
	members      []*member
	waiting      []*qentry
	completed    uint32
	abandoned    uint32
	withinSL     uint32 // answered within the service level
	holdSum      uint64 // seconds, for the averages
	talkSum      uint64
	serviceLevel uint32
	availDev     string // Queue:<name>_avail as last published
}

type member struct {
	ep                             *endpoint
	name, iface                    string
	paused                         bool
	reason                         string
	status                         int32
	calls                          uint32
	lastCall, lastPause, loginTime int64
	inCall                         bool
}

type qentry struct {
	a      *channel
	opos   uint32
	joined time.Time
}

func newQueue(p *pbx, name, exten string, eps []*endpoint) *queue {
	q := &queue{p: p, name: name, exten: exten, serviceLevel: 30}
	for _, e := range eps {
		m := &member{ep: e, name: e.cidName, iface: "PJSIP/" + e.name, loginTime: p.g.cfg.Start.Add(-2 * time.Hour).Unix()}
		m.status = memberStatus[e.dev]
		q.members = append(q.members, m)
	}
	q.availDev = q.availState()
	return q
}

func (q *queue) member(e *endpoint) *member {
	for _, m := range q.members {
		if m.ep == e {
			return m
		}
	}
	return nil
}

// available members are rung: logged in (registered), not paused, idle.
func (q *queue) available() []*member {
	var out []*member
	for _, m := range q.members {
		if m.ep.reachable() && !m.paused && len(m.ep.chans) == 0 {
			out = append(out, m)
		}
	}
	return out
}

func (q *queue) blob(m *member) *pb.QueueMember {
	return &pb.QueueMember{
		Queue: q.name, Name: m.name, Interface: m.iface, StateInterface: m.iface, Membership: "static",
		CallsTaken: m.calls, LastCall: m.lastCall, LastPause: m.lastPause, LoginTime: m.loginTime,
		InCall: m.inCall, Status: m.status, Paused: m.paused, PausedReason: m.reason,
	}
}

func (q *queue) emitMember(m *member) {
	b := q.blob(m)
	q.p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: ami.EndpointOfDevice(b.StateInterface)}, Payload: &pb.Event_QueueMember{QueueMember: b}})
}

// memberDeviceChanged is app_queue's device_state_cb: QueueMemberStatus
// when the member's status changed, then the queue's _avail hint.
func (q *queue) memberDeviceChanged(m *member) {
	st := memberStatus[m.ep.dev]
	if st == m.status {
		return
	}
	m.status = st
	if st == 1 {
		m.inCall = false
	}
	q.emitMember(m)
	q.updateAvail()
}

func (q *queue) availState() string {
	for _, m := range q.members {
		if m.status == 1 && !m.paused {
			return "NOT_INUSE"
		}
	}
	return "INUSE"
}

func (q *queue) updateAvail() {
	if st := q.availState(); st != q.availDev {
		q.availDev = st
		q.p.deviceState("Queue:"+q.name+"_avail", st)
	}
}

func (q *queue) pause(m *member, paused bool, reason string) {
	m.paused, m.reason = paused, reason
	if paused {
		m.lastPause = q.p.g.now.Unix()
	} else {
		m.reason = ""
	}
	q.emitMember(m)
	q.updateAvail()
}

func (q *queue) callerEvent(action pb.QueueCaller_Action, e *qentry, pos, count, opos, hold uint32) {
	x := e.a.pb()
	q.p.chanEvent(x, &pb.Event{Payload: &pb.Event_QueueCaller{QueueCaller: &pb.QueueCaller{
		Action: action, Queue: q.name, Channel: x, Position: pos, Count: count, OriginalPosition: opos, HoldTime: hold,
	}}})
}

func (q *queue) join(a *channel) *qentry {
	e := &qentry{a: a, joined: q.p.g.now}
	q.waiting = append(q.waiting, e)
	e.opos = uint32(len(q.waiting))
	if len(q.waiting) == 1 {
		q.p.deviceState("Queue:"+q.name, "RINGING")
	}
	q.callerEvent(pb.QueueCaller_ACTION_JOIN, e, e.opos, e.opos, 0, 0)
	return e
}

func (q *queue) pos(e *qentry) uint32 { return uint32(slices.Index(q.waiting, e) + 1) }

func (q *queue) leave(e *qentry) {
	pos := q.pos(e)
	if pos == 0 {
		return
	}
	q.waiting = slices.DeleteFunc(q.waiting, func(x *qentry) bool { return x == e })
	if len(q.waiting) == 0 {
		q.p.deviceState("Queue:"+q.name, "NOT_INUSE")
	}
	q.callerEvent(pb.QueueCaller_ACTION_LEAVE, e, pos, uint32(len(q.waiting)), 0, 0)
}

func (q *queue) abandon(e *qentry) {
	hold := q.p.seconds(e.joined)
	q.callerEvent(pb.QueueCaller_ACTION_ABANDON, e, q.pos(e), 0, e.opos, hold)
	q.abandoned++
	q.leave(e)
}

func (q *queue) agentEvent(action pb.QueueAgent_Action, a, ag *channel, m *member, hold, ring, talk uint32, reason string) {
	x := a.pb()
	q.p.chanEvent(x, &pb.Event{Payload: &pb.Event_QueueAgent{QueueAgent: &pb.QueueAgent{
		Action: action, Queue: q.name, MemberName: m.name, Interface: m.iface, Caller: x, Agent: ag.pb(),
		HoldTime: hold, RingTime: ring, TalkTime: talk, Reason: reason,
	}}})
}

// summary is the queue as QueueStatus lists it (QueueParams).
func (q *queue) summary() *pb.QueueSummary {
	s := &pb.QueueSummary{
		Queue: q.name, Strategy: "ringall", Calls: uint32(len(q.waiting)), Completed: q.completed,
		Abandoned: q.abandoned, ServiceLevel: q.serviceLevel,
	}
	if q.completed > 0 {
		s.HoldTime = uint32(q.holdSum / uint64(q.completed))
		s.TalkTime = uint32(q.talkSum / uint64(q.completed))
		s.ServiceLevelPerf = float64(int(1000*float64(q.withinSL)/float64(q.completed))) / 10
	}
	if n := q.completed + q.abandoned; n > 0 {
		s.ServiceLevelPerf2 = float64(int(1000*float64(q.withinSL)/float64(n))) / 10
	}
	return s
}

// snapshot lists every queue as QueueStatus does, for a resync.
func (p *pbx) queuesSnapshot() *pb.QueuesSnapshot {
	s := &pb.QueuesSnapshot{}
	for _, q := range p.queues {
		s.Queues = append(s.Queues, q.summary())
		for _, m := range q.members {
			s.Members = append(s.Members, q.blob(m))
		}
		for i, e := range q.waiting {
			// QueueEntry carries no state, context or Linkedid, and writes an
			// empty caller id as the bare word "unknown".
			s.Callers = append(s.Callers, &pb.QueueCaller{
				Action: pb.QueueCaller_ACTION_WAITING, Queue: q.name, Position: uint32(i + 1),
				HoldTime: p.seconds(e.joined),
				Channel: &pb.Channel{Name: e.a.name, Uniqueid: e.a.uniqueid, CallerNum: orWord(e.a.cidNum),
					CallerName: orWord(e.a.cidName), ConnectedNum: orWord(e.a.connNum), ConnectedName: orWord(e.a.connName)},
			})
		}
	}
	return s
}

func orWord(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// seconds since t on the simulated clock.
func (p *pbx) seconds(t time.Time) uint32 { return uint32(p.g.now.Sub(t) / time.Second) }
