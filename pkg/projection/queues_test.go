package projection

import (
	"fmt"
	"math"
	"testing"
	"time"
	_ "time/tzdata" // the time zones of the rollover tests, whatever the machine has

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

func (r *run) queueView(name string) *pb.QueueView {
	r.t.Helper()
	for _, q := range r.v.Snapshot(0).Queues {
		if q.PbxId == "pbx1" && q.Queue == name {
			return q
		}
	}
	r.t.Fatalf("no queue %s", name)
	return nil
}

// queueCaller is a trunk call waiting in a queue.
func queueCaller(n int) *pb.Channel {
	id := fmt.Sprintf("%d.0", 30+n)
	return chn(fmt.Sprintf("PJSIP/carrier-%08x", 0x30+n), id, id, 6, fmt.Sprintf("+49301000%d", n), "", "500")
}

func callersOf(q *pb.QueueView) string {
	var s []string
	for _, c := range q.Callers {
		s = append(s, fmt.Sprintf("%s@%d", c.Uniqueid, c.Position))
	}
	return fmt.Sprint(s)
}

func membersOf(q *pb.QueueView) string {
	var s []string
	for _, m := range q.Members {
		s = append(s, fmt.Sprintf("%s:%s", m.Name, m.State))
		if m.Paused {
			s[len(s)-1] += "(paused " + m.PausedReason + ")"
		}
		if m.InCall {
			s[len(s)-1] += "(in call)"
		}
	}
	return fmt.Sprint(s)
}

func TestQueueCallersAgentsAndServiceLevel(t *testing.T) {
	r := newRun(t, nil).apply(pbxEndpoints()...)
	for n := 1; n <= 4; n++ {
		r.apply(at{secs(n), &pb.ChannelCreated{Channel: queueCaller(n)}})
	}
	join := func(after time.Duration, n int, pos uint32) at {
		return at{after, &pb.QueueCaller{Action: pb.QueueCaller_ACTION_JOIN, Queue: "support", Channel: queueCaller(n), Position: pos}}
	}
	leave := func(after time.Duration, n int) at {
		return at{after, &pb.QueueCaller{Action: pb.QueueCaller_ACTION_LEAVE, Queue: "support", Channel: queueCaller(n)}}
	}
	connect := func(after time.Duration, n int, iface string, hold uint32) at {
		return at{after, &pb.QueueAgent{Action: pb.QueueAgent_ACTION_CONNECT, Queue: "support", Interface: iface, Caller: queueCaller(n), HoldTime: hold}}
	}
	cases := []struct {
		name                          string
		steps                         []at
		callers, members              string
		answered, abandoned, withinSL uint32
		pct                           float64
	}{
		{"summary", []at{{secs(5), &pb.QueueSummary{Queue: "support", Strategy: "ringall", ServiceLevel: 20}}}, "[]", "[]", 0, 0, 0, 0},
		{"members", []at{
			{secs(5), &pb.QueueMember{Queue: "support", Name: "Alice", Interface: "PJSIP/1001", Status: 1, Membership: "dynamic"}},
			{secs(5), &pb.QueueMember{Queue: "support", Name: "Bob", Interface: "PJSIP/1002", Status: 5, Paused: true, PausedReason: "lunch", Membership: "static", Penalty: 1}},
		}, "[]", "[Alice:not_in_use Bob:unavailable(paused lunch)]", 0, 0, 0, 0},
		{"two join", []at{join(secs(10), 1, 1), join(secs(12), 2, 2)}, "[31.0@1 32.0@2]", "[Alice:not_in_use Bob:unavailable(paused lunch)]", 0, 0, 0, 0},
		// Asterisk sends AgentConnect and the caller's QueueCallerLeave.
		{"first answered within the service level", []at{connect(secs(25), 1, "PJSIP/1001", 15), leave(secs(25), 1)},
			"[32.0@1]", "[Alice:not_in_use(in call) Bob:unavailable(paused lunch)]", 1, 0, 1, 100},
		// An abandon is followed by a leave of the same caller.
		{"second abandons", []at{
			{secs(40), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_ABANDON, Queue: "support", Channel: queueCaller(2), Position: 1, HoldTime: 28}},
			leave(secs(40), 2),
		}, "[]", "[Alice:not_in_use(in call) Bob:unavailable(paused lunch)]", 1, 1, 1, 50},
		{"answered late", []at{join(secs(50), 3, 1), connect(secs(80), 3, "PJSIP/1002", 30), leave(secs(80), 3)},
			"[]", "[Alice:not_in_use(in call) Bob:unavailable(paused lunch)(in call)]", 2, 1, 1, 100.0 / 3},
		// Asterisk counts an answer at exactly the service level as within it.
		{"answered at the service level", []at{join(secs(90), 4, 1), connect(secs(110), 4, "PJSIP/1001", 20), leave(secs(110), 4)},
			"[]", "[Alice:not_in_use(in call) Bob:unavailable(paused lunch)(in call)]", 3, 1, 2, 50},
		{"complete", []at{{secs(120), &pb.QueueAgent{Action: pb.QueueAgent_ACTION_COMPLETE, Queue: "support", Interface: "PJSIP/1002", Caller: queueCaller(3), Reason: "caller"}}},
			"[]", "[Alice:not_in_use(in call) Bob:unavailable(paused lunch)]", 3, 1, 2, 50},
		{"called and ring-no-answer count nothing", []at{
			{secs(121), &pb.QueueAgent{Action: pb.QueueAgent_ACTION_CALLED, Queue: "support", Interface: "PJSIP/1001"}},
			{secs(122), &pb.QueueAgent{Action: pb.QueueAgent_ACTION_RING_NO_ANSWER, Queue: "support", Interface: "PJSIP/1001"}},
		}, "[]", "[Alice:not_in_use(in call) Bob:unavailable(paused lunch)]", 3, 1, 2, 50},
		{"member update replaces the member", []at{{secs(130), &pb.QueueMember{Queue: "support", Name: "Alice", Interface: "PJSIP/1001", Status: 2, Paused: true, PausedReason: "break", CallsTaken: 2}}},
			"[]", "[Alice:in_use(paused break) Bob:unavailable(paused lunch)]", 3, 1, 2, 50},
		{"member removed", []at{{secs(131), &pb.QueueMember{Queue: "support", Interface: "PJSIP/1002", Removed: true}}},
			"[]", "[Alice:in_use(paused break)]", 3, 1, 2, 50},
		{"removing an unknown member changes nothing", []at{{secs(132), &pb.QueueMember{Queue: "support", Interface: "PJSIP/1009", Removed: true}}},
			"[]", "[Alice:in_use(paused break)]", 3, 1, 2, 50},
	}
	for _, tc := range cases {
		r.apply(tc.steps...)
		q := r.queueView("support")
		if got := callersOf(q); got != tc.callers {
			t.Errorf("%s: callers %s, want %s", tc.name, got, tc.callers)
		}
		if got := membersOf(q); got != tc.members {
			t.Errorf("%s: members %s, want %s", tc.name, got, tc.members)
		}
		if q.AnsweredToday != tc.answered || q.AbandonedToday != tc.abandoned || q.AnsweredWithinSlToday != tc.withinSL || math.Abs(q.ServiceLevelPct-tc.pct) > 1e-9 {
			t.Errorf("%s: answered %d abandoned %d within %d pct %v, want %d %d %d %v",
				tc.name, q.AnsweredToday, q.AbandonedToday, q.AnsweredWithinSlToday, q.ServiceLevelPct, tc.answered, tc.abandoned, tc.withinSL, tc.pct)
		}
		if q.Day != "2026-11-21" || q.Strategy != "ringall" || q.ServiceLevelSeconds != 20 {
			t.Errorf("%s: day %q strategy %q service level %d", tc.name, q.Day, q.Strategy, q.ServiceLevelSeconds)
		}
	}
	q := r.queueView("support")
	if q.Members[0].CallsTaken != 2 {
		t.Errorf("Alice %v", q.Members[0])
	}
	// The calls remember their queue and when they joined it.
	c := r.mustCall("31.0")
	if c.Queue != "support" || !sameTime(c.QueueJoinedAt, ts(secs(10))) {
		t.Errorf("call 31.0: queue %q joined %s", c.Queue, showTime(c.QueueJoinedAt))
	}
	r.apply(at{secs(200), &pb.ChannelHungUp{Channel: queueCaller(2), Cause: 16}})
	if h := r.record("32.0"); h.Queue != "support" || h.Direction != "inbound" || h.Trunk != "carrier" {
		t.Errorf("history of the abandoned call: queue %q direction %q trunk %q", h.Queue, h.Direction, h.Trunk)
	}
}

func TestQueueCallerPositionsAndJoinTime(t *testing.T) {
	r := newRun(t, nil)
	for n := 1; n <= 3; n++ {
		r.apply(at{secs(10 * n), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_JOIN, Queue: "support", Channel: queueCaller(n), Position: uint32(n)}})
	}
	// The one in the middle leaves: the last moves up.
	r.apply(at{secs(40), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_LEAVE, Queue: "support", Channel: queueCaller(2)}})
	q := r.queueView("support")
	if got := callersOf(q); got != "[31.0@1 33.0@2]" {
		t.Errorf("callers %s", got)
	}
	if !sameTime(q.Callers[1].JoinedAt, ts(secs(30))) {
		t.Errorf("33.0 joined at %s, want 30s", showTime(q.Callers[1].JoinedAt))
	}
	// A listing of a caller already waiting keeps when it joined.
	r.apply(at{secs(50), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_WAITING, Queue: "support", Channel: queueCaller(3), Position: 2, HoldTime: 5}})
	if q := r.queueView("support"); !sameTime(q.Callers[1].JoinedAt, ts(secs(30))) {
		t.Errorf("33.0 joined at %s after a listing, want 30s", showTime(q.Callers[1].JoinedAt))
	}
	// A caller first seen in a listing joined its hold time ago.
	r.apply(at{secs(60), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_WAITING, Queue: "support", Channel: queueCaller(4), Position: 3, HoldTime: 25}})
	if q := r.queueView("support"); len(q.Callers) != 3 || !sameTime(q.Callers[2].JoinedAt, ts(secs(35))) {
		t.Errorf("callers %s, last joined at %s, want 35s", callersOf(q), showTime(q.Callers[2].JoinedAt))
	}
	// Counters are per queue.
	r.apply(at{secs(70), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_ABANDON, Queue: "sales", Channel: queueCaller(5)}})
	if a, b := r.queueView("support").AbandonedToday, r.queueView("sales").AbandonedToday; a != 0 || b != 1 {
		t.Errorf("abandoned: support %d sales %d", a, b)
	}
}

// Today's counters cover one day in the projector's time zone: the first
// event of a queue on a later day starts them again.
func TestQueueDayRollover(t *testing.T) {
	load := func(name string) *time.Location {
		l, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	abandon := func(after time.Duration) at {
		return at{after, &pb.QueueCaller{Action: pb.QueueCaller_ACTION_ABANDON, Queue: "support", Channel: queueCaller(1)}}
	}
	connect := func(after time.Duration) at {
		return at{after, &pb.QueueAgent{Action: pb.QueueAgent_ACTION_CONNECT, Queue: "support", Caller: queueCaller(2), HoldTime: 5}}
	}
	type want struct {
		day                 string
		answered, abandoned uint32
		pct                 float64
	}
	// t0 is 2026-11-21 19:09:31 UTC: 14:09 in New York (EST), 04:09 on
	// the 22nd in Tokyo.
	steps := []at{
		connect(0),
		abandon(5 * time.Hour),    // 00:09 UTC on the 22nd; 19:09 in New York; 09:09 in Tokyo
		abandon(10 * time.Hour),   // 05:09 UTC; 00:09 on the 22nd in New York
		connect(20 * time.Hour),   // 15:09 UTC; 00:09 on the 23rd in Tokyo
		abandon(20*time.Hour + 1), // same day everywhere
		// An event stamped earlier (a late listing) never takes the day back.
		{19 * time.Hour, &pb.QueueSummary{Queue: "support", ServiceLevel: 20}},
	}
	cases := []struct {
		loc  *time.Location
		want []want
	}{
		{nil, []want{{"2026-11-21", 1, 0, 100}, {"2026-11-22", 0, 1, 0}, {"2026-11-22", 0, 2, 0}, {"2026-11-22", 1, 2, 100.0 / 3}, {"2026-11-22", 1, 3, 25}, {"2026-11-22", 1, 3, 25}}},
		{load("America/New_York"), []want{{"2026-11-21", 1, 0, 100}, {"2026-11-21", 1, 1, 50}, {"2026-11-22", 0, 1, 0}, {"2026-11-22", 1, 1, 50}, {"2026-11-22", 1, 2, 100.0 / 3}, {"2026-11-22", 1, 2, 100.0 / 3}}},
		{load("Asia/Tokyo"), []want{{"2026-11-22", 1, 0, 100}, {"2026-11-22", 1, 1, 50}, {"2026-11-22", 1, 2, 100.0 / 3}, {"2026-11-23", 1, 0, 100}, {"2026-11-23", 1, 1, 50}, {"2026-11-23", 1, 1, 50}}},
		{time.FixedZone("UTC+14", 14*3600), []want{{"2026-11-22", 1, 0, 100}, {"2026-11-22", 1, 1, 50}, {"2026-11-22", 1, 2, 100.0 / 3}, {"2026-11-23", 1, 0, 100}, {"2026-11-23", 1, 1, 50}, {"2026-11-23", 1, 1, 50}}},
	}
	for _, tc := range cases {
		name := "UTC (nil)"
		if tc.loc != nil {
			name = tc.loc.String()
		}
		t.Run(name, func(t *testing.T) {
			r := newRun(t, tc.loc).apply(at{0, &pb.QueueSummary{Queue: "support", ServiceLevel: 20}})
			for i, s := range steps {
				r.apply(s)
				q, w := r.queueView("support"), tc.want[i]
				if q.Day != w.day || q.AnsweredToday != w.answered || q.AbandonedToday != w.abandoned || math.Abs(q.ServiceLevelPct-w.pct) > 1e-9 {
					t.Errorf("after step %d (%s): day %s answered %d abandoned %d pct %v, want %s %d %d %v",
						i, s.after, q.Day, q.AnsweredToday, q.AbandonedToday, q.ServiceLevelPct, w.day, w.answered, w.abandoned, w.pct)
				}
			}
		})
	}
}

func TestQueuesSnapshot(t *testing.T) {
	r := newRun(t, nil).apply(pbxEndpoints()...)
	for n := 1; n <= 5; n++ {
		r.apply(at{secs(n), &pb.ChannelCreated{Channel: queueCaller(n)}})
	}
	r.apply(
		at{secs(5), &pb.QueueSummary{Queue: "support", Strategy: "ringall", ServiceLevel: 20}},
		at{secs(5), &pb.QueueMember{Queue: "support", Name: "Alice", Interface: "PJSIP/1001", Status: 1}},
		at{secs(5), &pb.QueueMember{Queue: "support", Name: "Bob", Interface: "PJSIP/1002", Status: 1}},
		at{secs(5), &pb.QueueMember{Queue: "sales", Name: "Dave", Interface: "PJSIP/1004", Status: 1}},
		at{secs(6), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_JOIN, Queue: "support", Channel: queueCaller(1), Position: 1}},
		at{secs(7), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_JOIN, Queue: "support", Channel: queueCaller(2), Position: 2}},
		at{secs(8), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_JOIN, Queue: "sales", Channel: queueCaller(3), Position: 1}},
		at{secs(9), &pb.QueueAgent{Action: pb.QueueAgent_ACTION_CONNECT, Queue: "support", Interface: "PJSIP/1001", Caller: queueCaller(1), HoldTime: 3}},
		at{secs(10), &pb.QueueCaller{Action: pb.QueueCaller_ACTION_ABANDON, Queue: "support", Channel: queueCaller(2)}},
	)
	before := r.queueView("support")
	// Missed while the link was down: Alice left, Carol came, caller 4
	// joined 12 s ago and caller 5 is waiting too; 1 and 2 are gone.
	r.apply(at{secs(60), &pb.QueuesSnapshot{
		Queues: []*pb.QueueSummary{{Queue: "support", Strategy: "rrmemory", ServiceLevel: 30}},
		Members: []*pb.QueueMember{
			{Queue: "support", Name: "Carol", Interface: "PJSIP/1003", Status: 2},
			{Queue: "support", Name: "Bob", Interface: "PJSIP/1002", Status: 6, Paused: true, PausedReason: "admin"},
		},
		Callers: []*pb.QueueCaller{
			{Queue: "support", Channel: queueCaller(4), Position: 1, HoldTime: 12},
			{Queue: "support", Channel: queueCaller(5), Position: 2, HoldTime: 2},
		},
	}})
	q := r.queueView("support")
	if got := membersOf(q); got != "[Carol:in_use Bob:ringing(paused admin)]" {
		t.Errorf("members %s", got)
	}
	if got := callersOf(q); got != "[34.0@1 35.0@2]" {
		t.Errorf("callers %s", got)
	}
	if !sameTime(q.Callers[0].JoinedAt, ts(secs(48))) || !sameTime(q.Callers[1].JoinedAt, ts(secs(58))) {
		t.Errorf("joined at %s and %s, want 48s and 58s", showTime(q.Callers[0].JoinedAt), showTime(q.Callers[1].JoinedAt))
	}
	if q.AnsweredToday != before.AnsweredToday || q.AbandonedToday != before.AbandonedToday || q.AnsweredWithinSlToday != before.AnsweredWithinSlToday ||
		q.ServiceLevelPct != before.ServiceLevelPct || q.AnsweredToday != 1 || q.AbandonedToday != 1 {
		t.Errorf("counters changed by the listing: %d/%d/%d %v, were %d/%d/%d %v", q.AnsweredToday, q.AbandonedToday, q.AnsweredWithinSlToday, q.ServiceLevelPct,
			before.AnsweredToday, before.AbandonedToday, before.AnsweredWithinSlToday, before.ServiceLevelPct)
	}
	if q.Strategy != "rrmemory" || q.ServiceLevelSeconds != 30 || !sameTime(q.UpdatedAt, ts(secs(60))) {
		t.Errorf("summary: strategy %q service level %d updated %s", q.Strategy, q.ServiceLevelSeconds, showTime(q.UpdatedAt))
	}
	if c := r.mustCall("34.0"); c.Queue != "support" || !sameTime(c.QueueJoinedAt, ts(secs(48))) {
		t.Errorf("listed caller's call: queue %q joined %s", c.Queue, showTime(c.QueueJoinedAt))
	}
	// A queue the listing does not name is left as it was.
	if s := r.queueView("sales"); membersOf(s) != "[Dave:not_in_use]" || callersOf(s) != "[33.0@1]" {
		t.Errorf("sales: members %s callers %s", membersOf(s), callersOf(s))
	}
	// A listing that names a queue only through its members still
	// replaces its callers.
	r.apply(at{secs(70), &pb.QueuesSnapshot{Members: []*pb.QueueMember{{Queue: "sales", Name: "Eve", Interface: "PJSIP/1001", Status: 1}}}})
	if s := r.queueView("sales"); membersOf(s) != "[Eve:not_in_use]" || callersOf(s) != "[]" {
		t.Errorf("sales: members %s callers %s", membersOf(s), callersOf(s))
	}
	// An empty listing of a queue empties it.
	r.apply(at{secs(80), &pb.QueuesSnapshot{Queues: []*pb.QueueSummary{{Queue: "support"}}}})
	if q := r.queueView("support"); len(q.Members) != 0 || len(q.Callers) != 0 || q.AnsweredToday != 1 || q.Strategy != "rrmemory" {
		t.Errorf("support after an empty listing: %v", q)
	}
}

func TestQueueMemberStates(t *testing.T) {
	cases := []struct {
		status int32
		want   string
	}{
		{0, "unknown"}, {1, "not_in_use"}, {2, "in_use"}, {3, "busy"}, {4, "invalid"},
		{5, "unavailable"}, {6, "ringing"}, {7, "ring_in_use"}, {8, "on_hold"}, {42, "unknown"},
	}
	for _, tc := range cases {
		r := newRun(t, nil).apply(at{0, &pb.QueueMember{Queue: "q", Name: "m", Interface: "PJSIP/1001", Status: tc.status}})
		if m := r.queueView("q").Members[0]; m.State != tc.want || m.Status != tc.status {
			t.Errorf("status %d: state %q, want %q", tc.status, m.State, tc.want)
		}
	}
}
