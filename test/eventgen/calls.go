package eventgen

import (
	"fmt"
	"time"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// Calls. Each scenario is a chain of steps on the simulated clock; the
// event order within a step follows the captures (call_answered,
// call_busy, call_noanswer, call_echo) and, where nothing was captured,
// the simulator's model of Asterisk (test/pbxsim).

const (
	sec = time.Second
	ms  = time.Millisecond
)

// spawn starts one call; when it ends, another starts a little later, so
// that each PBX keeps about ConcurrentCalls calls going.
func (p *pbx) spawn() (time.Duration, step) {
	g := p.g
	if g.draining {
		return 0, nil
	}
	p.active++
	var first step
	switch g.pick(28, 16, 14, 18, 4) {
	case 0:
		first = p.internalCall
	case 1:
		first = p.inboundCall
	case 2:
		first = p.outboundCall
	case 3:
		first = p.queueCall
	default:
		first = p.echoCall
	}
	return 0, p.track(first)
}

// track runs a call's steps and, once it is over, schedules the next call.
func (p *pbx) track(s step) step {
	return func() (time.Duration, step) {
		d, next := s()
		if next != nil {
			return d, p.track(next)
		}
		p.active--
		if !p.g.draining {
			p.g.at(p.g.between(100*ms, 5*sec), p.spawn)
		}
		return 0, nil
	}
}

// hook runs when a bridged call ends or is transferred (queue calls publish
// AgentComplete there); reason is "caller", "agent" or "transfer".
type hook func(reason string)

func (h hook) run(reason string) {
	if h != nil {
		h(reason)
	}
}

// internalCall: one phone calls another (Dial(PJSIP/<ext>,20)).
func (p *pbx) internalCall() (time.Duration, step) {
	A := p.idleExt()
	B := p.idleExt(A)
	if A == nil || B == nil {
		return 0, nil
	}
	a := p.newChannel(A, "internal", B.name, 4, "", A.name, A.cidName, "Dial")
	b := p.dialExt(a, B)
	return p.ringing(a, b, true)
}

// inboundCall: a call from the public network reaches a phone through a
// trunk (DID routing).
func (p *pbx) inboundCall() (time.Duration, step) {
	B := p.idleExt()
	if B == nil {
		return 0, nil
	}
	a := p.inboundChannel(fmt.Sprintf("4930555%d%s", p.idx+1, B.name), "Dial")
	b := p.dialExt(a, B)
	return p.ringing(a, b, true)
}

var companies = []string{"ACME GmbH", "Globex Corp", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises"}

// inboundChannel is the trunk channel of a call from outside to exten.
func (p *pbx) inboundChannel(exten, app string) *channel {
	num := p.externalNumber()
	a := p.newChannel(p.trunk(), "from-trunk", exten, 4, "", num, "", app)
	if num != "" && p.g.chance(0.4) {
		p.callerID(a, num, companies[p.g.rng.IntN(len(companies))]) // CNAM lookup
	}
	return a
}

// dialExt creates the channel of phone B dialed by a, as app_dial does:
// Newchannel (Down), its connected line, DialBegin, a's connected line.
func (p *pbx) dialExt(a *channel, B *endpoint) *channel {
	b := p.newChannel(B, "internal", "s", 0, a.linkedid, B.name, B.cidName, "AppDial")
	b.exten = a.exten
	p.connectedLine(b, a.cidNum, a.cidName)
	p.dialBegin(a, b, B.name)
	p.connectedLine(a, B.name, B.cidName)
	return b
}

// ringing decides what becomes of a phone dialed by a: answered, no
// answer (the 20 s Dial timeout), busy (486), the caller giving up, or
// unavailable (a stale registration: the INVITE fails).
func (p *pbx) ringing(a, b *channel, canTransfer bool) (time.Duration, step) {
	g := p.g
	outcome := g.pick(62, 11, 9, 10, 8)
	if outcome != 4 {
		p.newstate(b, 5)
	}
	switch outcome {
	case 0:
		return g.between(2*sec, 15*sec), func() (time.Duration, step) {
			br := p.answer(a, b)
			return p.talk(a, b, br, canTransfer, nil)
		}
	case 1:
		return 20 * sec, func() (time.Duration, step) {
			p.dialEnd(a, b, "NOANSWER")
			p.hangupRequest(a, 16, true)
			p.hangup(b, 0)
			p.hangup(a, 16)
			return 0, nil
		}
	case 2:
		return g.between(sec, 4*sec), func() (time.Duration, step) {
			p.fail(a, b, 17, "BUSY")
			return 0, nil
		}
	case 3:
		return g.between(2*sec, 15*sec), func() (time.Duration, step) {
			p.cancel(a, b)
			return 0, nil
		}
	default:
		return g.between(300*ms, 3*sec), func() (time.Duration, step) {
			p.fail(a, b, 20, "CHANUNAVAIL")
			return 0, nil
		}
	}
}

// fail: the dialed side refuses with cause (busy, rejected, unavailable);
// the caller's dialplan then hangs up (call_busy capture).
func (p *pbx) fail(a, b *channel, cause int32, status string) {
	p.hangupRequest(b, cause, false)
	p.dialEnd(a, b, status)
	p.hangupRequest(a, 16, true)
	p.hangup(a, cause)
	p.hangup(b, cause)
}

// cancel: the caller hangs up while the other side rings.
func (p *pbx) cancel(a, b *channel) {
	p.hangupRequest(a, 16, false)
	p.dialEnd(a, b, "CANCEL")
	p.hangup(b, 0)
	p.hangup(a, 16)
}

// answer: b answers a's Dial; both enter a new bridge (call_answered).
func (p *pbx) answer(a, b *channel) *bridge {
	p.newstate(b, 6)
	b.exten = "" // Asterisk clears the outgoing channel's exten on answer
	p.dialEnd(a, b, "ANSWER")
	if a.state != 6 {
		p.newstate(a, 6)
	}
	br := p.newBridge()
	p.enter(br, b)
	p.enter(br, a)
	return br
}

// talk is the conversation of a and b in br: holds, DTMF, then one of
// them hangs up, or b (a phone) transfers a.
func (p *pbx) talk(a, b *channel, br *bridge, canTransfer bool, h hook) (time.Duration, step) {
	g := p.g
	n := g.rng.IntN(4)
	var next step
	next = func() (time.Duration, step) {
		if n > 0 {
			n--
			who := a
			if g.chance(0.6) {
				who = b
			}
			if g.chance(0.6) && !who.ep.trunk {
				p.hold(who, true)
				return g.between(3*sec, 40*sec), func() (time.Duration, step) {
					p.hold(who, false)
					return g.between(3*sec, 60*sec), next
				}
			}
			digits := []string{"1", "2", "5#", "*9", "0", "1234#"}[g.rng.IntN(6)]
			p.dtmf(who, digits)
			return g.between(2*sec, 60*sec), next
		}
		if canTransfer && !b.ep.trunk && g.chance(0.2) {
			if C := p.idleExt(a.ep, b.ep); C != nil {
				if g.chance(0.55) {
					return p.blindTransfer(a, b, br, C, h)
				}
				return p.attendedTransfer(a, b, br, C, h)
			}
		}
		if g.chance(0.55) {
			p.hangUpCaller(a, b, br, h)
		} else {
			p.hangUpCallee(a, b, br, h)
		}
		return 0, nil
	}
	return g.between(5*sec, 120*sec), next
}

// hangUpCaller: a (whose dialplan ran Dial) hangs up (call_answered).
func (p *pbx) hangUpCaller(a, b *channel, br *bridge, h hook) {
	p.hangupRequest(a, 16, false)
	h.run("caller")
	p.leave(br, a)
	p.hangupRequest(a, 16, true)
	p.leave(br, b)
	p.destroy(br)
	p.hangup(b, 16)
	p.hangup(a, 16)
}

// hangUpCallee: b hangs up; a's Dial returns and its dialplan hangs up.
func (p *pbx) hangUpCallee(a, b *channel, br *bridge, h hook) {
	p.hangupRequest(b, 16, false)
	h.run("agent")
	p.leave(br, b)
	p.hangup(b, 16)
	p.leave(br, a)
	p.destroy(br)
	p.hangupRequest(a, 16, true)
	p.hangup(a, 16)
}

// blindTransfer: b sends a to phone C (REFER). a leaves the bridge and
// dials C, keeping its Linkedid; b hangs up.
func (p *pbx) blindTransfer(a, b *channel, br *bridge, C *endpoint, h hook) (time.Duration, step) {
	t := &pb.Transfer{
		Kind: pb.Transfer_KIND_BLIND, Result: "Success", Transferer: b.pb(), Transferee: a.pb(),
		Context: "internal", Extension: C.name, IsExternal: true, BridgeId: br.id,
	}
	p.chanEvent(t.Transferer, &pb.Event{Payload: &pb.Event_Transfer{Transfer: t}})
	h.run("transfer")
	p.leave(br, a)
	a.context, a.exten = "internal", C.name
	c := p.dialExt(a, C)
	p.hangupRequest(b, 16, false)
	p.leave(br, b)
	p.destroy(br)
	p.hangup(b, 16)
	return p.ringing(a, c, false)
}

// attendedTransfer: b holds a, calls C on a second line, and once C has
// answered joins a to C (DestType Bridge); or gives up and returns to a.
func (p *pbx) attendedTransfer(a, b *channel, br *bridge, C *endpoint, h hook) (time.Duration, step) {
	g := p.g
	p.hold(b, true)
	b2 := p.newChannel(b.ep, "internal", C.name, 4, "", b.ep.name, b.ep.cidName, "Dial")
	c := p.dialExt(b2, C)
	p.newstate(c, 5)
	back := func() (time.Duration, step) {
		p.hold(b, false)
		return p.talk(a, b, br, false, h)
	}
	if g.chance(0.2) {
		return 15 * sec, func() (time.Duration, step) {
			p.cancel(b2, c)
			return g.between(sec, 5*sec), back
		}
	}
	return g.between(2*sec, 10*sec), func() (time.Duration, step) {
		br2 := p.answer(b2, c)
		return g.between(3*sec, 40*sec), func() (time.Duration, step) {
			if g.chance(0.15) {
				p.hangUpCaller(b2, c, br2, nil)
				return g.between(sec, 5*sec), back
			}
			// Snapshots are taken when the transfer starts, published after.
			t := &pb.Transfer{
				Kind: pb.Transfer_KIND_ATTENDED, Result: "Success", Transferer: b.pb(), SecondTransferer: b2.pb(),
				Transferee: a.pb(), Target: c.pb(), IsExternal: true, DestType: "Bridge", DestBridgeId: br2.id, BridgeId: br.id,
			}
			h.run("transfer")
			p.leave(br, a)
			p.enter(br2, a)
			p.leave(br2, b2)
			p.chanEvent(t.Transferer, &pb.Event{Payload: &pb.Event_Transfer{Transfer: t}})
			p.hangupRequest(b2, 16, false)
			p.hangup(b2, 16)
			p.hangupRequest(b, 16, false)
			p.leave(br, b)
			p.destroy(br)
			p.hangup(b, 16)
			return p.talk(a, c, br2, false, nil)
		}
	}
}

// outboundCall: a phone calls a public number through a trunk.
func (p *pbx) outboundCall() (time.Duration, step) {
	g := p.g
	A := p.idleExt()
	if A == nil {
		return 0, nil
	}
	T := p.trunk()
	num := p.dialedNumber()
	a := p.newChannel(A, "internal", num, 4, "", A.name, A.cidName, "Dial")
	b := p.newChannel(T, "from-trunk", "s", 0, a.linkedid, num, "", "AppDial")
	b.exten = num
	p.connectedLine(b, A.name, A.cidName)
	p.dialBegin(a, b, num+"@"+T.name)
	if (T.regStatus != "Registered" && g.chance(0.5)) || g.chance(0.06) {
		// The provider refuses the call (403/603): Call Rejected.
		return g.between(200*ms, 2*sec), func() (time.Duration, step) {
			p.fail(a, b, 21, "CONGESTION")
			return 0, nil
		}
	}
	return g.between(500*ms, 3*sec), func() (time.Duration, step) {
		p.newstate(b, 5) // 180 Ringing
		p.connectedLine(a, num, "")
		switch g.pick(62, 14, 10, 14) {
		case 0:
			return g.between(3*sec, 25*sec), func() (time.Duration, step) {
				br := p.answer(a, b)
				return p.talk(a, b, br, false, nil)
			}
		case 1: // 480 after the far end's own timeout
			return g.between(30*sec, 60*sec), func() (time.Duration, step) {
				p.fail(a, b, 19, "NOANSWER")
				return 0, nil
			}
		case 2:
			return g.between(sec, 5*sec), func() (time.Duration, step) {
				p.fail(a, b, 17, "BUSY")
				return 0, nil
			}
		default:
			return g.between(2*sec, 20*sec), func() (time.Duration, step) {
				p.cancel(a, b)
				return 0, nil
			}
		}
	}
}

// echoCall: a phone calls the echo test (600): Answer, Echo; it hangs up
// (call_echo: Hangup cause 0).
func (p *pbx) echoCall() (time.Duration, step) {
	g := p.g
	A := p.idleExt()
	if A == nil {
		return 0, nil
	}
	a := p.newChannel(A, "internal", "600", 4, "", A.name, A.cidName, "Echo")
	p.newstate(a, 6)
	return g.between(3*sec, 40*sec), func() (time.Duration, step) {
		if g.chance(0.5) {
			p.dtmf(a, "123")
		}
		p.hangupRequest(a, 0, false)
		p.hangupRequest(a, 16, true)
		p.hangup(a, 0)
		return 0, nil
	}
}

// queueCall: a phone or an outside caller reaches a queue (Answer,
// Queue(<name>)): it waits, available members ring (AgentCalled), one
// answers (AgentConnect) or nobody does (AgentRingNoAnswer) and the queue
// tries again, or the caller gives up (QueueCallerAbandon).
func (p *pbx) queueCall() (time.Duration, step) {
	g := p.g
	q := p.queues[g.pick(70, 30)]
	var a *channel
	if g.chance(0.6) {
		A := p.idleExt(p.exts[:6]...) // members do not call their own queues
		if A == nil {
			return 0, nil
		}
		a = p.newChannel(A, "internal", q.exten, 4, "", A.name, A.cidName, "Queue")
	} else {
		a = p.inboundChannel(fmt.Sprintf("4930555%d%s", p.idx+1, q.exten), "Queue")
	}
	p.newstate(a, 6) // Answer
	e := q.join(a)
	tries := 0
	giveUp := func(legs []*channel) {
		p.hangupRequest(a, 16, false)
		for _, o := range legs {
			p.dialEnd(a, o, "CANCEL")
			p.hangup(o, 0)
		}
		q.abandon(e)
		p.hangupRequest(a, 16, true)
		p.hangup(a, 16)
	}
	var offer step
	offer = func() (time.Duration, step) {
		avail := q.available()
		if len(avail) == 0 {
			tries++
			if tries > 4 || g.chance(0.15) {
				return g.between(3*sec, 30*sec), func() (time.Duration, step) {
					giveUp(nil)
					return 0, nil
				}
			}
			return g.between(5*sec, 20*sec), offer
		}
		legs := make([]*channel, len(avail))
		for i, m := range avail {
			o := p.newChannel(m.ep, "from-queue", "s", 0, a.linkedid, m.ep.name, m.ep.cidName, "AppQueue")
			o.exten = a.exten
			p.connectedLine(o, a.cidNum, a.cidName)
			q.agentEvent(pb.QueueAgent_ACTION_CALLED, a, o, m, 0, 0, 0, "")
			p.dialBegin(a, o, m.iface)
			legs[i] = o
		}
		for _, o := range legs {
			p.newstate(o, 5)
		}
		rang := g.now
		switch g.pick(70, 18, 12) {
		case 0:
			return g.between(2*sec, 14*sec), func() (time.Duration, step) {
				i := g.rng.IntN(len(legs))
				m, o := avail[i], legs[i]
				ring := p.seconds(rang)
				p.newstate(o, 6)
				p.connectedLine(a, m.ep.name, m.ep.cidName)
				p.dialEnd(a, o, "ANSWER")
				for j, x := range legs {
					if j != i {
						p.dialEnd(a, x, "CANCEL")
						p.hangup(x, 26)
					}
				}
				hold := p.seconds(e.joined)
				q.leave(e)
				q.agentEvent(pb.QueueAgent_ACTION_CONNECT, a, o, m, hold, ring, 0, "")
				m.inCall = true
				q.holdSum += uint64(hold)
				if hold <= q.serviceLevel {
					q.withinSL++
				}
				br := p.newBridge()
				p.enter(br, a)
				p.enter(br, o)
				connected := g.now
				done := func(reason string) {
					talk := p.seconds(connected)
					q.agentEvent(pb.QueueAgent_ACTION_COMPLETE, a, o, m, hold, 0, talk, reason)
					m.calls++
					m.lastCall = g.now.Unix()
					q.completed++
					q.talkSum += uint64(talk)
				}
				return p.talk(a, o, br, true, done)
			}
		case 1:
			return 15 * sec, func() (time.Duration, step) {
				for i, o := range legs {
					p.dialEnd(a, o, "NOANSWER")
					q.agentEvent(pb.QueueAgent_ACTION_RING_NO_ANSWER, a, o, avail[i], 0, uint32(g.now.Sub(rang)/ms), 0, "")
					p.hangup(o, 0)
					if g.chance(0.1) {
						q.pause(avail[i], true, "Auto-Pause")
					}
				}
				if tries++; tries > 3 {
					giveUp(nil)
					return 0, nil
				}
				return g.between(2*sec, 6*sec), offer
			}
		default:
			return g.between(2*sec, 14*sec), func() (time.Duration, step) {
				giveUp(legs)
				return 0, nil
			}
		}
	}
	return g.between(ms, 2*sec), offer
}
