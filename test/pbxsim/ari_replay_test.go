package pbxsim

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var ariTimeRe = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$`)

// ariLabel is what must match between the simulated and captured event at
// the same position: the type plus the values that are deterministic for
// a replay of the capture run (variable names, dial status, channel name
// and state, device).
func ariLabel(m ariMsg) string {
	l := m.typ()
	switch l {
	case "ChannelVarset":
		l += " " + m.str("variable")
	case "Dial":
		l += " " + m.str("dialstatus") + " " + m.str("peer", "name")
	case "DeviceStateChanged":
		l += " " + m.str("device_state", "name") + "=" + m.str("device_state", "state")
	case "PeerStatusChange", "ContactStatusChange":
		l += " " + m.str("endpoint", "resource") + " " + m.str("endpoint", "state")
	}
	if n := m.str("channel", "name"); n != "" {
		l += " " + n + "/" + m.str("channel", "state")
	}
	return l
}

// compareARIPhase checks that got has the captured event types in the
// captured order with the same keys (top level and nested object key
// order). DeviceStateChanged events come from a separate topic that races
// the channel topic in Asterisk, so they are compared as a multiset.
func compareARIPhase(t *testing.T, phase string, got, want []ariMsg, drop func(ariMsg) bool) {
	t.Helper()
	split := func(ms []ariMsg) (seq []ariMsg, devs []string) {
		for _, m := range ms {
			if drop != nil && drop(m) {
				continue
			}
			if m.typ() == "DeviceStateChanged" {
				devs = append(devs, ariLabel(m))
				continue
			}
			seq = append(seq, m)
		}
		slices.Sort(devs)
		return seq, devs
	}
	gs, gd := split(got)
	ws, wd := split(want)
	if !slices.Equal(gd, wd) {
		t.Errorf("%s: device states\n got %v\nwant %v", phase, gd, wd)
	}
	t.Logf("%s: %d events (%d device states)", phase, len(gs), len(gd))
	if len(gs) != len(ws) {
		t.Errorf("%s: %d events, capture has %d", phase, len(gs), len(ws))
	}
	for i := 0; i < max(len(gs), len(ws)); i++ {
		var g, w string
		if i < len(gs) {
			g = ariLabel(gs[i])
		}
		if i < len(ws) {
			w = ariLabel(ws[i])
		}
		if g != w {
			t.Errorf("%s #%d: got %q, capture %q", phase, i, g, w)
			continue
		}
		if gk, wk := strings.Join(gs[i].keys, ","), strings.Join(ws[i].keys, ","); gk != wk {
			t.Errorf("%s #%d %s: keys\n got %s\nwant %s", phase, i, g, gk, wk)
		}
		for _, k := range []string{"channel", "peer", "caller", "bridge", "endpoint", "contact_info", "playback", "device_state"} {
			gn, wn := nestedKeys(t, gs[i].raw, k), nestedKeys(t, ws[i].raw, k)
			if !slices.Equal(gn, wn) {
				t.Errorf("%s #%d %s: %s keys\n got %v\nwant %v", phase, i, g, k, gn, wn)
			}
		}
	}
	for _, m := range got {
		if !ariTimeRe.MatchString(m.str("timestamp")) {
			t.Errorf("%s: timestamp %q", phase, m.str("timestamp"))
		}
		if m.str("asterisk_id") != "02:00:00:00:00:01" || m.str("application") != "monitor-app" {
			t.Errorf("%s: asterisk_id/application %q %q", phase, m.str("asterisk_id"), m.str("application"))
		}
	}
}

// TestARIPhasesMatchCapture replays the capture run on a fresh simulator
// with a websocket subscribed like the capture's (app=monitor-app,
// subscribeAll=true) and compares each phase with ari/by-phase.
func TestARIPhasesMatchCapture(t *testing.T) {
	s, _, addr := startARI(t, Config{})
	ws := dialARI(t, addr, "app=monitor-app&subscribeAll=true", nil)
	mark := 0
	phase := func() []ariMsg {
		mark++
		s.ariMark(mark)
		return ws.untilMark(mark)
	}
	if got := phase(); len(got) != 0 {
		t.Errorf("events before anything happened: %v", got)
	}

	for _, e := range []string{"1001", "1002", "1003", "1004"} {
		s.Register(e)
	}
	got := phase()
	want := loadARIPhase(t, "register")
	compareARIPhase(t, "register", got, want, nil)
	// Within one registration the captured order varies per extension;
	// the simulator follows 1001's (and 1004's): device, peer, contact.
	about := func(ext string) func(ariMsg) bool {
		return func(m ariMsg) bool {
			return m.str("endpoint", "resource") != ext && m.str("device_state", "name") != "PJSIP/"+ext
		}
	}
	for _, ext := range []string{"1001", "1004"} {
		if g, w := labels(nonDSC(got, about(ext))), labels(nonDSC(want, about(ext))); g != w {
			t.Errorf("register %s order\n got %s\nwant %s", ext, g, w)
		}
	}

	c := s.Dial("1001", "1002")
	c.Answer()
	c.Hangup()
	compareARIPhase(t, "call_answered", phase(), loadARIPhase(t, "call_answered"), nil)

	s.CallApp("1001", "600").Hangup()
	compareARIPhase(t, "call_echo", phase(), loadARIPhase(t, "call_echo"), nil)

	s.Dial("1001", "1003").NoAnswer()
	compareARIPhase(t, "call_noanswer", phase(), loadARIPhase(t, "call_noanswer"), nil)

	// The captured callee rejected before it ever rang (no device change
	// either); the API rings first.
	s.Dial("1001", "1004").Busy()
	ringing := func(m ariMsg) bool {
		switch m.typ() {
		case "ChannelStateChange", "DeviceStateChanged":
			return true
		case "Dial":
			return m.str("dialstatus") == "RINGING"
		case "ChannelVarset":
			return strings.HasPrefix(m.str("variable"), "RINGTIME") && m.str("value") != ""
		}
		return false
	}
	got = phase()
	for i := range got { // the rejected callee was never Ringing
		if got[i].str("channel", "state") == "Ringing" {
			got[i].m["channel"].(map[string]any)["state"] = "Down"
		}
	}
	compareARIPhase(t, "call_busy", got, loadARIPhase(t, "call_busy"), ringing)

	s.CallApp("1001", "700").Hangup()
	compareARIPhase(t, "call_stasis", phase(), loadARIPhase(t, "call_stasis"), nil)

	s.Unregister("1003")
	got = phase()
	compareARIPhase(t, "unregister", got, loadARIPhase(t, "unregister"), nil)
	if labels(got) != labels(loadARIPhase(t, "unregister")) {
		t.Errorf("unregister order %s", labels(got))
	}

	s.Register("1004")
	s.Expire("1004")
	got = phase()
	compareARIPhase(t, "expiry", got, loadARIPhase(t, "expiry"), nil)
	if labels(got) != labels(loadARIPhase(t, "expiry")) {
		t.Errorf("expiry order %s", labels(got))
	}
}

// nonDSC keeps the events for which drop is false, device states included.
func nonDSC(ms []ariMsg, drop func(ariMsg) bool) []ariMsg {
	var out []ariMsg
	for _, m := range ms {
		if !drop(m) {
			out = append(out, m)
		}
	}
	return out
}

func labels(ms []ariMsg) string {
	var out []string
	for _, m := range ms {
		out = append(out, ariLabel(m))
	}
	return fmt.Sprint(out)
}
