package projection

import (
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// queue returns the queue's view, creating it, with today's counters
// rolled over to the day of at.
func (v *Views) queue(pbx, name string, at *timestamppb.Timestamp) *pb.QueueView {
	k := pbx + "/" + name
	q := v.queues[k]
	if q == nil {
		q = &pb.QueueView{PbxId: pbx, Queue: name}
		v.queues[k] = q
	}
	if at != nil {
		if day := at.AsTime().In(v.loc).Format(time.DateOnly); day > q.Day {
			q.Day, q.AnsweredToday, q.AbandonedToday, q.AnsweredWithinSlToday, q.ServiceLevelPct = day, 0, 0, 0, 0
		}
		q.UpdatedAt = at
	}
	v.dirtyQueues[k] = true
	return q
}

func (v *Views) applyQueueSummary(pbx string, at *timestamppb.Timestamp, s *pb.QueueSummary) {
	q := v.queue(pbx, s.Queue, at)
	if s.Strategy != "" {
		q.Strategy = s.Strategy
	}
	if s.ServiceLevel > 0 {
		q.ServiceLevelSeconds = s.ServiceLevel
	}
}

func (v *Views) applyQueueMember(pbx string, at *timestamppb.Timestamp, m *pb.QueueMember) {
	q := v.queue(pbx, m.Queue, at)
	i := slices.IndexFunc(q.Members, func(x *pb.QueueMemberView) bool { return x.Interface == m.Interface })
	if m.Removed {
		if i >= 0 {
			q.Members = slices.Delete(q.Members, i, i+1)
		}
		return
	}
	mv := memberView(m)
	if i >= 0 {
		q.Members[i] = mv
	} else {
		q.Members = append(q.Members, mv)
	}
}

func memberView(m *pb.QueueMember) *pb.QueueMemberView {
	return &pb.QueueMemberView{
		Name: m.Name, Interface: m.Interface, Status: m.Status, State: memberState(m.Status),
		Paused: m.Paused, PausedReason: m.PausedReason, InCall: m.InCall, CallsTaken: m.CallsTaken,
		LastCall: m.LastCall, Membership: m.Membership, Penalty: m.Penalty,
	}
}

// memberState names Asterisk's device states (enum ast_device_state).
func memberState(s int32) string {
	switch s {
	case 1:
		return "not_in_use"
	case 2:
		return "in_use"
	case 3:
		return "busy"
	case 4:
		return "invalid"
	case 5:
		return "unavailable"
	case 6:
		return "ringing"
	case 7:
		return "ring_in_use"
	case 8:
		return "on_hold"
	}
	return "unknown"
}

func (v *Views) applyQueueCaller(pbx string, at *timestamppb.Timestamp, c *pb.QueueCaller) {
	if c.Channel == nil {
		return
	}
	q := v.queue(pbx, c.Queue, at)
	i := slices.IndexFunc(q.Callers, func(x *pb.QueueCallerView) bool { return x.Uniqueid == c.Channel.Uniqueid })
	switch c.Action {
	case pb.QueueCaller_ACTION_JOIN, pb.QueueCaller_ACTION_WAITING:
		joined := at
		if c.Action == pb.QueueCaller_ACTION_WAITING && at != nil {
			joined = timestamppb.New(at.AsTime().Add(-time.Duration(c.HoldTime) * time.Second))
		}
		cv := &pb.QueueCallerView{Uniqueid: c.Channel.Uniqueid, Channel: c.Channel.Name, CallerNum: c.Channel.CallerNum,
			CallerName: c.Channel.CallerName, Position: c.Position, JoinedAt: joined}
		if i >= 0 {
			cv.JoinedAt = q.Callers[i].JoinedAt
			q.Callers[i] = cv
		} else {
			q.Callers = append(q.Callers, cv)
		}
		if call := v.callOf(pbx, c.Channel); call != nil {
			call.Queue = c.Queue
			if call.QueueJoinedAt == nil {
				call.QueueJoinedAt = cv.JoinedAt
			}
			v.dirtyCalls[pbx+"/"+call.Linkedid] = true
		}
	case pb.QueueCaller_ACTION_LEAVE, pb.QueueCaller_ACTION_ABANDON:
		if i >= 0 {
			q.Callers = slices.Delete(q.Callers, i, i+1)
		}
		if c.Action == pb.QueueCaller_ACTION_ABANDON {
			q.AbandonedToday++
			updateServiceLevel(q)
		}
	}
	// Positions shift when someone leaves; the PBX renumbers them in order.
	for n, x := range q.Callers {
		x.Position = uint32(n + 1)
	}
}

func (v *Views) applyQueueAgent(pbx string, at *timestamppb.Timestamp, a *pb.QueueAgent) {
	q := v.queue(pbx, a.Queue, at)
	if i := slices.IndexFunc(q.Members, func(x *pb.QueueMemberView) bool { return x.Interface == a.Interface }); i >= 0 {
		m := q.Members[i]
		switch a.Action {
		case pb.QueueAgent_ACTION_CONNECT:
			m.InCall = true
		case pb.QueueAgent_ACTION_COMPLETE:
			m.InCall = false
			m.CallsTaken++
		}
	}
	if a.Action != pb.QueueAgent_ACTION_CONNECT {
		return
	}
	q.AnsweredToday++
	if q.ServiceLevelSeconds == 0 || a.HoldTime <= q.ServiceLevelSeconds {
		q.AnsweredWithinSlToday++
	}
	updateServiceLevel(q)
}

// updateServiceLevel is Asterisk's second service-level figure
// (ServicelevelPerf2): abandoned calls count as missed.
func updateServiceLevel(q *pb.QueueView) {
	if n := q.AnsweredToday + q.AbandonedToday; n > 0 {
		q.ServiceLevelPct = float64(q.AnsweredWithinSlToday) * 100 / float64(n)
	}
}

// applyQueuesSnapshot makes the listed queues' members and callers exactly
// those of the listing (QueueStatus after a resync); counters stay.
func (v *Views) applyQueuesSnapshot(pbx string, at *timestamppb.Timestamp, s *pb.QueuesSnapshot) {
	listed := map[string]*pb.QueueView{}
	touch := func(name string) *pb.QueueView {
		if q := listed[name]; q != nil {
			return q
		}
		q := v.queue(pbx, name, at)
		q.Members, q.Callers = nil, nil
		listed[name] = q
		return q
	}
	for _, sum := range s.Queues {
		touch(sum.Queue)
		v.applyQueueSummary(pbx, at, sum)
	}
	for _, m := range s.Members {
		q := touch(m.Queue)
		if !m.Removed {
			q.Members = append(q.Members, memberView(m))
		}
	}
	for _, c := range s.Callers {
		touch(c.Queue)
		w := proto.Clone(c).(*pb.QueueCaller)
		w.Action = pb.QueueCaller_ACTION_WAITING
		v.applyQueueCaller(pbx, at, w)
	}
}
