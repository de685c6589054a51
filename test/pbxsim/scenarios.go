package pbxsim

import (
	"time"
)

// side returns the call's live channel of extension ext.
func (c *Call) side(ext string) *channel {
	for _, ch := range []*channel{c.a, c.b} {
		if ch != nil && !ch.gone && ch.ext == ext {
			return ch
		}
	}
	return nil
}

// Hold simulates the phone of extension by putting the answered call on
// hold (re-INVITE a=sendonly): chan_pjsip queues the hold on that phone's
// channel, so Hold / ChannelHold name by's channel (MusicClass "default",
// the endpoint's moh_suggest). It reports whether by is on the call.
func (c *Call) Hold(by string) bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.side(by)
	if ch == nil || c.state != callUp || ch.held {
		return false
	}
	s.hold(ch)
	return true
}

// Unhold takes the call off hold again (Unhold / ChannelUnhold).
func (c *Call) Unhold(by string) bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.side(by)
	if ch == nil || !ch.held {
		return false
	}
	s.unhold(ch)
	return true
}

// SendDTMF simulates the phone of extension from sending digits (RFC 4733)
// on its channel: DTMFBegin and DTMFEnd (Direction Received) per digit and
// ARI ChannelDtmfReceived.
func (c *Call) SendDTMF(from, digits string) bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.side(from)
	if ch == nil {
		return false
	}
	for _, d := range digits {
		s.dtmf(ch, string(d), 120)
	}
	return true
}

// continueAt sends a channel that left its bridge (transfer, Redirect) to
// extension exten of internal, as a new call keeping its Linkedid.
func (s *Server) continueAt(ch *channel, exten string) *Call {
	nc := &Call{s: s, a: ch, from: ch.ext, start: time.Now(), linkedid: ch.linkedid}
	ch.call = nc
	ch.held = false
	s.runDialplan(nc, ch, exten)
	return nc
}

// BlindTransfer simulates the phone of extension by blind-transferring
// (SIP REFER) the other party of an answered call to extension to. The
// transferee leaves the bridge and dials to, keeping the call's Linkedid;
// by's channel hangs up. The returned call rings the new target.
func (c *Call) BlindTransfer(by, to string) *Call {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.side(by)
	if ch == nil || c.state != callUp {
		return nil
	}
	nc, _ := s.blindTransfer(ch, to, false)
	return nc
}

// blindTransfer is ast_bridge_transfer_blind for a two-party bridge.
func (s *Server) blindTransfer(xfer *channel, exten string, viaAMI bool) (*Call, string) {
	br := xfer.br
	if br == nil || len(br.chans) != 2 {
		return nil, "Transfer invalid"
	}
	if !s.extensionExists("internal", exten) {
		return nil, "Transfer failed"
	}
	tee := xfer.peer()
	old := xfer.call
	s.varSet(tee, "BLINDTRANSFER", xfer.name)
	m := msg{{"Event", "BlindTransfer"}, {"Privilege", "call,all"}, {"Result", "Success"}}
	m = append(m, xfer.block("Transferer")...)
	m = append(m, tee.block("Transferee")...)
	m = append(m, br.state("")...)
	m = append(m, field{"IsExternal", "Yes"}, field{"Context", "internal"}, field{"Extension", exten})
	s.emit(m)
	s.ari(ariEv("BridgeBlindTransfer", obj{{"channel", xfer.ariJSON()}, {"exten", exten}, {"context", "internal"},
		{"result", "Success"}, {"is_external", true}, {"transferee", tee.ariJSON()}, {"bridge", br.ariJSON()}}, xfer, tee))
	if old != nil {
		old.endQueueAgent("transfer")
		old.state = callEnded
	}
	s.bridgeLeave(br, tee)
	nc := s.continueAt(tee, exten)
	if viaAMI {
		s.softHangupRequest(xfer, 16)
	} else {
		s.hangupRequest(xfer, 16, "")
	}
	s.bridgeLeave(br, xfer)
	s.bridgeDestroy(br)
	s.hangupEv(xfer, 16, "")
	s.updateDevice(xfer.ext)
	return nc, ""
}

// Transfer is an attended transfer in progress: the transferer holds the
// original call and talks to the target on a consultation call.
type Transfer struct {
	s          *Server
	orig       *Call
	consult    *Call
	first      *channel // transferer's leg to the transferee
	transferee *channel
	done       bool
}

// StartAttendedTransfer simulates the phone of extension by putting the
// answered call on hold and calling extension to on a second line. Answer
// the returned Transfer's Consult call, then Complete (REFER with
// Replaces) or Cancel.
func (c *Call) StartAttendedTransfer(by, to string) *Transfer {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	first := c.side(by)
	if first == nil || c.state != callUp {
		return nil
	}
	return s.startAttended(c, first, to)
}

func (s *Server) startAttended(c *Call, first *channel, to string) *Transfer {
	tee := first.peer()
	if tee == nil {
		return nil
	}
	if !first.held {
		s.hold(first)
	}
	a2, cc := s.inbound(first.ext, to)
	s.dialEndpoint(cc, a2, to)
	return &Transfer{s: s, orig: c, consult: cc, first: first, transferee: tee}
}

// Consult returns the consultation call from the transferer to the target.
func (t *Transfer) Consult() *Call { return t.consult }

// Complete finishes the attended transfer once the consultation call is
// answered: the transferee is swapped into the consultation bridge in
// place of the transferer (DestType Bridge), AttendedTransfer /
// BridgeAttendedTransfer are published, and both transferer channels hang
// up. It returns the resulting transferee-target call, or nil.
func (t *Transfer) Complete() *Call {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cc := t.consult
	if cc.state != callUp || t.first.gone || t.transferee.gone {
		return nil
	}
	first, second, tee, target := t.first, cc.a, t.transferee, cc.b
	br1, br2 := first.br, second.br
	// Snapshots are taken when the transfer starts, published after.
	m := msg{{"Event", "AttendedTransfer"}, {"Privilege", "call,all"}, {"Result", "Success"}}
	m = append(m, first.block("OrigTransferer")...)
	m = append(m, br1.state("Orig")...)
	m = append(m, second.block("SecondTransferer")...)
	m = append(m, br2.state("Second")...)
	m = append(m, tee.block("Transferee")...)
	m = append(m, target.block("TransferTarget")...)
	m = append(m, field{"IsExternal", "Yes"}, field{"DestType", "Bridge"}, field{"DestBridgeUniqueid", br2.id})
	ev := ariEv("BridgeAttendedTransfer", obj{{"transferer_first_leg", first.ariJSON()},
		{"transferer_second_leg", second.ariJSON()}, {"result", "Success"}, {"is_external", true},
		{"transferee", tee.ariJSON()}, {"transfer_target", target.ariJSON()},
		{"transferer_first_leg_bridge", br1.ariJSON()}, {"transferer_second_leg_bridge", br2.ariJSON()},
		{"destination_type", "bridge"}, {"destination_bridge", br2.id}}, first, second, tee, target)
	t.orig.endQueueAgent("transfer")
	s.bridgeLeave(br1, tee)
	s.bridgeEnter(br2, tee)
	s.bridgeLeave(br2, second)
	s.emit(m)
	s.ari(ev)
	s.hangupRequest(second, 16, "")
	s.hangupEv(second, 16, "")
	s.hangupRequest(first, 16, "")
	s.bridgeLeave(br1, first)
	s.bridgeDestroy(br1)
	s.hangupEv(first, 16, "")
	s.updateDevice(first.ext)
	t.orig.state, cc.state = callEnded, callEnded
	t.done = true
	nc := &Call{s: s, a: tee, b: target, from: tee.ext, to: target.ext, br: br2, state: callUp,
		start: time.Now(), answered: time.Now(), linkedid: tee.linkedid, plain: true}
	tee.call, target.call = nc, nc
	return nc
}

// Cancel abandons the attended transfer: the consultation call is hung up
// by the transferer and the original call taken off hold.
func (t *Transfer) Cancel() {
	t.consult.Hangup()
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t.done = true
	if t.first.held && !t.first.gone {
		s.unhold(t.first)
	}
}

// Park parks the party ext of an answered call as the AMI Park action
// does: it leaves the call's bridge for the "default" parking lot's
// holding bridge (ParkedCall, space 701 upwards) and the other party hangs
// up. It returns the parking space and the parked call, whose Hangup
// gives up the parked call.
func (c *Call) Park(ext string) (int, *Call) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := c.side(ext)
	if ch == nil || ch.br == nil {
		return 0, nil
	}
	return s.park(ch, ch.peer(), -1)
}

func (s *Server) parkedCallEvent(ev string, ch *channel, parker string, slot int, since time.Time) {
	m := msg{{"Event", ev}, {"Privilege", "call,all"}}
	m = append(m, ch.block("Parkee")...)
	s.emit(append(m, field{"ParkerDialString", parker}, field{"Parkinglot", "default"},
		field{"ParkingSpace", itoa(slot)}, field{"ParkingTimeout", "45"},
		field{"ParkingDuration", itoa(int(time.Since(since).Seconds()))}))
}

// park moves ch into the parking lot; parker (may be nil) is hung up.
func (s *Server) park(ch, parker *channel, amiCause int) (int, *Call) {
	old := ch.call
	if old != nil {
		old.endQueueAgent("transfer")
		old.state = callEnded
	}
	if br := ch.br; br != nil {
		s.bridgeLeave(br, ch)
		if parker != nil && !parker.gone {
			if amiCause >= 0 {
				s.softHangupRequest(parker, amiCause)
			} else {
				s.hangupRequest(parker, 16, "")
			}
			s.bridgeLeave(br, parker)
			s.bridgeDestroy(br)
			s.hangupEv(parker, 16, "")
			s.updateDevice(parker.ext)
		} else if len(br.chans) == 0 {
			s.bridgeDestroy(br)
		}
	}
	slot := 701
	for s.parked[slot] != nil {
		slot++
	}
	if s.parkBridge == nil {
		b := &bridge{id: uuid(), tech: "holding_bridge", class: "parking", ariType: "holding",
			creator: "Parking", name: "default", created: time.Now()}
		s.parkBridge = b
		s.bridges = append(s.bridges, b)
		s.emit(append(msg{{"Event", "BridgeCreate"}, {"Privilege", "call,all"}}, b.state("")...))
		s.ari(ariEv("BridgeCreated", obj{{"bridge", b.ariJSON()}}))
	}
	s.bridgeEnter(s.parkBridge, ch)
	parkerDial := ""
	if parker != nil {
		parkerDial = "PJSIP/" + parker.ext
	}
	pc := &Call{s: s, a: ch, from: ch.ext, app: "Park", state: callUp, start: time.Now(), answered: time.Now(),
		linkedid: ch.linkedid, parkSlot: slot, parker: parkerDial}
	ch.call = pc
	s.parked[slot] = pc
	s.parkedCallEvent("ParkedCall", ch, parkerDial, slot, pc.start)
	return slot, pc
}

// giveUpParked: the parked channel hangs up.
func (c *Call) giveUpParked(amiCause int) {
	s, ch := c.s, c.a
	if amiCause >= 0 {
		s.softHangupRequest(ch, amiCause)
	} else {
		s.hangupRequest(ch, 16, "")
	}
	s.parkedCallEvent("ParkedCallGiveUp", ch, c.parker, c.parkSlot, c.start)
	delete(s.parked, c.parkSlot)
	br := s.parkBridge
	s.bridgeLeave(br, ch)
	if len(br.chans) == 0 {
		s.bridgeDestroy(br)
		s.parkBridge = nil
	}
	s.hangupEv(ch, 16, "")
	s.updateDevice(ch.ext)
}

// release takes a channel out of whatever it is doing so it can be
// redirected or bridged elsewhere; the party it leaves behind in a
// two-party bridge is hung up, as a basic bridge does.
func (s *Server) release(ch *channel) {
	c := ch.call
	switch {
	case ch.br != nil && ch.br == s.parkBridge:
		delete(s.parked, c.parkSlot)
		s.parkedCallEvent("UnParkedCall", ch, c.parker, c.parkSlot, c.start)
		s.bridgeLeave(ch.br, ch)
		if len(s.parkBridge.chans) == 0 {
			s.bridgeDestroy(s.parkBridge)
			s.parkBridge = nil
		}
	case ch.br != nil:
		br := ch.br
		peer := ch.peer()
		if c != nil {
			c.endQueueAgent("transfer")
		}
		s.bridgeLeave(br, ch)
		if peer != nil {
			s.hangupRequest(peer, 16, "")
			s.bridgeLeave(br, peer)
			s.bridgeDestroy(br)
			s.hangupEv(peer, 16, "")
			s.updateDevice(peer.ext)
		} else {
			s.bridgeDestroy(br)
		}
	case c != nil && c.q != nil && c.state == callRinging:
		for _, at := range c.q.attempts {
			s.dialEv("DialEnd", ch, at.ch, field{"DialStatus", "CANCEL"})
			s.hangupEv(at.ch, 0, "")
			s.updateDevice(at.m.ext)
		}
		c.q.attempts = nil
		s.leaveQueue(c.q)
	case c != nil && c.b != nil && c.b != ch && c.state == callRinging && c.local == nil:
		s.dialEv("DialEnd", ch, c.b, field{"DialStatus", "CANCEL"})
		s.hangupEv(c.b, 0, "")
		s.updateDevice(c.b.ext)
	}
	s.stasisEnd(ch)
	if c != nil {
		c.state = callEnded
	}
}

// bridgeChannels is the Bridge action: both channels leave what they
// were doing and meet in a new basic bridge.
func (s *Server) bridgeChannels(c1, c2 *channel) *Call {
	s.release(c1)
	if !c2.gone {
		s.release(c2)
	}
	if c1.gone || c2.gone {
		return nil
	}
	for _, ch := range []*channel{c1, c2} {
		if ch.state != 6 {
			s.newstate(ch, 6)
		}
	}
	nc := &Call{s: s, a: c1, b: c2, from: c1.ext, to: c2.ext, state: callUp, start: time.Now(),
		answered: time.Now(), linkedid: c1.linkedid, plain: true}
	c1.call, c2.call = nc, nc
	nc.br = s.newBridge()
	s.joinPair(nc.br, c1, c2)
	return nc
}
