package eventgen

import (
	"fmt"
	"time"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// What a PBX does besides calls, and the collector's link to it.

// boot is the collector's first connection to the PBX, after which calls
// start and the PBX's background life begins.
func (p *pbx) boot() (time.Duration, step) {
	g := p.g
	p.connect()
	for range g.cfg.ConcurrentCalls {
		g.at(g.between(200*time.Millisecond, 20*time.Second), p.spawn)
	}
	g.at(g.between(2*time.Second, 8*time.Second), p.contactChurn)
	g.at(g.between(30*time.Second, 3*time.Minute), p.trunkFlap)
	g.at(g.between(time.Minute, 5*time.Minute), p.pauseChurn)
	g.at(g.between(20*time.Second, 40*time.Second), p.queueSummaries)
	g.at(time.Minute, p.reconcile)
	g.at(g.between(10*time.Minute, 40*time.Minute), p.linkDrop)
	return 0, nil
}

// connect is a new collector session: RESYNCING, the full state (outbound
// registrations, endpoints, contacts, queues, channels), then CONNECTED,
// in the order of the collector's applyFull.
func (p *pbx) connect() {
	g := p.g
	p.session = g.uuid4()
	p.seq = 0
	p.connected = true
	p.drift = 0 // the snapshot below tells the truth
	p.connection(pb.PbxConnection_STATE_RESYNCING, "", p.banner)
	for _, t := range p.trunks {
		p.emit(&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: &pb.TrunkRegistration{
			Name: t.regName, Technology: pb.Technology_TECHNOLOGY_PJSIP, ClientUri: t.clientURI, ServerUri: t.serverURI, Status: t.regStatus,
		}}})
	}
	eps := p.endpoints()
	for _, e := range eps {
		p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_EndpointState{EndpointState: p.endpointState(e)}})
	}
	for _, e := range eps {
		if !e.registered {
			continue
		}
		c := &pb.ContactStatus{Endpoint: e.name, Aor: e.aor, Uri: e.uri, Status: e.contactSt, UserAgent: e.ua, ViaAddress: e.via, ExpirationTime: e.expires}
		if e.contactSt == "Reachable" {
			c.RoundtripUsec, c.RoundtripKnown = e.rtt, true
		}
		p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_ContactStatus{ContactStatus: c}})
	}
	p.emit(&pb.Event{Payload: &pb.Event_QueuesSnapshot{QueuesSnapshot: p.queuesSnapshot()}})
	p.snapshot()
	p.attempt = 0
	p.connection(pb.PbxConnection_STATE_CONNECTED, "", p.banner)
}

// endpointState is the endpoint as PJSIPShowEndpoints lists it.
func (p *pbx) endpointState(e *endpoint) *pb.EndpointState {
	s := &pb.EndpointState{
		Name: e.name, Technology: pb.Technology_TECHNOLOGY_PJSIP, Kind: pb.EndpointKind_ENDPOINT_KIND_EXTENSION,
		DeviceState: deviceText[e.dev], ActiveChannels: uint32(len(e.chans)), Aors: []string{e.aor},
		HasOutboundAuth: e.outboundAuth,
	}
	if e.trunk {
		s.Kind, s.Transport = pb.EndpointKind_ENDPOINT_KIND_TRUNK, "transport-udp"
	}
	if e.registered {
		s.ContactUris = []string{e.uri}
	}
	return s
}

// snapshot publishes every live channel, as CoreShowChannels lists them.
func (p *pbx) snapshot() {
	s := &pb.ChannelsSnapshot{}
	for _, c := range p.chans {
		s.Channels = append(s.Channels, c.listed(p.g.now))
	}
	p.emit(&pb.Event{Payload: &pb.Event_ChannelsSnapshot{ChannelsSnapshot: s}})
}

func (p *pbx) connection(st pb.PbxConnection_State, detail, banner string) {
	p.emitAlways(&pb.Event{Payload: &pb.Event_PbxConnection{PbxConnection: &pb.PbxConnection{
		State: st, Detail: detail, Banner: banner, Attempt: p.attempt,
	}}})
}

var linkErrors = []string{
	"read tcp 10.0.0.2:41234->%s:5038: read: connection reset by peer",
	"keepalive: context deadline exceeded",
	"pbx is shutting down",
	"read tcp 10.0.0.2:41234->%s:5038: i/o timeout",
}

// linkDrop loses the AMI connection: DISCONNECTED (still in the old
// session), maybe failed reconnects, then a new session that resyncs.
// Whatever the PBX does meanwhile is lost, except what the resync lists.
func (p *pbx) linkDrop() (time.Duration, step) {
	g := p.g
	if g.draining {
		return 0, nil
	}
	addr := fmt.Sprintf("10.0.%d.5", p.idx)
	p.attempt++
	p.connection(pb.PbxConnection_STATE_DISCONNECTED, fmt.Sprintf(linkErrors[g.rng.IntN(len(linkErrors))], addr), "")
	p.connected = false
	fails := 0
	if g.chance(0.3) {
		fails = 1 + g.rng.IntN(3)
	}
	var retry step
	retry = func() (time.Duration, step) {
		if fails > 0 {
			fails--
			p.attempt++
			p.connection(pb.PbxConnection_STATE_DISCONNECTED, "dial tcp "+addr+":5038: connect: connection refused", "")
			return g.between(time.Second, 4*time.Second), retry
		}
		p.connect()
		return g.between(10*time.Minute, 40*time.Minute), p.linkDrop
	}
	return g.between(500*time.Millisecond, 4*time.Second), retry
}

// reconcile is the collector's periodic check: a snapshot when channels
// drifted (a Hangup was lost), then the counts.
func (p *pbx) reconcile() (time.Duration, step) {
	if p.g.draining && p.active == 0 && p.drift == 0 {
		return 0, nil
	}
	if p.connected {
		rec := &pb.Reconciliation{}
		if p.drift > 0 {
			rec.ChannelsDrift = uint32(p.drift)
			p.snapshot()
			p.drift = 0
		}
		p.emit(&pb.Event{Payload: &pb.Event_Reconciliation{Reconciliation: rec}})
	}
	return time.Minute, p.reconcile
}

// contactChurn is phones registering, unregistering, moving to another
// address, becoming unreachable, and round-trip times changing.
func (p *pbx) contactChurn() (time.Duration, step) {
	g := p.g
	if g.draining {
		return 0, nil
	}
	next := g.between(2*time.Second, 10*time.Second)
	if g.chance(0.25) {
		t := p.trunk()
		if t.contactSt == "Reachable" {
			t.rtt = max(1000, t.rtt+g.rng.Int64N(8000)-4000)
			p.emitContact(t, "Reachable", t.rtt)
		}
		return next, p.contactChurn
	}
	e := p.exts[g.rng.IntN(len(p.exts))]
	switch {
	case !e.registered:
		if g.chance(0.6) {
			p.register(e, true)
		}
	case e.contactSt == "Unreachable":
		e.contactSt = "Reachable"
		e.rtt = 2000 + g.rng.Int64N(60000)
		p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_PeerStatus{PeerStatus: &pb.PeerStatus{
			Name: e.name, Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Reachable"}}})
		p.emitContact(e, "Reachable", e.rtt)
		p.updateDevice(e)
	case len(e.chans) > 0:
		if p.qualify {
			e.rtt = max(500, e.rtt+g.rng.Int64N(10000)-5000)
			p.emitContact(e, "Reachable", e.rtt)
		}
	default:
		switch g.pick(55, 15, 10, 10) {
		case 0:
			if p.qualify {
				e.rtt = max(500, e.rtt+g.rng.Int64N(20000)-10000)
				p.emitContact(e, "Reachable", e.rtt)
			} else {
				p.emitContact(e, "Updated", 0) // a registration refresh
			}
		case 1:
			p.unregister(e)
		case 2:
			p.register(e, true)
		case 3:
			if p.qualify {
				e.contactSt, e.rtt = "Unreachable", 0
				p.emit(&pb.Event{Refs: &pb.PbxRefs{Endpoint: e.name}, Payload: &pb.Event_PeerStatus{PeerStatus: &pb.PeerStatus{
					Name: e.name, Technology: pb.Technology_TECHNOLOGY_PJSIP, Status: "Unreachable"}}})
				p.emitContact(e, "Unreachable", 0)
				p.updateDevice(e)
			}
		}
	}
	return next, p.contactChurn
}

var regCauses = []string{"403 Forbidden", "401 Unauthorized", "408 Request Timeout", "503 Service Unavailable", "404 Not Found"}

// trunkFlap is a provider refusing or dropping a trunk's registration for
// a while (Registry events), sometimes several times before it recovers.
func (p *pbx) trunkFlap() (time.Duration, step) {
	g := p.g
	if g.draining {
		return 0, nil
	}
	t := p.trunk()
	if t.regStatus != "Registered" {
		return g.between(time.Minute, 4*time.Minute), p.trunkFlap
	}
	flaps := 1 + g.rng.IntN(3)
	var down, up step
	down = func() (time.Duration, step) {
		if g.chance(0.15) {
			p.registry(t, "Unregistered", "")
		} else {
			p.registry(t, "Rejected", regCauses[g.rng.IntN(len(regCauses))])
		}
		return g.between(5*time.Second, 90*time.Second), up
	}
	up = func() (time.Duration, step) {
		p.registry(t, "Registered", "")
		if flaps--; flaps > 0 && !g.draining {
			return g.between(2*time.Second, 30*time.Second), down
		}
		return 0, nil
	}
	g.at(0, down)
	return g.between(2*time.Minute, 8*time.Minute), p.trunkFlap
}

// registry publishes a Registry event (PJSIP names the registration by
// its client URI; no name).
func (p *pbx) registry(t *endpoint, status, cause string) {
	t.regStatus = status
	p.emit(&pb.Event{Payload: &pb.Event_TrunkRegistration{TrunkRegistration: &pb.TrunkRegistration{
		Technology: pb.Technology_TECHNOLOGY_PJSIP, ClientUri: t.clientURI, ServerUri: t.serverURI, Status: status, Cause: cause,
	}}})
}

var pauseReasons = []string{"lunch", "break", "meeting", "training", ""}

// pauseChurn is agents pausing and unpausing (QueueMemberPause).
func (p *pbx) pauseChurn() (time.Duration, step) {
	g := p.g
	if g.draining {
		return 0, nil
	}
	q := p.queues[g.rng.IntN(len(p.queues))]
	m := q.members[g.rng.IntN(len(q.members))]
	if m.paused {
		q.pause(m, false, "")
	} else {
		q.pause(m, true, pauseReasons[g.rng.IntN(len(pauseReasons))])
	}
	return g.between(time.Minute, 6*time.Minute), p.pauseChurn
}

// queueSummaries publishes each queue's parameters and counters.
func (p *pbx) queueSummaries() (time.Duration, step) {
	if p.g.draining {
		return 0, nil
	}
	for _, q := range p.queues {
		p.emit(&pb.Event{Payload: &pb.Event_QueueSummary{QueueSummary: q.summary()}})
	}
	return p.g.between(30*time.Second, 90*time.Second), p.queueSummaries
}
