package pbxsim

import (
	"regexp"
	"strings"
	"testing"
)

// TestQueueStatusIdleMatchesCapture replays QueueStatus and QueueSummary
// of the idle capture (1001-1004 registered, 1005 not).
func TestQueueStatusIdleMatchesCapture(t *testing.T) {
	s, addr := startServer(t, Config{})
	for _, e := range []string{"1001", "1002", "1003", "1004"} {
		s.Register(e)
	}
	c := dial(t, addr)
	c.login("off")
	capt := byActionID(parseRaw(strings.TrimPrefix(readCapture(t, "ami-actions-idle.in.raw"), banner)))
	volatile := map[string]*regexp.Regexp{"LoginTime": regexp.MustCompile(`^\d{10}$`)}
	for _, tc := range []struct{ action, id string }{
		{"QueueStatus", "ami-actions-idle-18"},
		{"QueueSummary", "ami-actions-idle-19"},
	} {
		got := c.action(tc.id, "Action", tc.action)
		compareMsgs(t, tc.action, got, capt[tc.id], volatile)
	}
}

func TestQueueStatusLive(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.s.CallQueue("1001")
	b := h.s.CallQueue("1002")
	ms := h.ami.action("qs", "Action", "QueueStatus", "Queue", "support")
	var entries []msg
	var params msg
	for _, m := range ms {
		switch m.get("Event") {
		case "QueueEntry":
			entries = append(entries, m)
		case "QueueParams":
			params = m
		}
	}
	if params.get("Calls") != "2" {
		t.Errorf("QueueParams %v", params)
	}
	if len(entries) != 2 || entries[0].get("Uniqueid") != a.Uniqueids()[0] || entries[1].get("Position") != "2" ||
		entries[1].get("CallerIDNum") != "1002" {
		t.Fatalf("entries %v", entries)
	}
	wantNames := "Event,Queue,Position,Channel,Uniqueid,CallerIDNum,CallerIDName,ConnectedLineNum,ConnectedLineName,Wait,Priority,ActionID"
	if names(entries[0]) != wantNames {
		t.Errorf("QueueEntry fields %s", names(entries[0]))
	}
	sum := h.ami.action("qsum", "Action", "QueueSummary")
	if sum[1].get("Callers") != "2" || sum[1].get("LoggedIn") != "2" {
		t.Errorf("QueueSummary %v", sum)
	}
	// The first caller is answered; the second moves up and rings.
	a.AnswerBy("1004")
	if tr := h.s.Truth().Queues[0]; len(tr.Callers) != 1 || tr.Callers[0] != b.Uniqueids()[0] {
		t.Errorf("callers %v", tr.Callers)
	}
	b.AnswerBy("1005")
	a.Hangup()
	b.Hangup()
	if q := h.s.Truth().Queues[0]; q.Completed != 2 || len(q.Callers) != 0 {
		t.Errorf("queue %+v", q)
	}
	if ms := h.ami.action("qs2", "Action", "QueueStatus", "Queue", "nosuch"); len(ms) != 2 || ms[1].get("ListItems") != "0" {
		t.Errorf("unknown queue %v", ms)
	}
}
