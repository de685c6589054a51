package pbxsim

import (
	"strconv"
	"strings"
	"time"
)

// Call-control actions. Their checks, in order, and every response text
// follow main/manager.c (Hangup, Originate, Redirect, BlindTransfer,
// Atxfer), main/features.c (Bridge), res/parking/parking_manager.c (Park)
// and apps/app_mixmonitor.c (MixMonitor, StopMixMonitor) of Asterisk 22;
// see docs/asterisk-fields.md.

func errResp(text string) msg { return msg{{"Response", "Error"}, {"Message", text}} }
func ack(text string) msg     { return msg{{"Response", "Success"}, {"Message", text}} }

// astTrue is ast_true: yes, true, y, t, 1, on.
func astTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

// callOf returns the call a channel belongs to for control purposes (the
// outer call for the inner leg of a Local call).
func callOf(ch *channel) *Call {
	c := ch.call
	if c != nil && c.outer != nil {
		return c.outer
	}
	return c
}

func actHangup(s *Server, m msg) []msg {
	name := m.get("Channel")
	if name == "" {
		return []msg{errResp("No channel specified")}
	}
	cause := 0
	if cs := m.get("Cause"); cs != "" {
		if n, err := strconv.Atoi(cs); err == nil && n >= 0 && n <= 127 {
			cause = n
		}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("No such channel")}
	}
	s.afterReply(func() { s.amiHangupChannel(ch, cause) })
	return []msg{ack("Channel Hungup")}
}

// amiHangupChannel soft-hangs-up a channel with a cause (0 keeps the
// channel's own cause, reported as Normal Clearing).
func (s *Server) amiHangupChannel(ch *channel, cause int) {
	if ch.gone {
		return
	}
	if cause == 0 {
		cause = 16
	}
	c := callOf(ch)
	if c == nil {
		s.softHangupRequest(ch, cause)
		s.hangupEv(ch, cause, "")
		return
	}
	c.hangupFrom(ch, cause)
}

// actOriginate follows action_originate's checks in order. Async
// originates are answered at once and report their outcome in
// OriginateResponse; synchronous ones are answered "Originate successfully
// queued" at once too (Asterisk would wait for the first leg's answer)
// and, as in Asterisk, produce no OriginateResponse.
func actOriginate(s *Server, m msg) []msg {
	name := m.get("Channel")
	exten, context, prio := m.get("Exten"), m.get("Context"), m.get("Priority")
	app, data := m.get("Application"), m.get("Data")
	if name == "" {
		return []msg{errResp("Channel not specified")}
	}
	pi := 0
	if prio != "" {
		n, err := strconv.Atoi(strings.TrimSpace(prio))
		if err != nil {
			return []msg{errResp("Invalid priority")} // priority labels are not modelled
		}
		pi = n
	}
	timeout := 30 * time.Second
	if ts := m.get("Timeout"); ts != "" {
		n, err := strconv.Atoi(strings.TrimSpace(ts))
		if err != nil {
			return []msg{errResp("Invalid timeout")}
		}
		timeout = time.Duration(n) * time.Millisecond
	}
	tech, res, ok := strings.Cut(name, "/")
	if !ok {
		return []msg{errResp("Invalid channel")}
	}
	if pi != 0 && !s.extensionExists(context, exten) {
		return []msg{errResp("Extension does not exist.")}
	}
	async := astTrue(m.get("Async"))
	if !async && app == "" && pi == 0 {
		return []msg{errResp("Originate with 'Exten' requires 'Context' and 'Priority'")}
	}
	req := OriginateRequest{Endpoint: res, Exten: exten, Priority: pi, Application: app, Data: data,
		CallerID: m.get("CallerID"), Timeout: timeout, ActionID: m.get("ActionID")}
	if !strings.EqualFold(tech, "PJSIP") || s.eps[res] == nil {
		// The simulator only reaches its own PJSIP phones: anything else
		// fails to be created, as an unknown endpoint does.
		if !async {
			return []msg{errResp("Originate failed")}
		}
		s.afterReply(func() { s.originateUnreachable(req, tech+"/"+res, context) })
		return []msg{ack("Originate successfully queued")}
	}
	s.afterReply(func() {
		c := s.originate(req)
		c.orig.silent = !async
	})
	return []msg{ack("Originate successfully queued")}
}

func actRedirect(s *Server, m msg) []msg {
	name, name2 := m.get("Channel"), m.get("ExtraChannel")
	exten, exten2 := m.get("Exten"), m.get("ExtraExten")
	context, context2 := m.get("Context"), m.get("ExtraContext")
	prio, prio2 := m.get("Priority"), m.get("ExtraPriority")
	switch {
	case name == "":
		return []msg{errResp("Channel not specified")}
	case context == "":
		return []msg{errResp("Context not specified")}
	case exten == "":
		return []msg{errResp("Exten not specified")}
	case prio == "":
		return []msg{errResp("Priority not specified")}
	}
	if n, err := strconv.Atoi(prio); err != nil || n < 1 {
		return []msg{errResp("Priority is invalid")}
	}
	if name2 != "" && context2 != "" {
		if exten2 == "" {
			return []msg{errResp("ExtraExten not specified")}
		}
		if prio2 == "" {
			return []msg{errResp("ExtraPriority not specified")}
		}
		if n, err := strconv.Atoi(prio2); err != nil || n < 1 {
			return []msg{errResp("ExtraPriority is invalid")}
		}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("Channel does not exist: " + name)}
	}
	if name2 == "" {
		if !s.extensionExists(context, exten) {
			return []msg{errResp("Redirect failed")}
		}
		s.afterReply(func() {
			s.release(ch)
			if !ch.gone {
				s.continueAt(ch, exten)
			}
		})
		return []msg{ack("Redirect successful")}
	}
	ch2 := s.findChannel(name2)
	if ch2 == nil {
		return []msg{errResp("ExtraChannel does not exist: " + name2)}
	}
	if context2 == "" {
		exten2 = exten
	}
	if !s.extensionExists(context, exten) {
		return []msg{errResp("Redirect failed")}
	}
	if !s.extensionExists("internal", exten2) {
		return []msg{errResp("Secondary redirect failed")}
	}
	s.afterReply(func() {
		// Both leave the bridge together: the bridge must not hang up either.
		if br := ch.br; br != nil && br == ch2.br {
			s.bridgeLeave(br, ch)
			s.bridgeLeave(br, ch2)
			s.bridgeDestroy(br)
			if c := ch.call; c != nil {
				c.endQueueAgent("transfer")
				c.state = callEnded
			}
		} else {
			s.release(ch)
			s.release(ch2)
		}
		if !ch.gone {
			s.continueAt(ch, exten)
		}
		if !ch2.gone {
			s.continueAt(ch2, exten2)
		}
	})
	return []msg{ack("Dual Redirect successful")}
}

func actBlindTransfer(s *Server, m msg) []msg {
	name, exten := m.get("Channel"), m.get("Exten")
	if name == "" {
		return []msg{errResp("No channel specified")}
	}
	if exten == "" {
		return []msg{errResp("No extension specified")}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("Channel specified does not exist")}
	}
	if ctx := m.get("Context"); ctx != "" && ctx != "internal" {
		return []msg{errResp("Transfer failed")}
	}
	if ch.br == nil || len(ch.br.chans) != 2 {
		return []msg{errResp("Transfer invalid")}
	}
	if !s.extensionExists("internal", exten) {
		return []msg{errResp("Transfer failed")}
	}
	s.afterReply(func() { s.blindTransfer(ch, exten, true) })
	return []msg{ack("Transfer succeeded")}
}

func actAtxfer(s *Server, m msg) []msg {
	name, exten := m.get("Channel"), m.get("Exten")
	if name == "" {
		return []msg{errResp("No channel specified")}
	}
	if exten == "" {
		return []msg{errResp("No extension specified")}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("Channel specified does not exist")}
	}
	if s.cfg.AtxferCode == "" {
		return []msg{errResp("No attended transfer feature code found")}
	}
	s.afterReply(func() {
		// The feature code and the extension arrive as DTMF on the channel.
		for _, d := range s.cfg.AtxferCode + exten {
			s.dtmf(ch, string(d), 100)
		}
		c := ch.call
		if c == nil || ch.br == nil || !s.extensionExists("internal", exten) {
			return
		}
		if t := s.startAttended(c, ch, exten); t != nil {
			s.transfers = append(s.transfers, t)
		}
	})
	return []msg{ack("Atxfer successfully queued")}
}

func actPark(s *Server, m msg) []msg {
	name := m.get("Channel")
	if name == "" {
		return []msg{errResp("Channel not specified")}
	}
	if t := m.get("Timeout"); t != "" {
		if n, err := strconv.Atoi(t); err != nil || n < 0 {
			return []msg{errResp("Invalid Timeout value.")}
		}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("Channel does not exist: " + name)}
	}
	if lot := m.get("Parkinglot"); lot != "" && lot != "default" {
		return []msg{errResp("Park action failed\n")}
	}
	parker := ch.peer()
	s.afterReply(func() { s.park(ch, parker, -1) })
	// parking_manager.c really sends the newline inside the message.
	return []msg{ack("Park successful\n")}
}

// findByPrefix is ast_channel_get_by_name_prefix.
func (s *Server) findByPrefix(p string) *channel {
	for _, c := range s.chans {
		if strings.HasPrefix(c.name, p) {
			return c
		}
	}
	return nil
}

func actBridge(s *Server, m msg) []msg {
	a, b := m.get("Channel1"), m.get("Channel2")
	if a == "" || b == "" {
		return []msg{errResp("Missing channel parameter in request")}
	}
	c1 := s.findByPrefix(a)
	if c1 == nil {
		return []msg{errResp("Channel1 does not exist: " + a)}
	}
	c2 := s.findByPrefix(b)
	if c2 == nil {
		return []msg{errResp("Channel2 does not exist: " + b)}
	}
	if c1 == c2 {
		return []msg{errResp("Unable to add Channel2 to bridge: " + c2.name)}
	}
	s.afterReply(func() { s.bridgeChannels(c1, c2) })
	return []msg{ack("Channels have been bridged")}
}

func actMixMonitor(s *Server, m msg) []msg {
	name := m.get("Channel")
	if name == "" {
		return []msg{errResp("No channel specified")}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("No such channel")}
	}
	file := m.get("File")
	if file == "" {
		return []msg{errResp("Could not start monitoring channel")}
	}
	if !strings.HasPrefix(file, "/") {
		file = "/var/spool/asterisk/monitor/" + file
	}
	s.afterReply(func() {
		ch.mixmon = true
		s.varSet(ch, "MIXMONITOR_FILENAME", file)
		s.emit(chanEv("MixMonitorStart", "call,all", ch))
	})
	// manager_mixmonitor answers Success with no Message line.
	return []msg{{{"Response", "Success"}}}
}

func actStopMixMonitor(s *Server, m msg) []msg {
	name := m.get("Channel")
	if name == "" {
		return []msg{errResp("No channel specified")}
	}
	ch := s.findChannel(name)
	if ch == nil {
		return []msg{errResp("No such channel")}
	}
	if !ch.mixmon {
		return []msg{errResp("Could not stop monitoring channel")}
	}
	s.afterReply(func() {
		ch.mixmon = false
		s.emit(chanEv("MixMonitorStop", "call,all", ch))
	})
	return []msg{{{"Response", "Success"}}}
}
